"""``--provider`` on the commands that talk to a Batch API (its limits:
:func:`batchfsm.jobs.provider_limits.limits_for`).

The profile itself (:mod:`batchfsm.providers`) is chosen from the settings, where
``--provider`` overrides ``BATCHFSM_PROVIDER`` (:func:`batchfsm.wiring.settings_from_args`).
"""

from __future__ import annotations

import argparse

from batchfsm.config import PROVIDER_NAMES

__all__ = ["add_provider_option"]


def add_provider_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider", choices=PROVIDER_NAMES, default=None,
        help="whose Batch API (default $BATCHFSM_PROVIDER, else detected from "
        "OPENAI_BASE_URL, else openai); see the README's Providers section",
    )  # fmt: skip
