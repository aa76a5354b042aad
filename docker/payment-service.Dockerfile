# syntax=docker/dockerfile:1
# payment-service image. Build context: the workspace root, e.g.
#   docker build -f docker/payment-service.Dockerfile -t payment-service .
# The CDK app builds it the same way (ContainerImage.fromAsset with the repo root).

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
# Queries are checked against the committed .sqlx/ data: no database during the build.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY . .
# Cache mounts keep the crates.io index, downloaded crates and compiled dependencies between
# builds (BuildKit); the binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,id=outbox-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=outbox-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=outbox-target,target=/build/target,sharing=locked \
    cargo build --release --locked -p payment-service \
    && install -D target/release/payment-service /out/payment-service

FROM debian:bookworm-slim AS runtime
# CA roots for TLS to AWS APIs and to Aurora.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
COPY --from=builder /out/payment-service /usr/local/bin/payment-service
USER 10001:10001
ENV BIND_ADDR=0.0.0.0:8081 \
    LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8081
# No HEALTHCHECK: the image has no HTTP client; ECS relies on the ALB target group's
# /health/ready check, compose on restart policies.
ENTRYPOINT ["/usr/local/bin/payment-service"]
