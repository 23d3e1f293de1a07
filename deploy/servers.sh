#!/usr/bin/env bash
# Provisions the two servers the project needs on a machine without Docker:
# RabbitMQ from Debian's package, and a MongoDB wire-protocol server (mongod when on PATH,
# otherwise FerretDB built from its Go module and run on SQLite). Idempotent: installs what is
# missing, starts what is stopped, waits until each answers.
#
#   deploy/servers.sh up                 install + start both, print URLs
#   deploy/servers.sh down               stop both
#   deploy/servers.sh status             say what answers
#   deploy/servers.sh start|stop NAME    one server: rabbitmq or mongo
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$root/.servers"
tools="${BACKOFFICE_TOOLS_DIR:-$HOME/.cache/backoffice/bin}"
ferretdb_version="${BACKOFFICE_FERRETDB_VERSION:-v1.24.2}"
mongo_port=27017
amqp_port=5672

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
}

rabbit_stop() {
  if rabbit_running; then
    log "stopping RabbitMQ"
    rabbitmqctl -q shutdown >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------- MongoDB wire protocol
ferretdb_bin() { echo "$tools/ferretdb-$ferretdb_version"; }

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
  mkdir -p "$tools"
  (cd "$work/ferretdb" && go build -o "$bin.tmp" ./cmd/ferretdb)
  mv "$bin.tmp" "$bin"
  rm -rf "$work"
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
    log "starting FerretDB $ferretdb_version (SQLite backend, data in .servers/ferretdb)"
    mkdir -p "$state/ferretdb"
    nohup "$(ferretdb_bin)" --handler=sqlite --sqlite-url="file:$state/ferretdb/" \
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
  down) mongo_stop; rabbit_stop ;;
  status) status ;;
  start | stop) one "$1" "${2:?name: rabbitmq or mongo}" ;;
  *) log "usage: $0 [up|down|status|start NAME|stop NAME]"; exit 2 ;;
esac
