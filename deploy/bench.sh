#!/usr/bin/env bash
# The benchmark: ingest beside bare aio-pika and a naive consumer on each FerretDB backend, the
# demo agency at 1,000 and 10,000 companies, a time sweep and API latency, on the servers the
# project starts. Prints figures as it goes and writes them into docs/benchmarks.md.
# Arguments go to deploy/bench.py (e.g. --demo 1000 --backends postgresql for a quick run).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deploy/setup.sh
deploy/servers.sh up >/dev/null
exec .venv/bin/python deploy/bench.py "$@"
