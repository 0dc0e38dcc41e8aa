#!/usr/bin/env bash
# Prefect's server on PostgreSQL, from Debian's `postgresql` package, in a private cluster.
#
# Why: a SQLite-backed Prefect server records ~28 task runs a second and a backlog builds beyond
# that (docs/facts.md); PostgreSQL is Prefect's production database. This keeps a cluster
# of its own in a data folder, listening on 127.0.0.1 only (default port 5433, so a system
# cluster on 5432 is left alone), with a `prefect` role and database behind a generated password.
#
#   deployments/postgres.sh start     install (root) / create / start; prints the connection URL
#   deployments/postgres.sh server [prefect server start options]   Prefect's server on it
#   deployments/postgres.sh url | status | stop | psql [psql options]
#
# Settings (environment):
#   MMFLOW_PG_DIR   data folder (default $HOME/.local/share/mmflow/postgres; as root
#                   /var/lib/mmflow/postgres, because the server cannot run as root and the
#                   unprivileged user it runs as cannot enter /root)
#   MMFLOW_PG_PORT  TCP port on 127.0.0.1 (default 5433)
#   MMFLOW_PG_USER  system user the server runs as when invoked as root (default postgres)
#   MMFLOW_PG_BIN   folder holding initdb/pg_ctl/psql (default: newest /usr/lib/postgresql/*/bin)
set -euo pipefail

if [ "$(id -u)" = 0 ]; then
  PG_DIR=${MMFLOW_PG_DIR:-/var/lib/mmflow/postgres}
else
  PG_DIR=${MMFLOW_PG_DIR:-$HOME/.local/share/mmflow/postgres}
fi
PORT=${MMFLOW_PG_PORT:-5433}
RUN_AS=${MMFLOW_PG_USER:-postgres}
HOST=127.0.0.1
DB=prefect
DATA=$PG_DIR/data
LOG=$PG_DIR/postgresql.log
PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

say() { echo "postgres.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

pg_bindir() {
  if [ -n "${MMFLOW_PG_BIN:-}" ]; then
    echo "$MMFLOW_PG_BIN"
    return
  fi
  # Debian keeps initdb and pg_ctl off PATH, under a folder per major version.
  local newest
  newest=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$newest" ] && [ -x "$newest/initdb" ]; then
    echo "$newest"
  elif command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  else
    return 1
  fi
}

ensure_installed() {
  pg_bindir >/dev/null && return
  if [ "$(id -u)" = 0 ]; then
    say "installing Debian's postgresql package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
  else
    die "PostgreSQL is not installed: sudo apt-get install postgresql"
  fi
  pg_bindir >/dev/null || die "postgresql installed but initdb not found; set MMFLOW_PG_BIN"
}

# Server-side commands run as the unprivileged owner of the cluster (PostgreSQL refuses root).
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    (cd / && runuser -u "$RUN_AS" -- "$@")
  else
    "$@"
  fi
}

password_of() { cat "$PG_DIR/$1.password"; }

configured_port() {
  local conf=$DATA/mmflow.conf
  if [ -f "$conf" ]; then sed -n 's/^port = //p' "$conf"; else echo "$PORT"; fi
}

new_password() { od -An -tx1 -N16 /dev/urandom | tr -d ' \n'; }

init_cluster() {
  [ -f "$DATA/PG_VERSION" ] && return
  local bin
  bin=$(pg_bindir)
  mkdir -p "$PG_DIR"
  chmod 700 "$PG_DIR"
  (
    umask 077
    new_password >"$PG_DIR/superuser.password"
    new_password >"$PG_DIR/prefect.password"
  )
  if [ "$(id -u)" = 0 ]; then
    id "$RUN_AS" >/dev/null 2>&1 || die "no system user $RUN_AS to run the server (MMFLOW_PG_USER)"
    chown -R "$RUN_AS:" "$PG_DIR"
    as_owner test -w "$PG_DIR" ||
      die "$RUN_AS cannot reach $PG_DIR (a parent folder is private); choose MMFLOW_PG_DIR elsewhere"
  fi
  say "creating a cluster in $DATA"
  as_owner "$bin/initdb" -D "$DATA" -U postgres --pwfile="$PG_DIR/superuser.password" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
  echo "include_if_exists = 'mmflow.conf'" | as_owner tee -a "$DATA/postgresql.conf" >/dev/null
}

