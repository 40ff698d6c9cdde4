#!/usr/bin/env bash
# CI only: give a machine without Docker a Docker engine, run one command with it, stop the engine.
#
#   scripts/ci_docker.sh make compose-test
#
# A user who has Docker runs `make up` / `make compose-test` and never needs this script.
# What it does (FACTS: no engine installed, no public container registry, host network only):
#  1. installs docker.io, docker-compose (1.29), debootstrap and chromium from Debian if missing;
#  2. starts dockerd without touching the host network (no iptables, no bridge: containers use
#     network_mode: host) with its own data-root, exec-root and socket; its output goes to a log
#     file, never to this script's stdout/stderr (CI would wait on an open pipe);
#  3. builds the base images the registry would have given: Debian bookworm + python3.11 from
#     debootstrap (with the host's CA bundle, so pip/uv reach the package index through this
#     machine's TLS setup), and Postgres 15 on top of it (scripts/ci_postgres/);
#  4. runs the command with DOCKER_HOST, PRODML_BASE_IMAGE and POSTGRES_IMAGE set;
#  5. stops the engine it started, on success and on failure (trap), and returns the command's status.
# The data-root persists between runs (image cache): PRODML_CI_DOCKER_ROOT, default below.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE="${PRODML_CI_DOCKER_ROOT:-/var/lib/prodml-ci-docker}"
RUNDIR="/run/prodml-ci-docker"
SOCK="$RUNDIR/docker.sock"
LOGDIR="$PWD/artifacts/ci-docker"
BASE_IMAGE="prodml-ci/debian-python:3.11-bookworm"
PG_IMAGE="prodml-ci/postgres:15-bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
HOST_CA="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"

say() { echo "[ci_docker $(date +%H:%M:%S)] $*"; }

if [ "$#" -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]   (e.g. $0 make compose-test)" >&2
    exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "$0 installs packages and starts dockerd: run it as root (CI)" >&2
    exit 2
fi
mkdir -p "$LOGDIR" "$STATE" "$RUNDIR"

# 1. packages
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v chromium >/dev/null || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${missing[@]}" >"$LOGDIR/apt.log" 2>&1 \
        || { apt-get update -q >>"$LOGDIR/apt.log" 2>&1 && apt-get install -y -q "${missing[@]}" >>"$LOGDIR/apt.log" 2>&1; } \
        || { tail -20 "$LOGDIR/apt.log"; exit 1; }
fi
# The Python that builds the venv (if the command needs one) is the one the caller's PATH names:
# /usr/bin, put first below, may hold an older Debian python3.11 that the lock does not accept.
export PYTHON="${PYTHON:-$(command -v python3.11 || echo python3.11)}"
# Debian's client, matching the engine (a newer client elsewhere on PATH would do too, but this is known)
export PATH="/usr/bin:$PATH"

# 2. the engine
export DOCKER_HOST="unix://$SOCK"
STARTED=""
stop_engine() {
    local status=$?
    if [ -n "$STARTED" ] && [ -f "$RUNDIR/dockerd.pid" ]; then
        local pid
        pid="$(cat "$RUNDIR/dockerd.pid")"
        say "stopping dockerd ($pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            say "dockerd did not stop in 30 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$RUNDIR/dockerd.pid"
    fi
    exit "$status"
}
trap stop_engine EXIT
trap 'exit 130' INT TERM

if docker info >/dev/null 2>&1; then
    say "dockerd already answers on $SOCK: using it (and leaving it running)"
else
    say "starting dockerd (log: $LOGDIR/dockerd.log)"
    # setsid + </dev/null + output to a file: the engine holds none of CI's pipes or its terminal
    setsid dockerd --iptables=false --ip-forward=false --bridge=none \
        --data-root "$STATE/data" --exec-root "$RUNDIR/exec" --pidfile "$RUNDIR/dockerd.pid" \
        -H "$DOCKER_HOST" </dev/null >"$LOGDIR/dockerd.log" 2>&1 &
    STARTED=1
    for _ in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { say "dockerd did not come up"; tail -20 "$LOGDIR/dockerd.log"; exit 1; }
fi

# 3. base images (cached in the data-root)
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "building $BASE_IMAGE with debootstrap (~1 min)"
    rootfs="$(mktemp -d /tmp/prodml-rootfs.XXXXXX)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$LOGDIR/debootstrap.log" 2>&1 \
        || { tail -20 "$LOGDIR/debootstrap.log"; rm -rf "$rootfs"; exit 1; }
    cp "$HOST_CA" "$rootfs/etc/ssl/certs/host-ca-bundle.crt"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt' \
        --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/host-ca-bundle.crt' \
        --change 'CMD ["python3"]' \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
fi
if ! docker image inspect "$PG_IMAGE" >/dev/null 2>&1; then
    say "building $PG_IMAGE (Debian's postgresql-15)"
    docker build -q --network host --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$PG_IMAGE" scripts/ci_postgres \
        >"$LOGDIR/postgres-build.log" 2>&1 || { tail -20 "$LOGDIR/postgres-build.log"; exit 1; }
fi
# Debian's python3 is 3.11.2: see RESOLVE_FOR_PYTHON in Dockerfile
export PRODML_BASE_IMAGE="$BASE_IMAGE" POSTGRES_IMAGE="$PG_IMAGE" PRODML_RESOLVE_FOR_PYTHON=3.11.3

# 4. the command; 5. the trap stops the engine and passes the command's status on
say "running: $*"
set +e
"$@"
status=$?
set -e
say "'$*' exited with $status"
exit "$status"
