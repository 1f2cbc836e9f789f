# The gateway's container image. Not built by this project's CI (no container registry is
# reachable from its machines); `docker build -t projector-gateway:0.1.0 .` where one is.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# build.rs compiles proto/ with protox: no system protoc needed.
RUN cargo build --release --locked --bin projector-gateway

FROM debian:bookworm-slim
# Root certificates: KurrentDB and SQL Server connections verify TLS against the system's roots
# (MongoDB, Elasticsearch, the HTTP sink and OTLP export carry Mozilla's own). PostgreSQL
# connections take libpq's `sslmode`/`sslrootcert` in their URL: a CA file mounted into the
# container, or `sslrootcert=system` for Mozilla's roots built into the binary.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 gateway
COPY --from=build /src/target/release/projector-gateway /usr/local/bin/projector-gateway
USER 10001
EXPOSE 9464
ENTRYPOINT ["projector-gateway"]
CMD ["run", "--config", "/etc/projector-gateway/gateway.yaml", "--listen", "0.0.0.0:9464"]
