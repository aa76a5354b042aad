# syntax=docker/dockerfile:1
# payment-service image. Build context: the workspace root, e.g.
#   docker build -f docker/payment-service.Dockerfile -t payment-service .
# The CDK app builds it the same way (ContainerImage.fromAsset with the repo root).
#
# Base images: Debian 13 "trixie", the current Debian stable (full security support; bookworm is
# oldstable, on LTS only). Builder and runtime come from the same trixie build, so the binary's
# glibc matches the runtime's. Both are pinned by the digest of their multi-arch index (linux/amd64
# and linux/arm64), as listed by docker-library/repo-info for the 2026-08-03 trixie build; the tag
# beside the digest is for people, the digest is what is pulled. To move to a newer build:
#   docker buildx imagetools inspect debian:trixie-slim      # the "Digest:" line
#   docker buildx imagetools inspect rust:1.97.1-slim-trixie
# infra/check.sh fails when a FROM line lacks a digest or leaves trixie.
# The builder's Rust (1.97.1) is newer than the workspace's rust-version (1.95): any newer stable
# builds it, and 1.97.1 is the release whose trixie index digest could be verified.

FROM rust:1.97.1-slim-trixie@sha256:8e8cf8f7fd54a2d23d5a743b3a03f56e26b6c774276c33fa0595111704ebb15c AS builder
WORKDIR /build
# Queries are checked against the committed .sqlx/ data: no database during the build.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY . .
# Cache mounts keep the crates.io index, downloaded crates and compiled dependencies between
# builds (BuildKit); the binary is copied out of the cached target dir in the same step.
# [profile.release] in Cargo.toml strips the binary (strip = true, debug = false).
RUN --mount=type=cache,id=outbox-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=outbox-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=outbox-target-trixie,target=/build/target,sharing=locked \
    cargo build --release --locked -p payment-service \
    && install -D target/release/payment-service /out/payment-service

FROM debian:trixie-slim@sha256:3a39a0592364683e6bab97937b72cad5a8fa6dcbbee90edb3bb48c7f8e94f258 AS runtime
# CA roots for TLS to the AWS APIs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app
# The RDS CA bundle (all commercial regions), so the tasks verify Aurora's certificate and host
# name (PGSSLMODE=verify-full, PGSSLROOTCERT set by the CDK task definition). Fetched at build
# time from the address the RDS user guide documents ("Using SSL/TLS to encrypt a connection to a
# DB cluster"); AWS rotates the CAs rarely and announces it, a rebuild picks up a new bundle.
ADD --chmod=0644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
COPY --from=builder /out/payment-service /usr/local/bin/payment-service
USER 10001:10001
ENV BIND_ADDR=0.0.0.0:8081 \
    LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8081
# No HEALTHCHECK here: ECS defines its own in the task definition (bash's /dev/tcp against
# /health/live: the image has no HTTP client, and bash is part of every Debian image), and
# compose relies on restart policies.
ENTRYPOINT ["/usr/local/bin/payment-service"]
