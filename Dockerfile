# influx-gateway: build stage, then a slim runtime stage running as a non-root user.
#
#   docker build -t influx-gateway .
#
# Base images are build arguments so that the same file builds where no registry is reachable,
# from local images (docker/e2e.sh builds both from Debian's packages).
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin influx-gateway

FROM ${RUNTIME_IMAGE}
# The system's roots, for `https://` nodes without a `ca_file` (slim images ship none).
RUN if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /var/lib/influx-gateway influx-gateway \
 && mkdir -p /etc/influx-gateway /var/lib/influx-gateway \
 && chown influx-gateway:influx-gateway /var/lib/influx-gateway
COPY --from=build /src/target/release/influx-gateway /usr/local/bin/influx-gateway
COPY docker/config.yaml /etc/influx-gateway/config.yaml
USER influx-gateway
VOLUME /var/lib/influx-gateway
EXPOSE 8080
# /ping through bash's /dev/tcp: the runtime image needs no HTTP client.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /ping HTTP/1.0\\r\\n\\r\\n' >&3 && head -c 12 <&3 | grep -q ' 204'"]
# The gateway stops cleanly on SIGTERM: intake stops, what is in memory goes to the queue.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/influx-gateway", "--config", "/etc/influx-gateway/config.yaml"]
