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
# Dependencies first so that code changes do not re-download modules.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/ferry ./cmd/ferry

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
