#!/usr/bin/env bash
# The whole test suite: lint, types, schemas, the Kubernetes manifests, then unit, integration and browser tests on real
# servers (the browser is Debian's chromium, installed here).
# Arguments go to pytest (e.g. tests/unit, -k bookkeeping).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
deploy/setup.sh
deploy/chromium.sh
deploy/k8s/schemas.sh
deploy/servers.sh up
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m contracts.schemas --check
.venv/bin/python -m contracts.asyncapi --check
.venv/bin/python deploy/k8s/render.py --check
.venv/bin/pytest "$@"
