"""Cold start of the Lambda handler, as a ratio to importing boto3 and openai alone.

A Lambda cold start pays for the imports and for the first invocation's setup (clients,
rulebook, store, the key from Secrets Manager). This measures both in fresh Python
processes against local stand-ins (moto's server for DynamoDB, S3 and Secrets Manager;
the sandbox for the Batch API), alternating with the baseline ``import boto3, openai``
so machine noise hits both alike. Target: the median ratio at most 1.3.

Each run polls its own batch on its own table, and that first poll is the busy kind: the
store says ``validating``, the API already says ``in_progress``, so it reads the record,
retrieves the batch, commits the transition with its history and runs the ``watch``
effect the new state owes (inline, in that same commit). batchfsm's bytecode is compiled
first, as pip compiles boto3's and openai's: the comparison is then between like and like.

    .venv/bin/python bench/bench_coldstart.py [--runs 9] [--floor]
    .venv/bin/python bench/bench_coldstart.py --profile      # one cold start under cProfile
    .venv/bin/python bench/bench_coldstart.py --importtime   # what it imports beyond boto3/openai
    .venv/bin/python bench/bench_coldstart.py --calls        # its remote calls, timed
"""

from __future__ import annotations

import argparse
import compileall
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

BASELINE = """
import time
t0 = time.perf_counter()
import boto3, openai
print(time.perf_counter() - t0)
"""

HANDLER = """
import json, sys, time
t0 = time.perf_counter()
from batchfsm.aws import lambda_handler
ti = time.perf_counter()
answer = lambda_handler({"batch_id": sys.argv[1]}, None)
t1 = time.perf_counter()
lambda_handler({"batch_id": sys.argv[1]}, None)
t2 = time.perf_counter()
assert answer["batch_id"] == sys.argv[1], answer
print(json.dumps({"cold": t1 - t0, "warm": t2 - t1, "import": ti - t0}))
"""

FLOOR = """
# The least any poll handler on the AWS SDK and openai does, with no batchfsm at all:
# the imports (botocore's low-level clients, as batchfsm uses: boto3 adds nothing a poll
# needs), a DynamoDB and a Secrets Manager client on one session, the key, one retrieve,
# one read, one conditional commit.
import json, os, sys, time
t0 = time.perf_counter()
import botocore.session, openai
from botocore.config import Config
session = botocore.session.get_session()
ddb = session.create_client("dynamodb", config=Config(retries={"total_max_attempts": 1}))
arn = os.environ["BATCHFSM_OPENAI_KEY_SECRET_ARN"]
key = session.create_client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
api = openai.OpenAI(api_key=key, base_url=os.environ["OPENAI_BASE_URL"], max_retries=0)
api.batches.retrieve(sys.argv[1])
table, pk = os.environ["BATCHFSM_TABLE"], {"pk": {"S": "B#" + sys.argv[1]}, "sk": {"S": "#"}}
version = ddb.get_item(TableName=table, Key=pk, ConsistentRead=True)["Item"]["version"]
ddb.update_item(
    TableName=table, Key=pk, UpdateExpression="SET #v = :new", ConditionExpression="#v = :old",
    ExpressionAttributeNames={"#v": "version"},
    ExpressionAttributeValues={":old": version, ":new": {"N": str(int(version["N"]) + 1)}},
)
print(time.perf_counter() - t0)
"""

PROFILE = """
import cProfile, pstats, sys
profiler = cProfile.Profile()
profiler.enable()
from batchfsm.aws import lambda_handler
lambda_handler({"batch_id": sys.argv[1]}, None)
profiler.disable()
stats = pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative")
stats.print_stats(int(sys.argv[2]))
"""

