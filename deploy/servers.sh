#!/usr/bin/env bash
# Provisions the two servers the project needs on a machine without Docker:
# RabbitMQ from Debian's package, and a MongoDB wire-protocol server (mongod when on PATH,
# otherwise FerretDB built from its Go module, with our four fixes, and run on PostgreSQL from
# Debian's package, or on SQLite). Idempotent: installs what is missing, starts what is stopped,
# waits until each answers.
#
#   deploy/servers.sh up                 install + start both, print URLs
#   deploy/servers.sh down               stop both
#   deploy/servers.sh status             say what answers
#   deploy/servers.sh start|stop NAME    one server: rabbitmq or mongo
#   deploy/servers.sh policies           apply the broker's policies again (after a settings change)
#   deploy/servers.sh sql QUERY          run QUERY on the PostgreSQL under FerretDB (its database)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$root/.servers"
tools="${BACKOFFICE_TOOLS_DIR:-$HOME/.cache/backoffice/bin}"
ferretdb_version="${BACKOFFICE_FERRETDB_VERSION:-v1.24.2}"
# FerretDB's storage: postgresql (the default: writes by _id stay flat as collections grow) or
# sqlite (no extra server, but every write by _id reads the whole collection).
ferretdb_backend="${BACKOFFICE_FERRETDB_BACKEND:-postgresql}"
ferretdb_patches="$root/deploy/ferretdb"  # our fixes, applied in name order
mongo_port=27017
amqp_port=5672
pg_port="${BACKOFFICE_PG_PORT:-54320}"

log() { printf '[servers] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds name
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    port_open "$1" && return 0
    sleep 0.1
  done
  log "$3 did not answer on 127.0.0.1:$1 within $2 s"
  return 1
}

# ---------------------------------------------------------------- RabbitMQ
rabbit_install() {
  command -v rabbitmq-server >/dev/null && return 0
  log "installing rabbitmq-server from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq rabbitmq-server >/dev/null
}

rabbit_running() { rabbitmqctl -q status >/dev/null 2>&1; }

rabbit_start() {
  rabbit_install
  if ! rabbit_running; then
    log "starting RabbitMQ"
    rabbitmq-server -detached
  fi
  # await_startup fails at once while the node has not registered yet: ask until it answers.
  local i
  for ((i = 0; i < 120; i++)); do
    timeout 120 rabbitmqctl -q await_startup >/dev/null 2>&1 && break
    sleep 1
  done
  wait_port "$amqp_port" 60 RabbitMQ
  # Partitioned consumers (BACKOFFICE_PARTITIONS > 1) route through a consistent-hash exchange.
  rabbitmq-plugins -q enable rabbitmq_consistent_hash_exchange >/dev/null
  rabbit_policies
}

# The service's policies (alternate exchange, dead-lettering, delivery limit: docs/architecture.md),
# from the consumers and BACKOFFICE_* settings, so a changed BACKOFFICE_DELIVERY_LIMIT takes
# effect on the next start. Needs the project's .venv (deploy/setup.sh).
rabbit_policies() {
  local py="$root/.venv/bin/python"
  if [ ! -x "$py" ]; then
    log "no .venv yet: run deploy/setup.sh, then this script again, to apply the broker policies"
    return 0
  fi
  # rabbitmqctl reads the file as the rabbitmq user, which may not reach the checkout (a
  # private temporary folder, say): hand it a readable file of its own.
  local file
  file=$(mktemp --suffix=.json)
  (cd "$root" && "$py" -m services broker-definitions) >"$file"
  chmod 644 "$file"
  rabbitmqctl -q import_definitions "$file" >/dev/null || { rm -f "$file"; return 1; }
  rm -f "$file"
}

