"""Scenario files: loading, and errors that name the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchfsm.errors import InputFileError
from batchfsm.sandbox import Fate, Scenario, load_scenario


def test_loads_a_full_scenario(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "seed": 4,
                "default": {"kind": "complete", "failure_rate": 0.1,
                            "failure_codes": [429, "request_timeout"]},
                "by_order": [{"kind": "expire", "expire_fraction": 0.25}],
                "named": {"slow": {"phases": {"cancelling_s": 600}}},
                "faults": {"rate_limit_rate": 0.05, "script": [
                    {"route": "GET /v1/batches/{batch_id}", "call": 2, "kind": "stale_read"}]},
                "embedding_dim": 16,
            }
        )
    )  # fmt: skip
    scenario = load_scenario(path)
    assert scenario.seed == 4
    assert scenario.default.failure_codes == (429, "request_timeout")
    assert scenario.by_order[0].kind == "expire"
    assert scenario.named["slow"].phases.cancelling_s == 600
    assert scenario.faults.script[0].kind == "stale_read"
    assert scenario.embedding_dim == 16


@pytest.mark.parametrize(
    ("text", "field", "line"),
    [
        ('{"default": {"kind": "explode"}}', "default.kind", None),
        ('{"by_order": [{"failure_rate": 2}]}', "by_order.0.failure_rate", None),
        ('{"sead": 1}', "sead", None),
        ('{\n"seed": 1,\n}', None, 3),
    ],
)
def test_bad_scenarios_name_file_and_field(
    tmp_path: Path, text: str, field: str | None, line: int | None
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputFileError) as info:
        load_scenario(path)
    assert info.value.path == str(path)
    assert info.value.field == field
    assert info.value.line == line
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as info:
        load_scenario(tmp_path / "nope.json")
    assert "cannot read scenario" in str(info.value)


def test_fate_selection_precedence() -> None:
    named = Fate(kind="all_fail")
    scenario = Scenario(by_order=(Fate(kind="expire"),), named={"x": named})
    assert scenario.fate_for(index=0, metadata={"sandbox_fate": "x"}) is named
    assert scenario.fate_for(index=0, metadata=None) == Fate(kind="expire")
    assert scenario.fate_for(index=1, metadata={"other": "1"}) == Fate()
    assert scenario.fate_for(index=5, metadata={"sandbox_fate": "stuck_finalizing"}) == Fate(
        kind="stuck_finalizing"
    )
    assert scenario.fate_for(index=0, metadata={"sandbox_fate": "typo"}) is None
