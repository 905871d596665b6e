#!/usr/bin/env bash
# The main job on embedded defaults: no API key, no network. Installs the package alone
# (not the test toolchain): the demo needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCHFSM_BOOTSTRAP=demo . scripts/bootstrap.sh
exec .venv/bin/batchfsm demo "$@"
