"""Cold start of the Lambda handler, as a ratio to importing boto3 and openai alone.

A Lambda cold start pays for the imports and for the first invocation's setup (clients,
rulebook, store, the key from Secrets Manager). This measures both in fresh Python
processes against local stand-ins (moto's server for DynamoDB, S3 and Secrets Manager;
the sandbox for the Batch API), alternating with the baseline ``import boto3, openai``
so machine noise hits both alike. Target: the median ratio at most 1.3.

    .venv/bin/python bench/bench_coldstart.py [--runs 9]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
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


def _child(code: str, env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    from batchfsm.aws import LambdaApp
    from batchfsm.persistence.dynamodb import DynamoDBJobStore
    from batchfsm.sandbox import Fate, Phases, Scenario
    from batchfsm.sandbox.server import running_sandbox
    from batchfsm.sandbox.testing import batch_input
    from batchfsm.submit import submit_job

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
    table, bucket = f"bench-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
    DynamoDBJobStore(boto3.client("dynamodb"), table).init()
    boto3.client("s3").create_bucket(Bucket=bucket)
    arn = boto3.client("secretsmanager").create_secret(Name=table, SecretString="sk-bench")["ARN"]

    scenario = Scenario(default=Fate(phases=Phases(in_progress_s=3600.0)))
    with running_sandbox(scenario) as sandbox, tempfile.TemporaryDirectory() as tmp:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCHFSM_"))},
            **aws_env,
            "BATCHFSM_TABLE": table,
            "BATCHFSM_RESULTS": f"s3://{bucket}/bench",
            "BATCHFSM_OPENAI_KEY_SECRET_ARN": arn,
            "BATCHFSM_WORKDIR": tmp,
            "OPENAI_BASE_URL": sandbox.base_url,
        }
        submitter = LambdaApp({**env, "OPENAI_API_KEY": "sk-bench"})
        path = Path(tmp) / "in.jsonl"
        path.write_bytes(batch_input([f"r{i}" for i in range(20)]))
        (batch_id,) = submit_job(submitter.runtime.tracker, path, "/v1/embeddings").launched
        submitter.close()

        baseline, cold, warm, imports = [], [], [], []
        for _ in range(args.runs):
            baseline.append(float(_child(BASELINE, env)))
            times = json.loads(_child(HANDLER, env, batch_id))
            cold.append(times["cold"])
            warm.append(times["warm"])
            imports.append(times["import"])
    moto.stop()

    base, first = statistics.median(baseline), statistics.median(cold)
    print(f"runs: {args.runs} fresh processes each (medians)")
    print(f"import boto3, openai:                  {base * 1000:7.1f} ms")
    print(f"import batchfsm.aws + 1st invocation:  {first * 1000:7.1f} ms")
    print(f"  of which import batchfsm.aws:        {statistics.median(imports) * 1000:7.1f} ms")
    print(f"2nd invocation (warm container):       {statistics.median(warm) * 1000:7.1f} ms")
    print(f"cold start ratio:                      {first / base:7.2f}x  (target <= 1.3x)")


if __name__ == "__main__":
    main()
