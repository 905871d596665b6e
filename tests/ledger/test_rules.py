"""The pure ledger rules: fates from real-shaped result lines, settling, reconciliation,
and properties over arbitrary line outcomes and retry rounds."""

from __future__ import annotations

import random
from collections.abc import Mapping

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from batchfsm.ledger.records import ItemState, LedgerEntry
from batchfsm.ledger.result_lines import parse_line
from batchfsm.ledger.rules import (
    LOST,
    MISSING,
    SUCCEEDED,
    Fate,
    fate_for_line,
    input_fate,
    merge,
    queue_full_fate,
    reconcile,
    settle,
)
from batchfsm.sandbox.results import http_error_line, never_ran_line, success_line

B1, B2 = "batch_1", "batch_2"


def entry(cid: str = "a", *, attempts: int = 0, batches: tuple[str, ...] = (B1,)) -> LedgerEntry:
    return LedgerEntry(job_id="j", custom_id=cid, line="{}", attempts=attempts, batches=batches)


def line_fate(obj: Mapping[str, object]) -> Fate:
    return fate_for_line(parse_line(orjson.dumps(obj), 1))


def test_fates_of_the_real_line_shapes() -> None:
    assert line_fate(success_line("l", "a", "r", {"object": "list"})) is SUCCEEDED
    bad = line_fate(http_error_line("l", "a", "r", 400))
    assert (bad.state, bad.spends_attempt, bad.reason) == (ItemState.FAILED, True, "permanent")
    for status in (429, 500):
        fate = line_fate(http_error_line("l", "a", "r", status))
        assert (fate.state, fate.spends_attempt, fate.reason) == (
            ItemState.RETRY,
            True,
            "retryable",
        )
    timeout = line_fate(never_ran_line("l", "a", "request_timeout"))
    assert (timeout.state, timeout.spends_attempt) == (ItemState.RETRY, True)
    for code in ("batch_expired", "batch_cancelled"):
        fate = line_fate(never_ran_line("l", "a", code))
        assert (fate.state, fate.spends_attempt, fate.reason) == (ItemState.RETRY, False, "not_run")
        assert fate.error is not None and fate.error.code == code


def test_an_http_failure_without_a_code_is_named_by_its_status() -> None:
    raw = {"custom_id": "a", "response": {"status_code": 503, "body": {}}, "error": None}
    fate = line_fate(raw)
    assert fate.error is not None and fate.error.code == "http_503"


def test_a_malformed_line_naming_a_request_spends_an_attempt() -> None:
    raw = {"custom_id": "a", "response": {"status_code": 200}, "error": None}
    fate = line_fate(raw)
    assert (fate.state, fate.spends_attempt, fate.reason) == (ItemState.RETRY, True, "malformed")


def test_long_messages_are_cut() -> None:
    fate = input_fate("empty_file", "x" * 5000)
    assert fate.error is not None and fate.error.message is not None
    assert len(fate.error.message) == 1000


def test_merge_prefers_a_success_then_the_most_final_failure() -> None:
    permanent = line_fate(http_error_line("l", "a", "r", 400))
    retryable = line_fate(http_error_line("l", "a", "r", 500))
    not_run = line_fate(never_ran_line("l", "a", "batch_expired"))
    assert merge(permanent, SUCCEEDED) is SUCCEEDED
    assert merge(SUCCEEDED, retryable) is SUCCEEDED
    assert merge(retryable, permanent) is permanent
    assert merge(not_run, retryable) is retryable


def test_settle_counts_attempts_and_keeps_the_last_error_when_exhausted() -> None:
    retryable = line_fate(http_error_line("l", "a", "r", 500))
    once = settle(entry(), B1, retryable, max_attempts=3)
    assert once is not None and (once.state, once.attempts) == (ItemState.RETRY, 1)
    last = settle(entry(attempts=2), B1, retryable, max_attempts=3)
    assert last is not None and (last.state, last.attempts) == (ItemState.FAILED, 3)
    assert last.last_error == retryable.error
    free = settle(entry(attempts=2), B1, MISSING, max_attempts=3)
    assert free is not None and (free.state, free.attempts) == (ItemState.RETRY, 2)
    won = settle(entry(), B1, SUCCEEDED, max_attempts=3)
    assert won is not None and (won.state, won.result_batch_id) == (ItemState.SUCCEEDED, B1)


def test_settle_leaves_alone_what_this_batch_does_not_own() -> None:
    moved_on = entry(batches=(B1, B2))
    assert settle(moved_on, B1, SUCCEEDED, max_attempts=3) is None
    done = entry().model_copy(update={"state": ItemState.SUCCEEDED})
    assert settle(done, B1, MISSING, max_attempts=3) is None
    settled = settle(entry(), B1, MISSING, max_attempts=3)
    assert settled is not None and settle(settled, B1, SUCCEEDED, max_attempts=3) is None


