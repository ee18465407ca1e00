#!/usr/bin/env bash
# End-to-end test of the shipped artifacts: the Dockerfile and docker-compose.yml, run for real.
#
#   bash docker/e2e.sh
#
# No image can be pulled here, so everything is built locally and cached between runs:
#   - a Debian bookworm base from Debian's packages (debootstrap + docker import);
#   - an InfluxDB node image from Debian's influxdb package (docker/influxdb/), standing in for the
#     public influxdb:1.8 through INFLUXDB_IMAGE;
#   - a Rust build image (docker/rust/): Debian's C toolchain plus this machine's Rust toolchain;
#   - the gateway from the repository's Dockerfile, with those two as its base images.
# Then `docker-compose up --build` with the repository's docker-compose.yml (an override file only
# passes the local base images and a free host port), the `influx` CLI on the gateway's port, one
# InfluxDB container stopped while writes go on, started again, and every point checked on all
# three containers. Everything is torn down at the end, even on failure; the images stay cached.
# Exits 0 with a printed reason when there is no Docker engine.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=influx-gateway-e2e/debian:bookworm
NODE=influx-gateway-e2e/influxdb:debian
RUST_VERSION=$(rustc --version 2>/dev/null | awk '{print $2}' || true)
BUILDER=influx-gateway-e2e/rust:${RUST_VERSION:-none}
PROJECT=igw-e2e-$$
started=$(date +%s)
step() { echo "[e2e $(( $(date +%s) - started ))s] $*"; }
fail() { echo "[e2e] FAILED: $*" >&2; exit 1; }

if ! docker info >/dev/null 2>&1; then
  echo "docker/e2e.sh: skipped: no Docker engine answers (docker info failed)"
  exit 0
fi
compose_cmd=()
if docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
else
  echo "docker/e2e.sh: skipped: neither 'docker compose' nor docker-compose is installed"
  exit 0
fi
command -v influx >/dev/null || fail "the influx CLI is needed: apt-get install influxdb-client"
[ -n "$RUST_VERSION" ] || fail "rustc is needed to make the Rust build image"

