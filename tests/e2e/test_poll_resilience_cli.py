"""``batchfsm poll --until-done`` over HTTP while one batch's answers are unreadable.

Before, a single Batch object with wrong-typed fields (or a 200 whose body is HTML)
ended the whole command with exit 1 and stopped the poll of every batch. Now it is
recorded on that batch and ``status`` shows how many such answers it got.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from batchfsm.cli.main import main
from batchfsm.sandbox import Scenario, World, running_sandbox
from tests.e2e.conftest import TIME_SCALE
from tests.e2e.support import EMBEDDINGS, write_input
from tests.rewriting import HTML, RewritingApp, first


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RewritingApp]:
    monkeypatch.chdir(tmp_path)
    served = RewritingApp(World(Scenario(), time_scale=TIME_SCALE))
    with running_sandbox(app=served) as sandbox:
        monkeypatch.setenv("OPENAI_BASE_URL", sandbox.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("BATCHFSM_STORE", f"sqlite:///{tmp_path / 'store.db'}")
        monkeypatch.setenv("BATCHFSM_RESULTS_DIR", str(tmp_path / "results"))
        yield served


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


def submit(capsys: pytest.CaptureFixture[str], name: str, ids: list[str]) -> str:
    path = write_input(Path(f"{name}.jsonl"), ids)
    code, out = run(capsys, "submit", str(path), "--endpoint", EMBEDDINGS, "--json")
    assert code == 0
    (batch,) = orjson.loads(out)["batches"]
    return str(batch["batch_id"])


def test_poll_until_done_survives_an_html_answer_and_status_counts_it(
    app: RewritingApp, capsys: pytest.CaptureFixture[str]
) -> None:
    healthy = submit(capsys, "healthy", ["h1", "h2"])
    flaky = submit(capsys, "flaky", ["f1", "f2", "f3"])
    app.rewrites[flaky] = first(3, lambda _batch: HTML)

    code, _ = run(capsys, "poll", "--until-done", "--interval", "0.02", "--timeout", "30")

    assert code == 0
    assert app.rewritten >= 3
    code, out = run(capsys, "status", "--json")
    rows = {row["batch_id"]: row for row in orjson.loads(out)["batches"]}
    assert (rows[healthy]["state"], rows[healthy]["undecodable"]) == ("completed", 0)
    assert (rows[flaky]["state"], rows[flaky]["undecodable"]) == ("completed", 1)
    code, out = run(capsys, "history", flaky, "--json")
    (rejected,) = [h for h in orjson.loads(out)["history"] if h["kind"] == "rejection"]
    assert rejected["reason"] == "undecodable"
    assert rejected["snapshot"] == {"body": HTML}
    code, out = run(capsys, "status")
    assert "(1 unreadable)" in out
