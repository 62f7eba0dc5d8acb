# syntax=docker/dockerfile:1
#
# Image of the storage-policy-webhook binary: built with the locked dependency set, run as
# uid/gid 65532 on a distroless runtime that holds nothing but glibc, CA certificates and the
# binary (no shell, no package manager).
#
#   docker build -t storage-policy-webhook:dev .
#
# Needs BuildKit (the default builder of current Docker and of buildx) for the cache mounts.

# Builder and runtime share Debian 12 (bookworm), so the glibc the binary links against at build
# time is the one it finds at run time.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches only speed up rebuilds; the binary is copied out of the cached
# target directory because cache mounts are not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin storage-policy-webhook \
    && install -D -m 0755 target/release/storage-policy-webhook /out/storage-policy-webhook

# cc (not static): the binary is a glibc executable and needs libc and libgcc_s.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="storage-policy-webhook" \
      org.opencontainers.image.description="Kubernetes admission webhook enforcing storage policy" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/storage-policy-webhook /usr/local/bin/storage-policy-webhook
# mimalloc returns freed memory to the system at once instead of after a delay: request bodies
# of megabytes come and go under a burst, and the heap then stays under the memory request
# (RELIABILITY.md, "Memory bounded by a budget": peak heap 29-37 MiB instead of 39-48 MiB).
ENV MIMALLOC_PURGE_DELAY=0
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# 8443: HTTPS webhook (/mutate, /validate); 8080: plain-HTTP admin (/healthz, /readyz, /metrics).
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/storage-policy-webhook"]
CMD ["serve"]
