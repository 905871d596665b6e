#!/usr/bin/env bash
# lambda-package.sh: build .build/lambda, the code of the poll function that
# deploy/template.yaml points at (CodeUri: ../.build/lambda): batchfsm and its runtime
# dependencies, as wheels for the Lambda platform (Linux x86_64, CPython 3.11).
#
#   scripts/lambda-package.sh && sam deploy --template-file deploy/template.yaml ...
#
# botocore is bundled rather than taken from the runtime: the S3 sink needs conditional
# writes (IfNoneMatch), which older botocore releases in the runtime do not send. boto3
# is not needed: batchfsm builds its clients on botocore (batchfsm/persistence/botocore_clients.py).
#
# LAMBDA_EXTRAS adds batchfsm extras to the bundle, comma-separated: "anthropic" for a
# function polling Anthropic's Message Batches (BATCHFSM_PROVIDER=anthropic; the key's
# secret then holds the Anthropic key), "lambda-metrics" for EMF metrics. None by default:
# each costs cold-start bytes a function that does not use it would carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
out=.build/lambda
wheels=.build/wheels
rm -rf "$out" "$wheels"
mkdir -p "$out" "$wheels"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$wheels" .
wheel=$(ls "$wheels"/batchfsm-*.whl)
extras="${LAMBDA_EXTRAS:-}"
"$PYTHON" -m pip install --quiet --target "$out" \
  --platform manylinux2014_x86_64 --implementation cp --python-version 3.11 \
  --only-binary=:all: "${wheel}${extras:+[$extras]}" 'botocore>=1.35.36'
# Lambda's code directory is read-only: ship bytecode, or every cold start compiles botocore,
# openai and pydantic from source (measured: 1.6-2.3 s instead of 0.63 s to import them).
# unchecked-hash: zip timestamps are not reliable for the usual freshness check.
find "$out" -name '__pycache__' -prune -exec rm -rf {} +
"$PYTHON" -m compileall -q -j0 --invalidation-mode unchecked-hash "$out"
echo "built $out ($(du -sh "$out" | cut -f1)); handler batchfsm.aws.lambda_handler"
