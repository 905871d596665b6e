"""Over a real socket: the threaded server, concurrent pollers, the command and fixtures."""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from batchfsm.cli.sandbox import add_parser, run, serve_command
from batchfsm.sandbox import Fate, RunningSandbox, Scenario, running_sandbox
from batchfsm.sandbox.testing import batch_input, openai_client


def test_fixtures_serve_the_app_over_http(
    sandbox_server: RunningSandbox,
    sandbox_http_client: openai.OpenAI,
    sandbox_client: openai.OpenAI,
) -> None:
    assert sandbox_server.base_url.startswith("http://127.0.0.1:")
    assert sandbox_server.base_url.endswith("/v1")
    upload = sandbox_http_client.files.create(
        file=("in.jsonl", batch_input(["a"])), purpose="batch"
    )
    batch = sandbox_http_client.batches.create(
        input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    # Both clients see the same world: one over the socket, one in-process.
    assert sandbox_client.batches.retrieve(batch.id).id == batch.id
    with pytest.raises(openai.NotFoundError):
        sandbox_http_client.batches.retrieve("batch_missing")
    assert sandbox_server.stats.count("POST /v1/batches") == 1


def test_real_clock_time_scale_and_concurrent_pollers() -> None:
    scenario = Scenario(default=Fate(kind="expire", expire_fraction=0.5))
    # 24 sandbox hours pass in about 0.4 real seconds.
    with (
        running_sandbox(scenario, time_scale=216_000) as sandbox,
        openai_client(base_url=sandbox.base_url) as client,
    ):
        ids = [f"r{i}" for i in range(8)]
        file_id = client.files.create(file=("in.jsonl", batch_input(ids)), purpose="batch").id
        batches = [
            client.batches.create(
                input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
            ).id
            for _ in range(4)
        ]

        def poll(batch_id: str) -> str:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status = client.batches.retrieve(batch_id).status
                if status == "expired":
                    return status
                time.sleep(0.02)
            return "timeout"

        with ThreadPoolExecutor(max_workers=4) as pool:
            assert list(pool.map(poll, batches)) == ["expired"] * 4
        done = client.batches.retrieve(batches[0])
        assert done.request_counts is not None
        assert done.request_counts.completed == 4
        with urllib.request.urlopen(sandbox.base_url.removesuffix("/v1") + "/sandbox/stats") as r:
            stats = json.load(r)
        assert stats["by_endpoint"]["POST /v1/batches"] == 4
        assert stats["by_endpoint"]["GET /v1/batches/{batch_id}"] >= 5


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batchfsm")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sandbox", *argv])


def test_command_parser_defaults() -> None:
    args = _parse([])
    assert (args.host, args.port, args.scenario, args.time_scale, args.seed) == (
        "127.0.0.1", 0, None, 1.0, None,
    )  # fmt: skip
    assert args.func is run
    with pytest.raises(SystemExit):
        _parse(["--time-scale", "0"])


def test_command_rejects_a_bad_scenario_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "fates.json"
    bad.write_text(json.dumps({"default": {"kind": "explode"}}))
    err = io.StringIO()
    assert serve_command(_parse(["--scenario", str(bad)]), err=err) == 2
    message = err.getvalue()
    assert str(bad) in message
    assert "default.kind" in message
    assert run(_parse(["--scenario", str(tmp_path / "missing.json")])) == 2


def test_command_serves_until_stopped(tmp_path: Path) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"seed": 1, "default": {"kind": "all_fail"}}))
    stop = threading.Event()
    out = io.StringIO()
    args = _parse(["--scenario", str(scenario), "--seed", "9", "--time-scale", "1000"])
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(serve_command(args, stop=stop, out=out)))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while "OPENAI_BASE_URL=" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        text = out.getvalue()
        url = text.split("OPENAI_BASE_URL=", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
        assert "OPENAI_API_KEY" in text
        with openai_client(base_url=url) as client:
            file_id = client.files.create(file=("in.jsonl", batch_input(["a"])), purpose="batch").id
            batch = client.batches.create(
                input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
            )
            time.sleep(0.05)  # 50 sandbox seconds
            done = client.batches.retrieve(batch.id)
            assert done.status == "completed"
            assert done.output_file_id is None  # the scenario's all_fail fate
    finally:
        stop.set()
        thread.join(timeout=5)
    assert codes == [0]
