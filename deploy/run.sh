#!/usr/bin/env bash
# The main job: servers up, then every consumer, the catch-all and the clock in one process,
# logging to the terminal. Ctrl-C stops cleanly (consumers finish and ack what they hold).
# Arguments go to `python -m services run` (e.g. --only bookkeeping).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deploy/setup.sh
deploy/servers.sh up
exec .venv/bin/python -m services run "$@"
