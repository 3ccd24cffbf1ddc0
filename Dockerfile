# syntax=docker/dockerfile:1
# ferry: one static Go binary (pure-Go Postgres/SQLite drivers, migrations embedded)
# on a slim Debian with ffmpeg for video probing and thumbnails.
#
# Database: with DATABASE_URL set, Postgres; that is what separate `web` and
# `worker` processes (fly.toml's process groups) need. Without it, the embedded
# SQLite database at $DATA_DIR/ferry.db (/data/ferry.db): one `serve` process
# only (a second one on the same DATA_DIR is refused), and /data must be a
# volume or the database goes with the container.

# ---- build ----
FROM golang:1.26-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-mod=readonly
# The golang image sets GOPATH=/go, so modules live in /go/pkg/mod (GOMODCACHE)
# and the build cache in /root/.cache/go-build (GOCACHE of root). Both are
# BuildKit/buildah cache mounts: kept between builds on the build host, never
# in a layer. The first build downloads the modules (~700 MB) and compiles
# gotd's generated tg package (~3 min, ~5.5 GB of RAM); later builds reuse both.
# go.mod and go.sum first, so that a code change does not invalidate the
# download step.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# .git is not in the build context (.dockerignore): there is no revision to
# stamp, so `ferry version` in the image says "(devel)"; release binaries
# (.goreleaser.yaml) carry the tag and revision.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/ferry ./cmd/ferry

# ---- runtime ----
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates ffmpeg \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 ferry \
 && useradd --system --uid 10001 --gid ferry --home-dir /app --shell /usr/sbin/nologin ferry \
 && mkdir -p /app /data \
 && chown ferry:ferry /data
WORKDIR /app
COPY --from=build /out/ferry /app/ferry
ENV DATA_DIR=/data \
    PORT=8080
USER ferry:ferry
EXPOSE 8080
ENTRYPOINT ["/app/ferry"]
CMD ["serve"]
