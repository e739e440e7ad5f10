# syntax=docker/dockerfile:1.7
#
# The tidescale image: one static-ish `tidescale` binary on a distroless runtime.
#
#   docker build -t tidescale:dev .
#   docker run --rm tidescale:dev --version
#
# It builds the same `tidescale` binary the tests run (`cargo build -p tidescale`, same
# Cargo.lock, same toolchain), in release mode; tests/delivery.rs starts that binary and checks
# `--version` and the operator's /healthz and /readyz, and parses this file for the rules below.
#
# Assumptions (checked by tests/delivery.rs where a rule is written down):
# - BuildKit (Docker 23+ or `docker buildx`): the cache mounts below need it.
# - Toolchain: Rust 1.95.0, as rust-toolchain.toml pins. RUSTUP_TOOLCHAIN selects the image's own
#   1.95.0 so rustup downloads nothing (the toolchain file also asks for rustfmt and clippy,
#   which a release build does not need).
# - System libraries: tidescale-scalers' default `kafka-tls` feature links librdkafka against
#   the system OpenSSL (libssl-dev, pkg-config at build time; libssl3 at run time). zlib is
#   linked statically (LIBZ_SYS_STATIC=1) and libcurl is built from source by curl-sys
#   (LIBCURL_NO_PKG_CONFIG=1 hides the builder image's libcurl4-openssl-dev), because the
#   runtime image has neither; the build fails if the binary still links either.
# - Runtime: gcr.io/distroless/cc-debian12:nonroot. Its package list (glibc, libgcc-s1,
#   libssl3, libstdc++6, ca-certificates, tzdata, netbase; no shell, no package manager)
#   covers exactly what the binary links: libc, libm, libgcc_s, libssl.so.3, libcrypto.so.3.
#   (distroless/static lacks glibc; base-nossl lacks libssl.) Pin it by digest in your fork
#   (`@sha256:…`) for reproducible builds; the tag is kept here so it can be refreshed.
# - Non-root: UID/GID 65532 (distroless `nonroot`), numeric so `runAsNonRoot` can verify it.
# - Read-only root filesystem: tidescale writes nothing to disk (logs go to stderr, serving
#   certificates are mounted by the chart), so `readOnlyRootFilesystem: true` works as is.

ARG RUST_VERSION=1.95.0

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
ARG RUST_VERSION
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    LIBZ_SYS_STATIC=1 \
    LIBCURL_NO_PKG_CONFIG=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry, git checkouts and target/ are BuildKit cache mounts: rebuilds reuse them, and
# the binary is copied out of the cache before the layer ends.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p tidescale \
    && install -D -m 0755 target/release/tidescale /out/tidescale \
    && /out/tidescale --version \
    && if ldd /out/tidescale | grep -E 'lib(curl|z)\.so'; then \
         echo 'tidescale links a library the runtime image lacks' >&2; exit 1; \
       fi

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="tidescale" \
      org.opencontainers.image.description="Event-driven autoscaler for Kubernetes, a drop-in replacement for KEDA" \
      org.opencontainers.image.source="https://github.com/tidescale/tidescale" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=builder /out/tidescale /tidescale
USER 65532:65532
# 8080 /metrics, 8081 /healthz and /readyz (the operator's defaults).
EXPOSE 8080 8081
ENTRYPOINT ["/tidescale"]
CMD ["operator"]
