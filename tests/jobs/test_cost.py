"""The price table (one data file), and the ``--max-cost`` pre-pass over a request file."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import orjson
import pytest

from batchfsm.errors import ConfigError, InputFileError
from batchfsm.jobs.cost import check_max_cost, estimate_file
from batchfsm.jobs.prices import PER, load_prices
from batchfsm.ledger.tokens import count_request

SHIPPED = Path(__file__).parents[2] / "batchfsm" / "jobs" / "prices.json"
CHAT = "/v1/chat/completions"


def test_the_shipped_table_says_where_and_when_its_prices_come_from() -> None:
    data = orjson.loads(SHIPPED.read_bytes())
    assert data["source"].startswith("https://") and data["as_of"]
    assert data["batch_discount"] == 0.5
    for name, row in data["models"].items():
        assert {"input", "output"} <= set(row), name
        assert set(row) <= {"input", "cached_input", "cache_write_input", "output"}, name
        assert all(isinstance(v, int | float) and v >= 0 for v in row.values()), name
    table = load_prices()
    assert (table.as_of, table.reference) == (data["as_of"], data["source"])


@pytest.mark.parametrize(
    ("model", "listed"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # the older snapshot costs twice as much
        ("o3-mini-2025-01-31", "o3-mini"),  # not o3's price
        ("o1-pro", "o1-pro"),
        ("gpt-5-pro-2025-10-06", "gpt-5-pro"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4"),
        ("openai/gpt-4.1-nano", "gpt-4.1-nano"),
    ],
)
def test_a_model_is_priced_by_the_longest_listed_name(model: str, listed: str) -> None:
    table = load_prices()
    assert table.price_of(model) is table.models[listed]


def test_an_unlisted_model_is_unpriced_never_free() -> None:
    table = load_prices()
    assert table.price_of("my-finetune") is None
    assert table.cost("my-finetune", input_tokens=0) is None


def test_cached_and_cache_written_input_are_billed_at_their_own_rates() -> None:
    table = load_prices()
    # Anthropic: 1,000 input of which 600 read from the cache and 100 written to it
    usd = table.cost("claude-sonnet-4-20250514", input_tokens=1000, cached=600, cache_write=100,
                     output=50)  # fmt: skip
    full = 300 * 3.0 + 600 * 0.3 + 100 * 3.75 + 50 * 15.0
    assert usd == pytest.approx(full / PER * 0.5)
    # a cached count above the input (an odd line) never makes the cost negative
    assert table.cost("gpt-4o", input_tokens=10, cached=50) == pytest.approx(10 * 1.25 / PER * 0.5)


def test_a_price_file_is_checked_and_output_without_a_price_is_unpriced(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_bytes(orjson.dumps({"models": {"emb": {"input": 0.1}}, "batch_discount": 0.5}))
    table = load_prices(path)
    assert table.cost("emb", input_tokens=PER) == pytest.approx(0.05)
    assert table.cost("emb", input_tokens=PER, output=1) is None  # output has no price
    bad_tables: list[dict[str, object]] = [
        {"models": {"m": {"input": -1}}},
        {"models": {"m": {"output": 1}}},  # no input price
        {"models": {"m": {"input": "1"}}},
        {"models": []},
        {"models": {"m": 3}},
        {"models": {}, "batch_discount": 1},
    ]
    for bad in bad_tables:
        path.write_bytes(orjson.dumps(bad))
        with pytest.raises(ConfigError, match="price table"):
            load_prices(path)


def _chat_line(i: int, model: str = "gpt-4o-mini", cap: int | None = 100) -> bytes:
    body: dict[str, object] = {"model": model,
                               "messages": [{"role": "user", "content": f"say {i}"}]}  # fmt: skip
    if cap is not None:
        body["max_completion_tokens"] = cap
    return orjson.dumps({"custom_id": f"r{i}", "method": "POST", "url": CHAT, "body": body})


def test_the_file_estimate_counts_input_as_submit_does_and_output_where_capped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join([_chat_line(0), _chat_line(1, cap=None)]) + b"\n")
    estimate = estimate_file(path, CHAT, load_prices())
    bodies = [orjson.loads(raw)["body"] for raw in path.read_bytes().splitlines()]
    tokens = sum(count_request(b, CHAT) for b in bodies)
    assert estimate.tokens == {"gpt-4o-mini": [tokens, 100]}
    assert estimate.usd(load_prices()) == pytest.approx((tokens * 0.15 + 100 * 0.6) / PER * 0.5)


def test_an_anthropic_file_may_mix_models_and_each_is_priced(tmp_path: Path) -> None:
    lines = [
        {"custom_id": f"r{i}", "params": {"model": model, "max_tokens": 50,
                                          "messages": [{"role": "user", "content": "hi"}]}}
        for i, model in enumerate(["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"])
    ]  # fmt: skip
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    estimate = estimate_file(path, "/v1/messages", load_prices())
    assert set(estimate.tokens) == {"claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"}
    assert all(tokens > 0 and cap == 50 for tokens, cap in estimate.tokens.values())
    lines.append({"custom_id": "x", "params": {"model": "claude-unknown", "max_tokens": 5}})
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    with pytest.raises(InputFileError, match="no price for model 'claude-unknown'"):
        check_max_cost(path, "/v1/messages", 100.0, load_prices())


def test_the_max_cost_pre_pass_reads_one_line_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with path.open("wb") as fh:
        for i in range(20_000):
            fh.write(_chat_line(i) + b"\n")
    prices = load_prices()
    estimate_file(path, CHAT, prices)  # the tokenizer's vocabulary loads once, first
    tracemalloc.start()
    try:
        check_max_cost(path, CHAT, 1_000.0, prices)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert path.stat().st_size > 2_000_000
    assert peak < 200_000  # a line and a few sums, not the file nor a list per request


def test_max_cost_refuses_an_estimate_over_it_naming_the_figures(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(_chat_line(0) + b"\n")
    usd = count_request(orjson.loads(path.read_bytes())["body"], CHAT) * 0.15 + 100 * 0.6
    usd = usd / PER * 0.5
    with pytest.raises(InputFileError) as refused:
        check_max_cost(path, CHAT, 0.000001, load_prices())
    assert f"estimated cost ${usd:.6f}" in str(refused.value)
    assert "of gpt-4o-mini at batch prices) exceeds --max-cost $0.000001" in str(refused.value)
    check_max_cost(path, CHAT, 1.0, load_prices())  # under it: nothing said
