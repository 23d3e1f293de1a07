#!/usr/bin/env bash
# The main job: servers up, then every consumer, the catch-all, the clock and the HTTP API in one
# process, logging to the terminal. Ctrl-C stops cleanly (consumers finish and ack what they
# hold). Arguments go to `python -m services run` (e.g. --only bookkeeping --no-api).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deploy/setup.sh
deploy/servers.sh up
# shellcheck source=deploy/dev-env.sh
source deploy/dev-env.sh
echo "[run] API on http://${BACKOFFICE_API_HOST:-127.0.0.1}:${BACKOFFICE_API_PORT:-8000} (try deploy/demo.sh in another terminal)" >&2
exec .venv/bin/python -m services run "$@"
