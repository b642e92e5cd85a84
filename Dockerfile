# syntax=docker/dockerfile:1
#
# Thumbnailed with the libvips engine.
#
#   docker build -t thumbnailed .
#   docker run --rm -p 8080:8080 thumbnailed            # all-in-one, embedded Redis
#   docker run --rm -e THUMBNAILED_REDIS_URL=redis://redis:6379/0 thumbnailed worker
#
# Roles are the command: all (default), api, worker, webui. Configuration is by
# THUMBNAILED_* environment variables (see README.md); compose.yaml runs a
# full development stack.

# go.mod asks for Go 1.26.x; the golang image runs with GOTOOLCHAIN=local, so
# the image's 1.26 must be at least the patch release go.mod names.
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvips-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# The service links libvips (cgo, -tags vips). VERSION and COMMIT name the
# build in `thumbnailed version` (docker build --build-arg VERSION=v0.3.0 ...).
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -tags vips -trimpath \
      -ldflags="-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/thumbnailed ./cmd/thumbnailed

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libvips42 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 thumbnailed \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
      --shell /usr/sbin/nologin thumbnailed \
 && install -d -o 10001 -g 10001 -m 0755 /app \
 && install -d -o 10001 -g 10001 -m 0750 /app/outbox
COPY --from=build /out/thumbnailed /usr/local/bin/
# THUMBNAILED_OUTBOX_DIR defaults to ./outbox: /app/outbox, writable by the user.
WORKDIR /app
USER 10001:10001
# 8080: THUMBNAILED_ADDR (API, /healthz, /readyz, /metrics); 5040: the job web UI.
EXPOSE 8080 5040
# The binary checks itself: `thumbnailed healthcheck` asks THUMBNAILED_ADDR,
# read with the same configuration; the webui role needs `healthcheck webui`
# (compose.yaml sets it), as it listens on THUMBNAILED_WEBUI_ADDR only.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/thumbnailed", "healthcheck"]
# A stopping process gets THUMBNAILED_SHUTDOWN_TIMEOUT (30s) to finish its
# jobs: give it more than that (docker stop -t 40, stop_grace_period: 40s).
STOPSIGNAL SIGTERM
# glibc's malloc asks the kernel for transparent huge pages for its heap: the
# libvips engine's big decode buffers then fault in 2 MiB at a time, and a worker
# spent ~15% less CPU on the 40-photo run (BENCHMARKS.md, "Speed, round two").
# Where the kernel has THP set to never, it changes nothing.
ENV GLIBC_TUNABLES=glibc.malloc.hugetlb=1
ENTRYPOINT ["/usr/local/bin/thumbnailed"]
CMD ["all"]
