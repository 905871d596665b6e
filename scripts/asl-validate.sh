#!/usr/bin/env bash
# asl-validate.sh FILE...: validate Amazon States Language definitions with the npm
# package asl-validator (pinned), installed on first use into .cache/asl-validator.
#
# Needs Node.js and npm (the npm registry must be reachable the first time). Exits 0 when
# every file is valid, 1 when one is not, 2 when the validator cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
ASL_VALIDATOR_VERSION=4.0.0
prefix=.cache/asl-validator
bin="$prefix/node_modules/.bin/asl-validator"
installed="$prefix/node_modules/asl-validator/package.json"
if [ ! -x "$bin" ] || ! grep -q "\"version\": \"$ASL_VALIDATOR_VERSION\"" "$installed" 2>/dev/null; then
  if ! command -v npm >/dev/null; then
    echo "asl-validate: npm is not installed (Node.js 18+ is needed)" >&2
    exit 2
  fi
  mkdir -p "$prefix"
  if ! npm install --silent --no-audit --no-fund --prefix "$prefix" \
      "asl-validator@$ASL_VALIDATOR_VERSION" >"$prefix/install.log" 2>&1; then
    echo "asl-validate: npm install asl-validator@$ASL_VALIDATOR_VERSION failed:" >&2
    tail -20 "$prefix/install.log" >&2
    exit 2
  fi
fi
args=()
for file in "$@"; do args+=(--json-path "$file"); done
exec "$bin" "${args[@]}"
