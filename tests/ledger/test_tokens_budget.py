"""The offline token counter and the budget arithmetic, with hypothesis."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchfsm.ledger.budget import MIN_FACTOR, TokenBudget, limit_for, parse_queue_limits
from batchfsm.ledger.tokens import (
    MESSAGE_OVERHEAD,
    REPLY_OVERHEAD,
    count_line,
    count_request,
    encoding_for,
    estimate_text,
)

text = st.text(max_size=200)


def test_known_counts_match_openais_published_tokenisation() -> None:
    # "tiktoken is great!" is 6 tokens in both cl100k_base and o200k_base (tiktoken's README).
    assert count_request({"model": "text-embedding-3-small", "input": "tiktoken is great!"},
                         "/v1/embeddings") == 6  # fmt: skip
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "tiktoken is great!"}]}
    assert count_request(chat, "/v1/chat/completions") == 6 + MESSAGE_OVERHEAD + REPLY_OVERHEAD


def test_models_map_to_their_tokenizer_or_to_the_estimate() -> None:
    assert encoding_for("gpt-4o-mini-2024-07-18") == "o200k_base"
    assert encoding_for("gpt-5") == "o200k_base"
    assert encoding_for("gpt-4-turbo") == "cl100k_base"
    assert encoding_for("text-embedding-ada-002") == "cl100k_base"
    assert encoding_for("llama-3.1-8b") is None
    assert encoding_for(None) is None


@given(text)
def test_the_estimate_never_undercounts_the_exact_tokenizers(value: str) -> None:
    """One token per 3 bytes is conservative: BPE tokens here average more than 3 bytes
    on real text, and a token is never shorter than... (checked against both vocabularies,
    allowing the single-byte tokens only short strings produce)."""
    for model in ("gpt-4o", "gpt-4"):
        exact = count_request({"model": model, "input": value}, "/v1/embeddings")
        assert exact <= len(value.encode("utf-8", "surrogatepass"))  # >= 1 byte a token
    estimate = count_request({"model": "unknown-model", "input": value}, "/v1/embeddings")
    assert estimate == estimate_text(value)


@given(st.lists(text, max_size=5), st.lists(st.integers(0, 50_000), min_size=1, max_size=20))
def test_counts_add_up_over_inputs_and_token_arrays(texts: list[str], ids: list[int]) -> None:
    body = {"model": "text-embedding-3-small", "input": texts}
    each = sum(count_request({**body, "input": t}, "/v1/embeddings") for t in texts)
    assert count_request(body, "/v1/embeddings") == each
    assert count_request({**body, "input": ids}, "/v1/embeddings") == len(ids)


def test_a_line_is_counted_from_its_body() -> None:
    body = {"model": "gpt-4.1", "input": "hi", "instructions": "be brief"}
    line = orjson.dumps({"custom_id": "a", "method": "POST", "url": "/v1/responses", "body": body})
    assert count_line(line, "/v1/responses") == count_request(
        {"model": "gpt-4.1", "input": "hi"}, "/v1/responses"
    ) + count_request({"model": "gpt-4.1", "input": "be brief"}, "/v1/responses")


@given(
    st.integers(1, 10**9),
    st.lists(st.tuples(st.integers(0, 20), st.integers(1, 10**6)), max_size=30),
)
def test_reservations_that_fit_never_pass_the_effective_budget(
    limit: int, asks: list[tuple[int, int]]
) -> None:
    budget = TokenBudget(model="m")
    for key, tokens in asks:
        if budget.fits(tokens, limit) and str(key) not in budget.held:
            alone = not budget.held
            budget = budget.reserve(str(key), tokens)
            assert budget.used <= budget.effective(limit) or (alone and len(budget.held) == 1)
    assert budget.room(limit) == max(0, budget.effective(limit) - budget.used)


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 10**9))
def test_the_factor_halves_on_refusals_grows_back_slowly_and_stays_bounded(
    refusals: list[bool], limit: int
) -> None:
    budget = TokenBudget(model="m")
    for refused in refusals:
        before = budget.factor
        budget = budget.reserve("k", 1).release("k", queue_full=refused)
        assert MIN_FACTOR <= budget.factor <= 1.0
        if refused:
            assert budget.factor == max(MIN_FACTOR, before / 2)
        else:
            assert budget.factor >= before and budget.factor - before <= 0.05 + 1e-12
        assert 1 <= budget.effective(limit) <= limit
    assert budget.shrinks == sum(refusals)


def test_queue_limit_specs_parse_and_apply() -> None:
    limits = parse_queue_limits("gpt-4o-mini=2_000_000, *=5")
    assert limits == {"gpt-4o-mini": 2_000_000, "*": 5}
    assert limit_for(limits, "gpt-4o-mini") == 2_000_000
    assert limit_for(limits, "other") == 5
    assert limit_for({"a": 1}, "b") is None
    for bad in ("gpt-4o", "=5", "m=0", "m=-1", "m=x"):
        with pytest.raises(ValueError, match="MODEL=TOKENS"):
            parse_queue_limits(bad)


def test_an_anthropic_line_is_counted_from_its_params() -> None:
    """Anthropic's request shape (``custom_id`` + ``params``) has no ``body``: its
    messages and system prompt still count, or admission would take it as free."""
    text = "Summarise the quarterly report in three sentences, please."
    bare = orjson.dumps(
        {"custom_id": "a", "params": {"model": "claude-x", "max_tokens": 64,
                                      "messages": [{"role": "user", "content": text}]}}
    )  # fmt: skip
    with_system = orjson.dumps(
        {"custom_id": "a", "params": {"model": "claude-x", "max_tokens": 64, "system": text,
                                      "messages": [{"role": "user", "content": text}]}}
    )  # fmt: skip
    counted = count_line(bare, "/v1/messages")
    assert counted >= len(text.encode()) // 3
    assert count_line(with_system, "/v1/messages") > counted


def test_an_openai_chat_line_sent_to_anthropic_counts_like_its_anthropic_twin() -> None:
    """``submit --provider anthropic`` takes OpenAI chat lines too (converted on the way):
    such a line must not count as free either."""
    text = "Summarise the quarterly report in three sentences, please."
    messages = [{"role": "user", "content": text}]
    chat = orjson.dumps(
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "claude-x", "max_tokens": 64, "messages": messages}}
    )  # fmt: skip
    anthropic = orjson.dumps(
        {"custom_id": "a", "params": {"model": "claude-x", "max_tokens": 64, "messages": messages}}
    )
    assert count_line(chat, "/v1/messages") == count_line(anthropic, "/v1/messages") > 0