CALLS = """
import sys, time
from collections import Counter
import botocore.client, httpx2
calls, spent = Counter(), Counter()
make = botocore.client.BaseClient._make_api_call
def timed_call(self, operation, params):
    t0 = time.perf_counter()
    try:
        return make(self, operation, params)
    finally:
        key = self.meta.service_model.service_name + "." + operation
        calls[key] += 1
        spent[key] += time.perf_counter() - t0
botocore.client.BaseClient._make_api_call = timed_call
send = httpx2.Client.send
def timed_send(self, request, **kwargs):
    t0 = time.perf_counter()
    try:
        return send(self, request, **kwargs)
    finally:
        key = "openai." + request.method + " " + request.url.path.rsplit("/", 1)[0]
        calls[key] += 1
        spent[key] += time.perf_counter() - t0
httpx2.Client.send = timed_send
from batchfsm.aws import lambda_handler
answer = lambda_handler({"batch_id": sys.argv[1]}, None)
for key, n in sorted(calls.items()):
    print(f"{key:40} {n:3}  {spent[key] * 1000:7.1f} ms")
print("status", answer["status"], "action", answer["action"])
"""


def _child(code: str, env: dict[str, str], *args: str, flags: tuple[str, ...] = ()) -> str:
    out = subprocess.run(
        [sys.executable, *flags, "-c", code, *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stderr if "-X" in flags else out.stdout


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


@contextmanager
def _stand_ins(runs: int) -> Iterator[list[tuple[dict[str, str], str]]]:
    """moto (DynamoDB, S3, Secrets Manager) and the sandbox, with one table and one
    submitted batch per run; yields each run's function environment and batch id.

    Each batch is recorded as ``validating``; then the sandbox's clock moves past the
    validating phase, so the API already says ``in_progress`` and the first poll commits
    a transition and runs the effect it owes (the watch). A table per run keeps every
    run's store the same size: moto answers an index query by scanning the whole table.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    import batchfsm
    from batchfsm.aws.app import LambdaApp
    from batchfsm.jobs.submit import submit_job
    from batchfsm.persistence.dynamodb.store import DynamoDBJobStore
    from batchfsm.ports import FrozenClock
    from batchfsm.sandbox import Fate, Phases, Scenario
    from batchfsm.sandbox.server import running_sandbox
    from batchfsm.sandbox.testing import batch_input

    # A deployment ships bytecode for every module, as pip writes it for boto3 and openai
    # (the baseline's): without it each cold start would compile batchfsm from source.
    compileall.compile_dir(Path(batchfsm.__file__).parent, quiet=1)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    aws_env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint,
    }
    os.environ.update(aws_env)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    arn = boto3.client("secretsmanager").create_secret(Name=bucket, SecretString="sk-bench")["ARN"]

    scenario = Scenario(default=Fate(phases=Phases(validating_s=60.0, in_progress_s=3600.0)))
    clock = FrozenClock(datetime.now(UTC))
    try:
        with (
            running_sandbox(scenario, clock=clock) as sandbox,
            tempfile.TemporaryDirectory() as tmp,
        ):
            common = {
                **{
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith(("OPENAI_", "BATCHFSM_"))
                },
                **aws_env,
                "BATCHFSM_RESULTS": f"s3://{bucket}/bench",
                "BATCHFSM_OPENAI_KEY_SECRET_ARN": arn,
                "BATCHFSM_WORKDIR": tmp,
                "OPENAI_BASE_URL": sandbox.base_url,
            }
            prepared = []
            for n in range(runs):
                table = f"bench-{uuid.uuid4().hex[:8]}"
                DynamoDBJobStore(boto3.client("dynamodb"), table).init()
                env = {**common, "BATCHFSM_TABLE": table}
                submitter = LambdaApp({**env, "OPENAI_API_KEY": "sk-bench"})
                path = Path(tmp) / f"in{n}.jsonl"
                path.write_bytes(batch_input([f"r{i}" for i in range(20)]))
                (batch_id,) = submit_job(submitter.runtime.tracker, path, "/v1/embeddings").launched
                submitter.close()
                prepared.append((env, batch_id))
            clock.advance(120)  # every batch is in_progress now; every record validating
            yield prepared
    finally:
        moto.stop()


def _import_times(stderr: str) -> dict[str, int]:
    """Self time (us) per module from ``-X importtime`` output."""
    times: dict[str, int] = {}
    for line in stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            self_us, _cumulative, name = line.removeprefix("import time:").split("|")
            times.setdefault(name.strip(), int(self_us))
    return times


def _import_table(env: dict[str, str], batch_id: str, top: int) -> str:
    """What the cold start imports beyond ``import boto3, openai``: self times per top
    package, then the largest modules."""
    flags = ("-X", "importtime")
    base = _import_times(_child(BASELINE, env, flags=flags))
    mine = _import_times(_child(HANDLER, env, batch_id, flags=flags))
    extra = {name: us for name, us in mine.items() if name not in base}
    unused = sum(us for name, us in base.items() if name not in mine)
    packages: dict[str, list[int]] = {}
    for name, us in extra.items():
        total = packages.setdefault(name.split(".")[0], [0, 0])
        total[0] += us
        total[1] += 1
    lines = [
        f"baseline: {len(base)} modules, {sum(base.values()) / 1000:.1f} ms self",
        f"cold start: {len(mine)} modules, {sum(mine.values()) / 1000:.1f} ms self",
        f"  beyond the baseline: {len(extra)} modules, {sum(extra.values()) / 1000:.1f} ms",
        f"  baseline modules it does not import: {unused / 1000:.1f} ms",
        "",
    ]
    for package, (us, count) in sorted(packages.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"{us / 1000:8.1f} ms {count:4} modules  {package}")
    lines.append("")
    for name, us in sorted(extra.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{us / 1000:8.1f} ms  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--profile", action="store_true", help="one cold start under cProfile")
    parser.add_argument("--importtime", action="store_true", help="one cold start, -X importtime")
    parser.add_argument("--calls", action="store_true", help="the cold start's remote calls")
    parser.add_argument(
        "--floor", action="store_true", help="also time the least an SDK-only poll does"
    )
    parser.add_argument("--top", type=int, default=60, help="rows to print (profile, imports)")
    args = parser.parse_args()

    single = args.profile or args.importtime or args.calls
    with _stand_ins(1 if single else args.runs) as prepared:
        env, batch_id = prepared[0]
        if args.profile:
            print(_child(PROFILE, env, batch_id, str(args.top)))
            return
        if args.importtime:
            print(_import_table(env, batch_id, args.top))
            return
        if args.calls:
            print(_child(CALLS, env, batch_id))
            return
        baseline, cold, warm, imports, floor = [], [], [], [], []
        for env, batch_id in prepared:
            baseline.append(float(_last_line(_child(BASELINE, env))))
            times = json.loads(_last_line(_child(HANDLER, env, batch_id)))
            cold.append(times["cold"])
            warm.append(times["warm"])
            imports.append(times["import"])
            if args.floor:  # after the handler: its commit must not disturb the poll
                floor.append(float(_last_line(_child(FLOOR, env, batch_id))))

    base, first = statistics.median(baseline), statistics.median(cold)
    ratios = sorted(c / b for c, b in zip(cold, baseline, strict=True))
    print(f"runs: {args.runs} fresh processes each (medians)")
    print(f"import boto3, openai:                  {base * 1000:7.1f} ms")
    print(f"import batchfsm.aws + 1st invocation:  {first * 1000:7.1f} ms")
    print(f"  of which import batchfsm.aws:       {statistics.median(imports) * 1000:7.1f} ms")
    print(f"2nd invocation (warm container):       {statistics.median(warm) * 1000:7.1f} ms")
    print(f"cold start ratio:                      {first / base:7.2f}x  (target <= 1.3x)")
    spread = " ".join(f"{r:.2f}" for r in ratios)
    print(f"  per pair (median {statistics.median(ratios):.2f}x): {spread}")
    if floor:
        least = statistics.median(floor)
        pairs = statistics.median(f / b for f, b in zip(floor, baseline, strict=True))
        print(
            f"SDK-only floor (no batchfsm):          {least * 1000:7.1f} ms  {pairs:.2f}x per pair"
        )
        print(f"cold start / SDK-only floor:           {first / least:7.2f}x")


if __name__ == "__main__":
    main()
