# The service image: scripts/build.sh in a Go build stage, then the binary
# alone in a small runtime image. Build: docker build -t authsvc .

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep modules and compiled packages (go-sqlite3's C takes
# minutes) between builds. .git is in the context (see .dockerignore), so a
# build from a git clone is stamped with its commit: go version -m authsvc.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    scripts/build.sh /out/authsvc

# Bookworm, as the build stage: the cgo binary needs its glibc or a newer one.
FROM debian:bookworm-slim
# curl for the HEALTHCHECK, CA certificates for TLS to PostgreSQL and Redis
# (unpinned: Debian's security updates come with each rebuild); a user of its
# own, and /data for the SQLite default, writable by that user only.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 authsvc \
    && useradd --system --uid 10001 --gid authsvc --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin authsvc \
    && install -d -o authsvc -g authsvc -m 0700 /data
COPY --from=build /out/authsvc /usr/local/bin/authsvc
# Numeric, so that runAsNonRoot-style checks can tell it is not root.
USER 10001:10001
# The SQLite default; set DATABASE_URL=postgres://... to use PostgreSQL.
ENV DATABASE_URL=/data/auth.db
VOLUME /data
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${PORT:-3000}/health" || exit 1
ENTRYPOINT ["/usr/local/bin/authsvc"]
