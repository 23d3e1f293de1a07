#!/usr/bin/env bash
# Publishes a demo agency (dozens of companies across all tabs) to the running main job and
# prints a token to try the API with. Arguments go to `python -m services demo`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deploy/setup.sh
# shellcheck source=deploy/dev-env.sh
source deploy/dev-env.sh
exec .venv/bin/python -m services demo "$@"
