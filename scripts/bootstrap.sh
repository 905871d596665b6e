# Sourced by the Quickstart scripts: make sure .venv and what the caller needs are there.
# Safe to run again: it only installs what is missing or changed.
#
#   BATCHFSM_BOOTSTRAP=demo  the package alone (`pip install -e .`): all the demo needs
#   BATCHFSM_BOOTSTRAP=test  (the default) the package with its test extra, and Graphviz
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BATCHFSM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
KIND="${BATCHFSM_BOOTSTRAP:-test}"
case "$KIND" in demo | test) ;; *) echo "BATCHFSM_BOOTSTRAP must be demo or test, not '$KIND'" >&2; exit 2 ;; esac

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "batchfsm needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# Reinstall when pyproject.toml changes (a stamp keeps repeat runs fast); a test install
# also serves the demo, a demo install is completed by the first test run.
stamp="$VENV/.batchfsm-installed"
sum="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-64)"
have="$(cat "$stamp" 2>/dev/null || true)"
if [ "$have" != "test:$sum" ] && [ "$have" != "$KIND:$sum" ]; then
  if [ "$KIND" = demo ]; then
    echo "installing batchfsm"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT"
  else
    echo "installing batchfsm and its test dependencies"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[test]"
  fi
  echo "$KIND:$sum" >"$stamp"
fi
if [ "$KIND" = test ] && ! command -v dot >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Graphviz (Debian package graphviz)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
  else
    echo "Graphviz 'dot' is missing: install it (e.g. 'sudo apt-get install graphviz')" >&2
    exit 1
  fi
fi
