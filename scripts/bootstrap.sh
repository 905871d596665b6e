# Sourced by the Quickstart scripts: make sure .venv, the Python packages and Graphviz
# are there. Safe to run again: it only installs what is missing or changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BATCHFSM_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "batchfsm needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
# Reinstall when pyproject.toml changes (a stamp keeps repeat runs fast).
stamp="$VENV/.batchfsm-installed"
want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-64)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing batchfsm and its test dependencies"
  "$VENV/bin/pip" install -q -e "$ROOT[test]"
  echo "$want" >"$stamp"
fi
if ! command -v dot >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Graphviz (Debian package graphviz)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
  else
    echo "Graphviz 'dot' is missing: install it (e.g. 'sudo apt-get install graphviz')" >&2
    exit 1
  fi
fi
