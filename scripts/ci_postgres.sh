#!/usr/bin/env bash
# Throwaway PostgreSQL server for the SQL-loader tests (tests/sql, marker `postgres`).
#
#   eval "$(bash scripts/ci_postgres.sh start)"   # prints: export CLOUDELEMENTS_TEST_POSTGRES_URI=postgresql://…
#   bash scripts/ci_postgres.sh stop              # stops it (data kept; `purge` also deletes it)
#   bash scripts/ci_postgres.sh status|env
#
# Debian, run as root (CI) or as any user when the PostgreSQL binaries are already installed. Installs
# the `postgresql` package with apt when no server binaries are found. Listens on 127.0.0.1 only, on a
# free port, with its socket and data under $CLOUDELEMENTS_PG_DIR (default /tmp/cloudelements-ci-postgres).
# Idempotent: a running server is reused. Only the `export` line goes to stdout; everything else to
# stderr. When PostgreSQL cannot be installed or started it prints a WARNING, prints no export line and
# exits 0, so CI goes on and the postgres tests are SKIPPED (look for the warning in the CI log).
set -uo pipefail

PG_DIR="${CLOUDELEMENTS_PG_DIR:-/tmp/cloudelements-ci-postgres}"
DATA="$PG_DIR/data"
SOCK="$PG_DIR/sock"
STATE="$PG_DIR/state.env"
LOGFILE="$PG_DIR/server.log"
DB_USER="ce_test"
DB_NAME="ce_test"

say() { echo "ci_postgres: $*" >&2; }
warn() { echo "ci_postgres: WARNING: $*; the postgres tests will be SKIPPED" >&2; }

find_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null)"
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    fi
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    return 1
}

# Run a command as the server's owner (PostgreSQL refuses to run as root).
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install_postgres() {
    if [ "$(id -u)" -ne 0 ]; then
        warn "PostgreSQL server binaries not found and not root: cannot apt-get install postgresql"
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        warn "PostgreSQL server binaries not found and apt-get is unavailable"
        return 1
    fi
    say "installing postgresql with apt-get (server binaries not found)"
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2; }; then
        warn "apt-get install postgresql failed"
        return 1
    fi
}

is_running() {
    [ -f "$DATA/PG_VERSION" ] && as_owner "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

print_env() {
    # shellcheck disable=SC1090
    . "$STATE"
    echo "export CLOUDELEMENTS_TEST_POSTGRES_URI=postgresql://$DB_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$DB_NAME"
}

start() {
    if ! BINDIR="$(find_bindir)"; then
        install_postgres || return 0
        if ! BINDIR="$(find_bindir)"; then warn "no PostgreSQL server binaries after install"; return 0; fi
    fi
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres || { warn "cannot create user postgres"; return 0; }
    fi
    if is_running && [ -f "$STATE" ]; then
        say "reusing the running server in $PG_DIR"
        print_env
        return 0
    fi
    mkdir -p "$PG_DIR" "$SOCK"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PG_DIR" "$SOCK"
    chmod 700 "$PG_DIR"
    if [ ! -f "$DATA/PG_VERSION" ]; then
        local pw pwfile
        pw="$(head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 24)"
        pwfile="$PG_DIR/pwfile"
        printf '%s\n' "$pw" > "$pwfile"
        [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$pwfile"
        chmod 600 "$pwfile"
        say "initdb in $DATA"
        if ! as_owner "$BINDIR/initdb" -D "$DATA" -U postgres --pwfile="$pwfile" --auth-local=trust \
                --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1; then
            warn "initdb failed (see $PG_DIR/initdb.log)"; rm -f "$pwfile"; return 0
        fi
        rm -f "$pwfile"
        printf 'PG_PASSWORD=%s\n' "$pw" > "$STATE"
        chmod 600 "$STATE"
    fi
    local port
    port="$(free_port)"
    say "starting PostgreSQL ($BINDIR) on 127.0.0.1:$port"
    if ! as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $SOCK -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB" \
            start >&2; then
        warn "PostgreSQL did not start (see $LOGFILE)"; return 0
    fi
    sed -i '/^PG_PORT=/d' "$STATE"
    printf 'PG_PORT=%s\n' "$port" >> "$STATE"
    # shellcheck disable=SC1090
    . "$STATE"
    local psql=("$BINDIR/psql" -h "$SOCK" -p "$port" -U postgres -v ON_ERROR_STOP=1 -qAt)
    if ! as_owner "${psql[@]}" -d postgres >&2 <<SQL
SELECT 'CREATE ROLE $DB_USER LOGIN' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER')\gexec
ALTER ROLE $DB_USER WITH LOGIN PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_USER' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$DB_NAME')\gexec
SQL
    then
        warn "could not create role/database (see above)"; return 0
    fi
    print_env
}

stop() {
    if BINDIR="$(find_bindir)" && is_running; then
        as_owner "$BINDIR/pg_ctl" -D "$DATA" -m fast -w stop >&2 && say "stopped"
    else
        say "not running"
    fi
}

cmd="${1:-start}"
case "$cmd" in
    start) start ;;
    stop) stop ;;
    purge) stop; rm -rf "$PG_DIR"; say "removed $PG_DIR" ;;
    status) if BINDIR="$(find_bindir)" && is_running; then say "running"; else say "not running"; exit 1; fi ;;
    env) if [ -f "$STATE" ] && BINDIR="$(find_bindir)" && is_running; then print_env; else say "not running"; exit 1; fi ;;
    *) echo "usage: $0 [start|stop|purge|status|env]" >&2; exit 2 ;;
esac
exit 0
