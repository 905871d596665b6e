"""The options of issue 12's budgets, shared by ``submit``, ``poll`` and ``retry``:
``--queue-limit`` (admission control), ``--max-rounds``, ``--concurrency``,
``--max-cost``. Each overrides its ``Settings`` field (see ``wiring.settings_from_args``)
or, for ``--max-cost``, is read by ``run_submit``."""

from __future__ import annotations

import argparse

from batchfsm.cli.output import positive_int

__all__ = ["add_budget_options"]


def _usd(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a sum of USD >= 0, not {text}")
    return value


def add_budget_options(
    parser: argparse.ArgumentParser,
    *,
    queue: bool = False,
    rounds: bool = False,
    concurrency: bool = False,
    cost: bool = False,
) -> None:
    if queue:
        parser.add_argument(
            "--queue-limit", action="append", default=None, metavar="MODEL=TOKENS",
            help="enqueued-token budget of MODEL (repeatable; '*' for every other model; "
            "default $BATCHFSM_QUEUE_LIMITS): what does not fit waits as queued work",
        )  # fmt: skip
    if rounds:
        parser.add_argument(
            "--max-rounds", type=positive_int, default=None, metavar="N",
            help="batches a request may be sent in before it is failed with max_rounds "
            "(default 10 or $BATCHFSM_MAX_ROUNDS): expiring batches are not resent for ever",
        )  # fmt: skip
    if concurrency:
        parser.add_argument(
            "--concurrency", type=positive_int, default=None, metavar="N",
            help="retrieves in flight at once per cycle (default 8 or "
            "$BATCHFSM_POLL_CONCURRENCY)",
        )  # fmt: skip
    if cost:
        parser.add_argument(
            "--max-cost", type=_usd, default=None, metavar="USD",
            help="refuse (exit 2, nothing sent) a job whose estimate at batch prices "
            "exceeds USD (see batchfsm cost)",
        )  # fmt: skip
