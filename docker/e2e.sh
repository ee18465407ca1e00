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
# three containers. Then docker-compose.ha.yml, two gateways behind nginx (built from Debian's
# package): a writer goes on through the balancer while one gateway is SIGKILLed and one InfluxDB
# container is stopped, both come back, and every batch answered 204 is checked on every node.
# Everything is torn down at the end, even on failure; the images stay cached.
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
ha_override="$work/ha-override.yml"
compose() { "${compose_cmd[@]}" -p "$PROJECT" -f docker-compose.yml -f "$override" "$@"; }
compose_ha() { "${compose_cmd[@]}" -p "$PROJECT-ha" -f docker-compose.ha.yml -f "$ha_override" "$@"; }
cleanup() {
  status=$?
  touch "$work/stop-writer" 2>/dev/null || true
  wait 2>/dev/null || true
  for project in compose compose_ha; do
    file=$override
    [ $project = compose_ha ] && file=$ha_override
    [ -f "$file" ] || continue
    if [ $status -ne 0 ]; then $project logs --no-color --tail=50 2>&1 | sed 's/^/[logs] /' || true; fi
    $project down -v --remove-orphans >/dev/null 2>&1 || true
  done
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
compose down -v --remove-orphans >/dev/null 2>&1
rm -f "$override"

# 6. docker-compose.ha.yml: two gateways behind nginx. A writer goes on through the balancer while
#    one gateway is SIGKILLed and one InfluxDB container is stopped, then both come back; every
#    batch answered 204 must then be on every node.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ha_port=$(free_port)
g1_port=$(free_port)
g2_port=$(free_port)
# Each gateway is published too, only so that this test can read each one's /health.
cat > "$ha_override" <<EOF
version: "3.7"
x-gateway-build: &gateway-build
  context: .
  args:
    RUST_IMAGE: $BUILDER
    RUNTIME_IMAGE: $BASE
services:
  balancer:
    build:
      context: docker/balancer
      args:
        BASE_IMAGE: $BASE
  gateway1:
    image: influx-gateway:e2e
    build: *gateway-build
    ports:
      - "127.0.0.1:$g1_port:8080"
  gateway2:
    image: influx-gateway:e2e
    build: *gateway-build
    ports:
      - "127.0.0.1:$g2_port:8080"
EOF
export GATEWAY_PORT="$ha_port"
step "docker-compose -f docker-compose.ha.yml up --build (two gateways, nginx from Debian's package)"
compose_ha up -d --build >/dev/null 2>"$work/up-ha.log" || { cat "$work/up-ha.log"; fail "compose up (ha)"; }
lb="http://127.0.0.1:$ha_port"
# gw_health PORT EXPR: EXPR over one gateway's /health nodes, or "none" when it does not answer.
gw_health() {
  curl -s --max-time 2 "http://127.0.0.1:$1/health" \
    | python3 -c "import json,sys; nodes=json.load(sys.stdin)['nodes']; print($2)" 2>/dev/null \
    || echo none
}
wait_gw() { # PORT EXPR WANT TRIES (half-seconds); leaves the last value in $seen
  for _ in $(seq 1 "$4"); do
    seen=$(gw_health "$1" "$2")
    [ "$seen" = "$3" ] && return 0
    sleep 0.5
  done
  return 1
}
for p in "$g1_port" "$g2_port"; do
  wait_gw "$p" 'sum(n["state"] == "up" for n in nodes)' 3 120 || fail "gateway on $p: $seen of 3 nodes up"
done
for _ in $(seq 1 60); do
  curl -fs -o /dev/null "$lb/ping" && break
  sleep 0.5
done
curl -fs -o /dev/null "$lb/ping" || fail "the balancer did not answer /ping on $lb"
code=$(curl -s -o "$work/answer" -w '%{http_code}' -XPOST "$lb/query" --data-urlencode 'q=CREATE DATABASE ha')
[ "$code" = 200 ] || fail "CREATE DATABASE through the balancer answered $code: $(cat "$work/answer")"
step "balancer on port $ha_port, two gateways with 3 nodes up each"

# The writer: batches of 10 points, each batch a tag value of its own; at most 5000 batches.
writer() {
  local n=0 body i code
  while [ ! -f "$work/stop-writer" ] && [ $n -lt 5000 ]; do
    n=$(( n + 1 ))
    body=""
    for i in 0 1 2 3 4 5 6 7 8 9; do body+="m,batch=b$n v=$i $(( n * 10 + i ))"$'\n'; done
    # curl prints 000 and fails when no answer came: recorded, not fatal to the writer.
    code=$(curl -s -o /dev/null --max-time 30 -w '%{http_code}' -XPOST "$lb/write?db=ha" --data-binary "$body") || true
    echo "b$n $code" >> "$work/writes"
  done
}
acked() { grep -c ' 204$' "$work/writes" 2>/dev/null || true; }
writer &
writer_pid=$!
sleep 3
docker kill --signal KILL "$(compose_ha ps -q gateway1)" >/dev/null
step "gateway1 SIGKILLed ($(acked) batches acknowledged so far)"
sleep 3
compose_ha stop influx2 >/dev/null 2>&1
wait_gw "$g2_port" '[n["state"] for n in nodes if n["name"] == "influx2"][0]' down 40 \
  || fail "gateway2 sees influx2 $seen"
sleep 3
queued=$(gw_health "$g2_port" '[n["queue"]["entries"] for n in nodes if n["name"] == "influx2"][0]')
{ [ "$queued" != none ] && [ "$queued" -gt 0 ]; } || fail "gateway2 queued nothing for the stopped influx2 ($queued)"
step "influx2 stopped: gateway2 holds $queued entries for it ($(acked) batches acknowledged)"
compose_ha start gateway1 >/dev/null 2>&1
wait_gw "$g1_port" '[n["state"] for n in nodes if n["name"] == "influx2"][0]' down 60 \
  || fail "gateway1, started again, sees influx2 $seen"
sleep 3
step "gateway1 back, influx2 still down ($(acked) batches acknowledged)"
compose_ha start influx2 >/dev/null 2>&1
for p in "$g1_port" "$g2_port"; do
  wait_gw "$p" 'sum(n["queue"]["entries"] for n in nodes)' 0 240 \
    || fail "the queues of the gateway on $p did not drain: $seen entries left"
done
sleep 2
touch "$work/stop-writer"
wait "$writer_pid"
# The last writes may have been queued meanwhile: both queues empty again, nothing on the wire.
for p in "$g1_port" "$g2_port"; do
  wait_gw "$p" 'sum(n["queue"]["entries"] for n in nodes)' 0 240 \
    || fail "the queues of the gateway on $p did not drain: $seen entries left"
done
total=$(wc -l < "$work/writes")
ok=$(acked)
[ "$ok" -ge 100 ] || fail "only $ok of $total batches were acknowledged"
# The balancer resends what a gateway never got; what a killed gateway had already received may
# fail (a write is not resent, lest a line without a timestamp land twice): the request in flight,
# and those sent on connections to it that nginx kept alive. A client retries those; a handful
# at most, or the balancer is not doing its job.
failed=$(( total - ok ))
[ "$failed" -le 10 ] || fail "$failed batches were not answered 204: $(grep -v ' 204$' "$work/writes" | head -5 | tr '\n' ' ')"
step "influx2 back, both queues drained; $ok of $total batches answered 204"
for node in influx1 influx2 influx3; do
  compose_ha exec -T "$node" influx -database ha -format csv \
    -execute 'SELECT count(v) FROM m GROUP BY batch' > "$work/$node.csv"
  python3 - "$work/writes" "$work/$node.csv" "$node" <<'PY' || fail "$node lacks acknowledged points"
import csv, sys
acked = {b for b, code in (line.split() for line in open(sys.argv[1])) if code == "204"}
held = {}
for row in csv.reader(open(sys.argv[2])):
    # name,tags,time,count with tags as batch=b12
    if len(row) == 4 and row[1].startswith("batch="):
        held[row[1][len("batch="):]] = int(row[3])
short = sorted(b for b in acked if held.get(b) != 10)
if short:
    print(f"{sys.argv[3]}: {len(short)} acknowledged batches not whole, e.g. {short[:10]}", file=sys.stderr)
    sys.exit(1)
PY
  step "$node holds every point of the $ok acknowledged batches"
done
step "PASSED in $(( $(date +%s) - started ))s"
