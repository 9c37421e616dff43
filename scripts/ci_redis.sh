#!/usr/bin/env bash
# Throwaway Redis server for the CeleryExecutor deployment check (tests/deployment, marker `deployment`).
#
#   eval "$(bash scripts/ci_redis.sh start)"   # prints: export CLOUDELEMENTS_TEST_REDIS_URL=redis://127.0.0.1:<port>/0
#   bash scripts/ci_redis.sh stop              # stops it (`purge` also deletes its folder)
#   bash scripts/ci_redis.sh status|env
#
# Debian, run as root (CI) or as any user when redis-server is already installed. Installs Debian's
# `redis-server` package with apt when the binary is missing (`apt-get update` first; the package's own
# service is not used). Listens on 127.0.0.1 only, on a free port, no persistence, with its pid file, log
# and password under $CLOUDELEMENTS_REDIS_DIR (default /tmp/cloudelements-ci-redis). Idempotent: a running
# server is reused. Only the `export` line goes to stdout; everything else to stderr. When Redis cannot be
# installed or started it prints a WARNING, prints no export line and exits 0, so CI goes on and the
# Celery deployment check is SKIPPED (look for the warning in the CI log).
set -uo pipefail

REDIS_DIR="${CLOUDELEMENTS_REDIS_DIR:-/tmp/cloudelements-ci-redis}"
STATE="$REDIS_DIR/state.env"
PIDFILE="$REDIS_DIR/redis.pid"
LOGFILE="$REDIS_DIR/server.log"

say() { echo "ci_redis: $*" >&2; }
warn() { echo "ci_redis: WARNING: $*; the Celery deployment check will be SKIPPED" >&2; }

find_server() { command -v redis-server 2>/dev/null || { [ -x /usr/bin/redis-server ] && echo /usr/bin/redis-server; }; }

install_redis() {
    if [ "$(id -u)" -ne 0 ]; then warn "redis-server not found and not root: cannot apt-get install redis-server"; return 1; fi
    if ! command -v apt-get >/dev/null 2>&1; then warn "redis-server not found and apt-get is unavailable"; return 1; fi
    say "installing redis-server with apt-get (binary not found)"
    export DEBIAN_FRONTEND=noninteractive
    # policy-rc.d 101: do not start the package's own service (we run our own on a free port)
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1; fi
    local ok=0
    apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends redis-server >&2 && ok=1
    [ "$created_policy" -eq 1 ] && rm -f "$policy"
    if [ "$ok" -ne 1 ]; then warn "apt-get install redis-server failed"; return 1; fi
}

is_running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

print_env() {
    # shellcheck disable=SC1090
    . "$STATE"
    echo "export CLOUDELEMENTS_TEST_REDIS_URL=redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0"
}

start() {
    local server
    if ! server="$(find_server)"; then
        install_redis || return 0
        if ! server="$(find_server)"; then warn "no redis-server binary after install"; return 0; fi
    fi
    if is_running && [ -f "$STATE" ]; then say "reusing the running server in $REDIS_DIR"; print_env; return 0; fi
    mkdir -p "$REDIS_DIR" && chmod 700 "$REDIS_DIR"
    local port pw
    port="$(free_port)"
    pw="$(head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 24)"
    printf 'REDIS_PORT=%s\nREDIS_PASSWORD=%s\n' "$port" "$pw" > "$STATE" && chmod 600 "$STATE"
    # the password goes in through a config file read from stdin, never on a command line
    say "starting $server on 127.0.0.1:$port"
    if ! printf 'port %s\nbind 127.0.0.1\nprotected-mode yes\nrequirepass %s\nsave ""\nappendonly no\ndaemonize yes\npidfile %s\nlogfile %s\ndir %s\n' \
            "$port" "$pw" "$PIDFILE" "$LOGFILE" "$REDIS_DIR" | "$server" - >&2; then
        warn "redis-server did not start (see $LOGFILE)"; return 0
    fi
    local i
    for i in $(seq 1 100); do
        if is_running && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then print_env; return 0; fi
        sleep 0.1
    done
    warn "redis-server is not accepting connections on 127.0.0.1:$port (see $LOGFILE)"
}

stop() {
    if is_running; then
        kill "$(cat "$PIDFILE")" && say "stopped"
    else
        say "not running"
    fi
}

cmd="${1:-start}"
case "$cmd" in
    start) start ;;
    stop) stop ;;
    purge) stop; rm -rf "$REDIS_DIR"; say "removed $REDIS_DIR" ;;
    status) if is_running; then say "running"; else say "not running"; exit 1; fi ;;
    env) if [ -f "$STATE" ] && is_running; then print_env; else say "not running"; exit 1; fi ;;
    *) echo "usage: $0 [start|stop|purge|status|env]" >&2; exit 2 ;;
esac
exit 0
