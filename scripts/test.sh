#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing (venv, packages,
# Graphviz), starts a DynamoDB-compatible server (moto) on loopback with fake
# credentials, runs pytest, and stops the server again, also when tests fail.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
# asl-validator (npm, pinned) for the Step Functions definition tests: installed once.
./scripts/asl-validate.sh deploy/statemachine.asl.json >/dev/null
. scripts/ddb-server.sh
ddb_start
trap ddb_stop EXIT
.venv/bin/python -m pytest "$@"
