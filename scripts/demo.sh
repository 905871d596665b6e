#!/usr/bin/env bash
# The main job on embedded defaults: no API key, no network.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
exec .venv/bin/batchfsm demo "$@"
