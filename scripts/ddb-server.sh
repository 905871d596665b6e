# shellcheck shell=bash
# ddb-server.sh: start and stop a local DynamoDB-compatible server (moto) for tests.
#
# Source it, then:
#     ddb_start && trap ddb_stop EXIT && .venv/bin/python -m pytest tests/persistence
#
# moto's server mode only (Apache-2.0). DynamoDB Local is deliberately not offered: its
# licence is not open source (https://aws.amazon.com/dynamodb/dynamodblocallicense/).
#
# ddb_start picks a free port on 127.0.0.1 (override with DDB_PORT), waits until the
# server answers a ListTables call, and exports:
#     AWS_ENDPOINT_URL_DYNAMODB   http://127.0.0.1:PORT (boto3 honours it)
#     AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY   fake ("test"): real keys are never used
#     AWS_DEFAULT_REGION          us-east-1
#     BATCHFSM_TEST_DYNAMODB_URL  dynamodb://?endpoint_url=...&region=...  (tests read it)
# ddb_stop kills exactly the process ddb_start started, by its PID, and unsets them.

DDB_VENV="${DDB_VENV:-.venv}"
DDB_HOST=127.0.0.1

# moto_server itself, but serving one request at a time. moto's DynamoDB backend has no
# locks and `moto_server` is multi-threaded, so two concurrent TransactWriteItems can both
# pass their conditions (seen here: two winners for one version). DynamoDB applies every
# request atomically; a single-threaded moto does too, while clients still race freely.
_DDB_SERVE='
import os, sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
host, port = sys.argv[1], int(sys.argv[2])
os.environ.setdefault("MOTO_PORT", str(port))
run_simple(host, port, DomainDispatcherApplication(create_backend_app),
           threaded=False, request_handler=MotoRequestHandler)
'

_ddb_free_port() {  # ask the kernel for an unused port; a race is caught by the probe below
  "$DDB_VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

_ddb_probe() {  # one ListTables call; moto routes on a SigV4-looking header naming dynamodb
  "$DDB_VENV/bin/python" - "$DDB_HOST" "$1" <<'PY' 2>/dev/null
import sys, urllib.request
host, port = sys.argv[1], sys.argv[2]
request = urllib.request.Request(
    f"http://{host}:{port}/", data=b"{}", method="POST",
    headers={
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.ListTables",
        "X-Amz-Date": "20250101T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/dynamodb/"
                         "aws4_request, SignedHeaders=host;x-amz-date, Signature=0",
    },
)
with urllib.request.urlopen(request, timeout=2) as answer:
    sys.exit(0 if answer.status == 200 else 1)
PY
}

ddb_start() {
  if [ -n "${DDB_PID:-}" ] && kill -0 "$DDB_PID" 2>/dev/null; then
    echo "ddb_start: already running (pid $DDB_PID) on $AWS_ENDPOINT_URL_DYNAMODB" >&2
    return 0
  fi
  if ! "$DDB_VENV/bin/python" -c 'import moto.moto_server.werkzeug_app, flask' 2>/dev/null; then
    echo "ddb_start: moto server mode is not installed in $DDB_VENV; pip install 'moto[dynamodb]' flask flask-cors" >&2
    return 1
  fi
  local port="${DDB_PORT:-$(_ddb_free_port)}"
  if _ddb_probe "$port"; then
    echo "ddb_start: port $port already serves DynamoDB: refusing to reuse it" >&2
    return 1
  fi
  DDB_LOG="${DDB_LOG_DIR:-${TMPDIR:-/tmp}}/ddb-server-$port.log"
  "$DDB_VENV/bin/python" -c "$_DDB_SERVE" "$DDB_HOST" "$port" >"$DDB_LOG" 2>&1 &
  DDB_PID=$!
  local i
  for i in $(seq 1 300); do                   # up to 30 s
    kill -0 "$DDB_PID" 2>/dev/null || break   # died (port clash, bad install): fail fast
    if _ddb_probe "$port"; then
      export AWS_ENDPOINT_URL_DYNAMODB="http://$DDB_HOST:$port"
      export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1
      unset AWS_SESSION_TOKEN AWS_PROFILE
      export BATCHFSM_TEST_DYNAMODB_URL="dynamodb://?region=$AWS_DEFAULT_REGION&endpoint_url=$AWS_ENDPOINT_URL_DYNAMODB"
      export DDB_PID
      echo "moto DynamoDB ready on $AWS_ENDPOINT_URL_DYNAMODB (pid $DDB_PID, log $DDB_LOG)"
      return 0
    fi
    sleep 0.1
  done
  echo "ddb_start: the moto server failed to start on port $port; log:" >&2
  tail -50 "$DDB_LOG" >&2
  ddb_stop
  return 1
}

ddb_stop() {
  if [ -n "${DDB_PID:-}" ] && kill -0 "$DDB_PID" 2>/dev/null; then
    kill "$DDB_PID"
    wait "$DDB_PID" 2>/dev/null || true
  fi
  DDB_PID=
  unset AWS_ENDPOINT_URL_DYNAMODB BATCHFSM_TEST_DYNAMODB_URL
}
