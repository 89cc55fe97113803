# syntax=docker/dockerfile:1
#
# shardwire as a small, static, non-root image.
#
#   docker build -t shardwire --build-arg VERSION=$(git describe --always) .
#   docker run -v $PWD/shardwire.yaml:/etc/shardwire/shardwire.yaml:ro \
#     -e APP_PASSWORD -e OPS_PASSWORD -p 6432:6432 -p 9930:9930 shardwire
#
# Why static glibc on distroless/static rather than CGO_ENABLED=0 on scratch:
# router/ links libpg_query (PostgreSQL's own parser, written in C) through
# cgo, so the binary needs a C toolchain and cannot be built with
# CGO_ENABLED=0. We link it fully statically on the Debian-based golang
# image instead (-linkmode external -extldflags -static). The netgo and
# osusergo tags make Go use its own DNS resolver and /etc/passwd reader
# instead of glibc's NSS functions, which are the one part of glibc that does
# not work in a static binary. The result depends on no shared library, so
# the final stage is distroless/static: no shell, no package manager, CA
# certificates and a nonroot user (uid 65532). (distroless/cc with a dynamic
# binary would work too, but carries glibc for nothing.) The build fails if
# the binary turns out dynamic.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath -tags netgo,osusergo \
      -ldflags "-s -w -X main.version=${VERSION} -linkmode external -extldflags -static" \
      -o /out/shardwire ./cmd/shardwire \
 && if ldd /out/shardwire >/dev/null 2>&1; then echo "shardwire is not a static binary" >&2; exit 1; fi \
 && /out/shardwire version

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/shardwire /usr/local/bin/shardwire
# The config is mounted here (a file, or a ConfigMap as the directory, which
# keeps live reload working); ${NAME} references in it come from the
# environment, so passwords stay out of the image and the file.
ENV SHARDWIRE_CONFIG=/etc/shardwire/shardwire.yaml
USER nonroot:nonroot
# 6432: Postgres wire protocol (listen); 9930: /metrics, /healthz, /readyz (admin_listen).
# Inside a container both must listen on 0.0.0.0, not the default 127.0.0.1.
EXPOSE 6432 9930
# SIGTERM (docker stop, Kubernetes) drains: stop accepting, let open
# transactions finish within limits.shutdown_timeout, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/shardwire", "run"]
CMD ["-c", "/etc/shardwire/shardwire.yaml"]