rabbit_stop() {
  if rabbit_running; then
    log "stopping RabbitMQ"
    rabbitmqctl -q shutdown >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------- MongoDB wire protocol
# The binary's name carries the patches' checksum, so a changed patch builds anew.
ferretdb_bin() {
  echo "$tools/ferretdb-$ferretdb_version-$(cat "$ferretdb_patches"/*.patch | sha256sum | cut -c1-12)"
}

ferretdb_build() {
  local bin src work
  bin=$(ferretdb_bin)
  [ -x "$bin" ] && return 0
  command -v go >/dev/null || { log "neither mongod nor go is on PATH"; return 1; }
  log "building FerretDB $ferretdb_version from its Go module (once; cached in $tools)"
  # `go install github.com/FerretDB/FerretDB/cmd/ferretdb@VERSION` fetches the module but the
  # binary it makes panics at start: the module zip lacks build/version/version.txt, which the
  # release process generates. So we fetch the same module and build it with that file written.
  src=$(go mod download -json "github.com/FerretDB/FerretDB@$ferretdb_version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$src" ] || { log "could not download the FerretDB module"; return 1; }
  work=$(mktemp -d)
  cp -r "$src" "$work/ferretdb"
  chmod -R u+w "$work/ferretdb"
  echo "$ferretdb_version" >"$work/ferretdb/build/version/version.txt"
  # Our fixes (docs/architecture.md, "FerretDB"): an update command closes each statement's
  # query before the next (a bulk write of more statements than the pool holds deadlocked it for
  # good), a filter on one _id uses the _id index (it read the whole collection), a replace by
  # _id and version is one guarded UPDATE (it read and converted the old document first), no
  # stack is recorded for every iterator it makes (a fifth of its CPU on a lookup), and an _id
  # among a list of strings goes to the storage too (FerretDB read the whole collection), the
  # replaces of one update command are one transaction (one commit, not one each), a find of a
  # few top-level fields has the storage hand over only those; its buildInfo names the fixes
  # that clients may count on.
  local patch
  for patch in "$ferretdb_patches"/*.patch; do
    (cd "$work/ferretdb" && patch -s -p1 <"$patch")
  done
  mkdir -p "$tools"
  (cd "$work/ferretdb" && go build -o "$bin.tmp" ./cmd/ferretdb)
  mv "$bin.tmp" "$bin"
  rm -rf "$work"
}

# ---------------------------------------------------------------- PostgreSQL (FerretDB's storage)
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

pg_install() {
  [ -n "$(pg_bin)" ] && return 0
  log "installing postgresql from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
}

# PostgreSQL will not run as root: it runs as the postgres user, with its data in
# .servers/postgres when that user can reach the checkout, else under /var/lib/backoffice.
pg_data() {
  if runuser -u postgres -- test -x "$state" 2>/dev/null; then
    echo "$state/postgres"
  else
    echo "/var/lib/backoffice/$(echo "$root" | sha256sum | cut -c1-12)/postgres"
  fi
}

pg_as() { runuser -u postgres -- "$@"; }

pg_psql() { pg_as "$(pg_bin)/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -qtA "$@"; }

pg_start() {
  pg_install
  local bin data
  bin=$(pg_bin)
  mkdir -p "$state"
  data=$(pg_data)
  if port_open "$pg_port" && ! pg_as "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    # Another checkout of the project started its PostgreSQL on our port: share it.
    log "using the PostgreSQL already on 127.0.0.1:$pg_port"
  elif [ ! -f "$data/PG_VERSION" ]; then
    log "initialising PostgreSQL in $data (loopback only)"
    mkdir -p "$data"
    chown postgres: "$data"
    chmod 700 "$data"
    pg_as "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
    # Loopback only, on a port of our own. Commits wait for the disk (the default): a consumer
    # acknowledges a message once its write is answered, so a write must not be lost after.
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$data'
shared_buffers = 256MB
EOF
  fi
  if ! port_open "$pg_port"; then
    log "starting PostgreSQL on 127.0.0.1:$pg_port"
    pg_as "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null
  fi
  pg_psql -c "SELECT 1 FROM pg_roles WHERE rolname = 'ferretdb'" | grep -q 1 ||
    pg_psql -c "CREATE ROLE ferretdb LOGIN"
  pg_psql -c "SELECT 1 FROM pg_database WHERE datname = 'ferretdb'" | grep -q 1 ||
    pg_psql -c "CREATE DATABASE ferretdb OWNER ferretdb"
  pg_rows_inline
}

# A row stays in its table page, uncompressed, up to a page (toast_tuple_target = 8160), in every
# table FerretDB makes and has made: a tab's document is 2 to 8 KB of JSON, and by default
# PostgreSQL tried to compress each one above 2 KB on every write (pglz, mostly in vain), moved
# it to the TOAST table, and decompressed it to check a replace's guard. Measured paired, that
# took a quarter of PostgreSQL's CPU a write (docs/benchmarks.md (26)). An event trigger, since
# FerretDB makes its tables as collections appear; the rows already stored move when rewritten.
pg_rows_inline() {
  pg_psql -d ferretdb -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE OR REPLACE FUNCTION public.backoffice_rows_inline() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
  made record;
BEGIN
  FOR made IN SELECT objid FROM pg_event_trigger_ddl_commands()
      WHERE command_tag = 'CREATE TABLE' AND object_type = 'table' LOOP
    EXECUTE format('ALTER TABLE %s SET (toast_tuple_target = 8160)', made.objid::regclass);
  END LOOP;
END $$;
DROP EVENT TRIGGER IF EXISTS backoffice_rows_inline;
CREATE EVENT TRIGGER backoffice_rows_inline ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
  EXECUTE FUNCTION public.backoffice_rows_inline();
DO $$
DECLARE
  kept regclass;
BEGIN
  FOR kept IN SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        AND n.nspname NOT LIKE 'pg\_%'
        AND NOT coalesce(c.reloptions @> ARRAY['toast_tuple_target=8160'], false) LOOP
    EXECUTE format('ALTER TABLE %s SET (toast_tuple_target = 8160)', kept);
  END LOOP;
END $$;
SQL
}

pg_stop() {
  local bin data
  bin=$(pg_bin)
  data=$(pg_data)
  [ -n "$bin" ] && [ -f "$data/PG_VERSION" ] || return 0
  if pg_as "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "stopping PostgreSQL"
    pg_as "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
  fi
}

mongo_pidfile="$state/mongo.pid"

mongo_running() {
  [ -f "$mongo_pidfile" ] && kill -0 "$(cat "$mongo_pidfile")" 2>/dev/null
}

mongo_start() {
  if mongo_running || port_open "$mongo_port"; then
    wait_port "$mongo_port" 30 MongoDB
    return 0
  fi
  mkdir -p "$state"
  if command -v mongod >/dev/null; then
    log "starting mongod"
    mkdir -p "$state/mongod"
    mongod --dbpath "$state/mongod" --bind_ip 127.0.0.1 --port "$mongo_port" \
      --logpath "$state/mongod.log" --fork --pidfilepath "$mongo_pidfile" >/dev/null
  else
    ferretdb_build
    local storage
    case "$ferretdb_backend" in
      postgresql)
        pg_start
        storage=(--handler=postgresql
          --postgresql-url="postgres://ferretdb@127.0.0.1:$pg_port/ferretdb")
        ;;
      sqlite)
        mkdir -p "$state/ferretdb"
        storage=(--handler=sqlite --sqlite-url="file:$state/ferretdb/")
        ;;
      *) log "BACKOFFICE_FERRETDB_BACKEND must be postgresql or sqlite"; return 2 ;;
    esac
    log "starting FerretDB $ferretdb_version ($ferretdb_backend backend)"
    # Go's collector at a heap of five times the live one instead of twice: it took a sixth of
    # FerretDB's CPU under load, for a few tens of MB (docs/benchmarks.md (26)); the soft limit
    # makes it collect harder before the heap could grow past 1 GiB.
    GOGC=400 GOMEMLIMIT=1GiB nohup "$(ferretdb_bin)" "${storage[@]}" \
      --listen-addr="127.0.0.1:$mongo_port" --state-dir="$state" --debug-addr=127.0.0.1:0 \
      --telemetry=disable --log-level=warn --log-format=json \
      >>"$state/ferretdb.log" 2>&1 </dev/null &
    echo $! >"$mongo_pidfile"
  fi
  wait_port "$mongo_port" 60 MongoDB
}

# The pid of the server on our port: from our pid file, or (started from another checkout of the
# project) from the socket's owner, when that is a mongod or a FerretDB.
mongo_pid() {
  if mongo_running; then
    cat "$mongo_pidfile"
    return
  fi
  command -v ss >/dev/null || return 0
  ss -ltnpH "sport = :$mongo_port" 2>/dev/null |
    sed -n 's/.*("\(ferretdb[^"]*\|mongod\)",pid=\([0-9]*\).*/\2/p' | head -n 1
}

mongo_stop() {
  local pid i
  pid=$(mongo_pid)
  if [ -n "$pid" ]; then
    log "stopping the MongoDB wire-protocol server"
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$mongo_pidfile"
  fi
}

# ---------------------------------------------------------------- commands
status() {
  if port_open "$amqp_port"; then echo "rabbitmq: up   amqp://guest:guest@127.0.0.1:$amqp_port/"
  else echo "rabbitmq: down"; fi
  if port_open "$mongo_port"; then echo "mongo:    up   mongodb://127.0.0.1:$mongo_port/"
  else echo "mongo:    down"; fi
}

one() { # start|stop name
  case "$2" in
    rabbitmq) "rabbit_$1" ;;
    mongo) "mongo_$1" ;;
    *) log "unknown server '$2' (rabbitmq or mongo)"; exit 2 ;;
  esac
}

case "${1:-up}" in
  up) rabbit_start; mongo_start; status ;;
  down) mongo_stop; pg_stop; rabbit_stop ;;
  status) status ;;
  policies) rabbit_policies ;;
  start | stop) one "$1" "${2:?name: rabbitmq or mongo}" ;;
  sql)
    if command -v mongod >/dev/null || [ "$ferretdb_backend" != postgresql ]; then
      log "no PostgreSQL under the MongoDB server here"
      exit 3
    fi
    pg_psql -d ferretdb -v ON_ERROR_STOP=1 -c "${2:?a query}"
    ;;
  *) log "usage: $0 [up|down|status|policies|start NAME|stop NAME|sql QUERY]"; exit 2 ;;
esac