work=$(mktemp -d)
override="$work/override.yml"
compose() { "${compose_cmd[@]}" -p "$PROJECT" -f docker-compose.yml -f "$override" "$@"; }
cleanup() {
  status=$?
  if [ -f "$override" ]; then
    if [ $status -ne 0 ]; then compose logs --no-color --tail=50 2>&1 | sed 's/^/[logs] /' || true; fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT

# 1. Images, each built once and then reused.
if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  step "building the Debian base image with debootstrap"
  command -v debootstrap >/dev/null || apt-get install -y debootstrap >/dev/null
  debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >/dev/null
  tar -C "$work/rootfs" -c . | docker import - "$BASE" >/dev/null
  rm -rf "$work/rootfs"
fi
if ! docker image inspect "$NODE" >/dev/null 2>&1; then
  step "building the InfluxDB image from Debian's influxdb package"
  docker build -q --build-arg BASE_IMAGE="$BASE" -t "$NODE" docker/influxdb >/dev/null
fi
if ! docker image inspect "$BUILDER" >/dev/null 2>&1; then
  step "building the Rust build image (rustc $RUST_VERSION)"
  sysroot=$(rustc --print sysroot)
  mkdir -p "$work/rust/toolchain/lib"
  cp docker/rust/Dockerfile "$work/rust/"
  cp /etc/ssl/certs/ca-certificates.crt "$work/rust/"
  cp -a "$sysroot/bin" "$work/rust/toolchain/"
  find "$sysroot/lib" -maxdepth 1 \( -type f -o -type l \) -exec cp -a {} "$work/rust/toolchain/lib/" \;
  mkdir -p "$work/rust/toolchain/lib/rustlib"
  cp -a "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu" "$work/rust/toolchain/lib/rustlib/"
  docker build -q --build-arg BASE_IMAGE="$BASE" -t "$BUILDER" "$work/rust" >/dev/null
  rm -rf "$work/rust"
fi

# 2. The compose cluster, as a user starts it, on a free port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$override" <<EOF
version: "3.7"
services:
  gateway:
    image: influx-gateway:e2e
    build:
      context: .
      args:
        RUST_IMAGE: $BUILDER
        RUNTIME_IMAGE: $BASE
EOF
export INFLUXDB_IMAGE="$NODE" GATEWAY_PORT="$port"
step "docker-compose up --build (gateway image from the Dockerfile)"
compose up -d --build >/dev/null 2>"$work/up.log" || { cat "$work/up.log"; fail "compose up"; }
gw="http://127.0.0.1:$port"
# health EXPR: prints EXPR evaluated over the gateway's /health nodes (`nodes`, a list of dicts).
health() { curl -s "$gw/health" | python3 -c "import json,sys; nodes=json.load(sys.stdin)['nodes']; print($1)"; }
# Waits up to TRIES half-seconds until `health EXPR` prints WANT; leaves the last value in $seen.
wait_health() {
  local expr=$1 want=$2 tries=$3
  for _ in $(seq 1 "$tries"); do
    seen=$(health "$expr")
    [ "$seen" = "$want" ] && return 0
    sleep 0.5
  done
  return 1
}
for _ in $(seq 1 120); do
  curl -fs -o /dev/null "$gw/ping" && break
  sleep 0.5
done
curl -fs -o /dev/null "$gw/ping" || fail "the gateway did not answer /ping on $gw"
wait_health 'sum(n["state"] == "up" for n in nodes)' 3 60 || fail "only $seen of 3 nodes up"
step "gateway up on port $port with 3 nodes up"

cli() { influx -host 127.0.0.1 -port "$port" "$@"; }
cli -execute 'CREATE DATABASE e2e' || fail "CREATE DATABASE through the CLI"
cli -database e2e -execute 'INSERT m,phase=before v=0 1' || fail "INSERT through the CLI"

write_batch() { # phase first count
  local body="" i
  for i in $(seq "$2" $(( $2 + $3 - 1 ))); do body+="m,phase=$1 v=$i $(( 1000 + i ))"$'\n'; done
  code=$(curl -s -o "$work/answer" -w '%{http_code}' -XPOST "$gw/write?db=e2e" --data-binary "$body")
  [ "$code" = 204 ] || fail "write answered $code: $(cat "$work/answer")"
}
total=1
for b in 0 1 2 3 4; do write_batch before $(( 1 + b * 20 )) 20; total=$(( total + 20 )); done
step "101 points written with every node up"

# 3. One InfluxDB container down while writes go on.
compose stop influx2 >/dev/null 2>&1
for _ in $(seq 1 40); do
  state=$(health '[n["state"] for n in nodes if n["name"] == "influx2"][0]')
  [ "$state" = down ] && break
  sleep 0.5
done
step "influx2 stopped (gateway sees it $state)"
for b in 0 1 2 3 4 5 6 7 8 9; do write_batch during $(( 101 + b * 20 )) 20; total=$(( total + 20 )); done
queued=$(health '[n["queue"]["entries"] for n in nodes if n["name"] == "influx2"][0]')
[ "$queued" -gt 0 ] || fail "nothing was queued for the stopped node"
step "200 points written with influx2 down, $queued entries queued for it"

compose start influx2 >/dev/null 2>&1
wait_health 'sum(n["queue"]["entries"] for n in nodes)' 0 120 ||
  fail "the queue did not drain: $seen entries left"
step "influx2 back, its queue drained"
for b in 0 1 2 3 4; do write_batch after $(( 301 + b * 20 )) 20; total=$(( total + 20 )); done

# 4. Every point on every container, read inside each container.
for node in influx1 influx2 influx3; do
  count=$(compose exec -T "$node" influx -database e2e -format csv -execute 'SELECT count(v) FROM m' | tail -1 | cut -d, -f3 | tr -d '\r')
  [ "$count" = "$total" ] || fail "$node holds $count points, expected $total"
  step "$node holds all $total points"
done
through=$(cli -database e2e -format csv -execute 'SELECT count(v) FROM m' | tail -1 | cut -d, -f3)
[ "$through" = "$total" ] || fail "the gateway answers $through, expected $total"

# 5. The image's HEALTHCHECK, and a clean stop on SIGTERM.
container=$(compose ps -q gateway)
for _ in $(seq 1 30); do
  health=$(docker inspect --format '{{.State.Health.Status}}' "$container")
  [ "$health" = healthy ] && break
  sleep 1
done
[ "$health" = healthy ] || fail "HEALTHCHECK says $health"
# The system's roots are there for https:// nodes that rely on them.
compose exec -T gateway test -s /etc/ssl/certs/ca-certificates.crt \
  || fail "the runtime image has no CA certificates"
compose stop gateway >/dev/null 2>&1
code=$(docker inspect --format '{{.State.ExitCode}}' "$container")
[ "$code" = 0 ] || fail "the gateway exited with $code on SIGTERM"
docker logs "$container" 2>&1 | grep -q "stopped cleanly" || fail "no clean-stop line in the gateway's log"
step "healthy, then stopped cleanly on SIGTERM (exit 0)"
step "PASSED in $(( $(date +%s) - started ))s"