def test_reconcile_applies_the_unaccounted_fate_and_tallies() -> None:
    entries = [entry("a"), entry("b"), entry("c", batches=(B2,))]
    result = reconcile(entries, B1, {"a": SUCCEEDED}, unaccounted=MISSING, max_attempts=3)
    assert [e.custom_id for e in result.changed] == ["a", "b"]
    assert result.tally.reasons == {"succeeded": 1, "missing": 1}
    assert result.tally.untouched == 1
    for fate, category in (
        (LOST, "lost"),
        (queue_full_fate("token_limit_exceeded", "x"), "queue_full"),
    ):
        (only,) = reconcile([entry()], B1, {}, unaccounted=fate, max_attempts=3).changed
        assert only.attempts == 0 and only.last_error is not None
        assert only.last_error.category == category


# -- properties ------------------------------------------------------------------------

KINDS = {
    "ok": success_line("l", "{cid}", "r", {"ok": True}),
    "400": http_error_line("l", "{cid}", "r", 400),
    "429": http_error_line("l", "{cid}", "r", 429),
    "500": http_error_line("l", "{cid}", "r", 500),
    "timeout": never_ran_line("l", "{cid}", "request_timeout"),
    "expired": never_ran_line("l", "{cid}", "batch_expired"),
    "cancelled": never_ran_line("l", "{cid}", "batch_cancelled"),
    "no_body": {"custom_id": "{cid}", "response": {"status_code": 200}, "error": None},
}


def outcome_line(kind: str, cid: str) -> bytes:
    return orjson.dumps(KINDS[kind]).replace(b'"{cid}"', orjson.dumps(cid))


def fates_from(lines: list[tuple[str, str]]) -> dict[str, Fate]:
    """What harvest does with a batch's lines: classify each, merge per id."""
    fates: dict[str, Fate] = {}
    for number, (kind, cid) in enumerate(lines, start=1):
        fate = fate_for_line(parse_line(outcome_line(kind, cid), number))
        fates[cid] = merge(fates[cid], fate) if cid in fates else fate
    return fates


IDS = [f"r{i}" for i in range(6)]
round_lines = st.lists(
    st.tuples(st.sampled_from(sorted(KINDS)), st.sampled_from([*IDS, "stranger"])), max_size=20
)


@settings(max_examples=150, deadline=None)
@given(
    rounds=st.lists(round_lines, min_size=1, max_size=5),
    max_attempts=st.integers(min_value=1, max_value=4),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_every_request_settles_once_per_batch_and_never_goes_backwards(
    rounds: list[list[tuple[str, str]]], max_attempts: int, seed: int
) -> None:
    rng = random.Random(seed)
    # Attempts so far never past the limit; not yet in any batch.
    ledger = {cid: entry(cid, attempts=rng.randrange(max_attempts), batches=()) for cid in IDS}
    for number, lines in enumerate(rounds):
        batch = f"batch_{number}"
        # What submit and retry do: the entry joins the new batch, pending again.
        for cid, e in ledger.items():
            if e.state is ItemState.RETRY or not e.batches:
                ledger[cid] = e.model_copy(
                    update={"state": ItemState.PENDING, "batches": (*e.batches, batch)}
                )
        submitted = {cid for cid, e in ledger.items() if e.batches[-1] == batch}
        before = dict(ledger)
        fates = fates_from(lines)
        result = reconcile(
            list(ledger.values()), batch, fates, unaccounted=MISSING, max_attempts=max_attempts
        )
        changed = {e.custom_id: e for e in result.changed}
        assert set(changed) == submitted  # every submitted id settled, exactly once
        ledger.update(changed)
        for cid, after in ledger.items():
            old = before[cid]
            assert after.state is not ItemState.PENDING  # each ends in exactly one state
            assert after.attempts >= old.attempts
            assert after.attempts - old.attempts <= 1  # one batch, one execution at most
            assert after.attempts <= max_attempts
            if old.state is ItemState.SUCCEEDED or old.state is ItemState.FAILED:
                assert after == old  # final states never change
            if cid in submitted and cid not in fates:
                assert after.state is ItemState.RETRY or after.attempts >= max_attempts
                assert after.attempts == old.attempts  # missing never spends an attempt
            if after.state is ItemState.SUCCEEDED and cid in submitted:
                assert any(kind == "ok" and c == cid for kind, c in lines)
        # Idempotent: the same batch reconciled again changes nothing.
        again = reconcile(
            list(ledger.values()), batch, fates, unaccounted=MISSING, max_attempts=max_attempts
        )
        assert again.changed == []