is_running() { as_owner "$(pg_bindir)/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

as_superuser_sql() {
  PGPASSWORD=$(password_of superuser) "$(pg_bindir)/psql" -h "$HOST" -p "$(configured_port)" \
    -U postgres -v ON_ERROR_STOP=1 -qtA "$@"
}

ensure_database() {
  local password
  password=$(password_of prefect)
  if [ -z "$(as_superuser_sql -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB'")" ]; then
    as_superuser_sql -d postgres -c "CREATE ROLE $DB LOGIN PASSWORD '$password'"
  fi
  if [ -z "$(as_superuser_sql -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
    as_superuser_sql -d postgres -c "CREATE DATABASE $DB OWNER $DB"
  fi
  # Prefect's migrations need pg_trgm; created here so the prefect role needs no superuser.
  as_superuser_sql -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS pg_trgm"
}

connection_url() {
  echo "postgresql+asyncpg://$DB:$(password_of prefect)@$HOST:$(configured_port)/$DB"
}

project_python() {
  if [ -x "$PROJECT/.venv/bin/python" ]; then echo "$PROJECT/.venv/bin/python"; else command -v python3; fi
}

# Prefect talks to PostgreSQL through asyncpg, which prefect depends on; say so if it is gone.
check_driver() {
  "$(project_python)" -c 'import asyncpg' 2>/dev/null ||
    die "Prefect's PostgreSQL driver is missing: $(project_python) -m pip install asyncpg"
}

start() {
  ensure_installed
  init_cluster
  if is_running; then
    say "already running on $HOST:$(configured_port) ($DATA)"
  else
    printf "listen_addresses = '%s'\nport = %s\nunix_socket_directories = ''\n" "$HOST" "$PORT" |
      as_owner tee "$DATA/mmflow.conf" >/dev/null
    as_owner "$(pg_bindir)/pg_ctl" -D "$DATA" -l "$LOG" -w -t 120 start >/dev/null ||
      die "PostgreSQL did not start; see $LOG"
    say "running on $HOST:$PORT ($DATA, log $LOG)"
  fi
  ensure_database
  (check_driver) || say "(the database is ready; Prefect needs that driver to use it)"
  echo "PREFECT_API_DATABASE_CONNECTION_URL=$(connection_url)"
}

stop() {
  if [ -f "$DATA/PG_VERSION" ] && is_running; then
    as_owner "$(pg_bindir)/pg_ctl" -D "$DATA" -m fast -w -t 120 stop >/dev/null
    say "stopped ($DATA)"
  else
    say "not running ($DATA)"
  fi
}

require_cluster() {
  pg_bindir >/dev/null || die "PostgreSQL is not installed; run: $0 start"
  [ -f "$DATA/PG_VERSION" ] || die "no cluster in $DATA; run: $0 start"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    require_cluster
    if is_running; then
      echo "running on $HOST:$(configured_port) ($DATA)"
    else
      echo "stopped ($DATA)"
      exit 3
    fi
    ;;
  url)
    require_cluster
    connection_url
    ;;
  psql)
    shift
    require_cluster
    PGPASSWORD=$(password_of prefect) exec "$(pg_bindir)/psql" -h "$HOST" -p "$(configured_port)" \
      -U "$DB" -d "$DB" "$@"
    ;;
  server)
    shift
    require_cluster
    is_running || die "PostgreSQL is not running; run: $0 start"
    check_driver
    prefect_bin="$(dirname "$(project_python)")/prefect"
    [ -x "$prefect_bin" ] || prefect_bin=prefect
    PREFECT_API_DATABASE_CONNECTION_URL=$(connection_url)
    export PREFECT_API_DATABASE_CONNECTION_URL
    export PREFECT_SERVER_ANALYTICS_ENABLED=${PREFECT_SERVER_ANALYTICS_ENABLED:-false}
    exec "$prefect_bin" server start "$@"
    ;;
  *)
    sed -n '2,19s/^# \{0,1\}//p' "$0" >&2
    exit 2
    ;;
esac
