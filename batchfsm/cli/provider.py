"""``--provider`` on the commands that talk to a Batch API (its limits:
:func:`batchfsm.jobs.provider_limits.limits_for`), and ``batchfsm provider limits``.

The profile itself (:mod:`batchfsm.providers`) is chosen from the settings, where
``--provider`` overrides ``BATCHFSM_PROVIDER`` (:func:`batchfsm.wiring.settings_from_args`).

``batchfsm provider limits`` shows the enqueued-token budget per model that ``submit``
and ``poll`` would use, and where each comes from: ``flag`` (``--queue-limit``),
``environment`` (``BATCHFSM_QUEUE_LIMITS``, or ``.env``/``batchfsm.toml``) or ``api``
(the project's batch queue limit, read from OpenAI's Administration API with
``BATCHFSM_ADMIN_KEY`` and ``BATCHFSM_PROJECT_ID``: :mod:`batchfsm.providers.queue_limits`).
Exit 1 when the API was to be read and could not be; the limits in force are shown all
the same, since that is what the other commands would then use.
"""

from __future__ import annotations

import argparse
from typing import Any

from batchfsm.config import ENV_VARS, PROVIDER_NAMES

__all__ = ["add_parser", "add_provider_option", "limits_json", "run_limits"]

EXIT_FAILURE = 1


def add_provider_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider", choices=PROVIDER_NAMES, default=None,
        help="whose Batch API (default $BATCHFSM_PROVIDER, else detected from "
        "OPENAI_BASE_URL, else openai); see the README's Providers section",
    )  # fmt: skip


def add_parser(subparsers: Any) -> None:
    from batchfsm.cli.budget_options import add_budget_options

    parser = subparsers.add_parser(
        "provider",
        help="what the provider's API sets for batchfsm (limits)",
        description="What the provider's API sets for batchfsm: the queue limits in force.",
    )
    sub = parser.add_subparsers(dest="provider_command", required=True, metavar="ACTION")
    limits = sub.add_parser(
        "limits",
        help="the enqueued-token budget per model in force, and where each comes from "
        "(flag, environment, api)",
    )
    add_provider_option(limits)
    add_budget_options(limits, queue=True)
    limits.add_argument("--json", action="store_true", help="print JSON: {limits, api}")
    limits.set_defaults(func=run_limits)


def limits_json(args: argparse.Namespace) -> dict[str, Any]:
    """``{"limits": [{model, tokens, source, api_tokens}], "api": {state, ...}}``."""
    from batchfsm.providers.queue_limits import ApiState, LiveQueueLimits, admin_api_for
    from batchfsm.wiring import settings_from_args

    settings = settings_from_args(args)
    explicit = "flag" if getattr(args, "queue_limit", None) else "environment"
    api, reason = admin_api_for(settings)
    if api is None:
        state = ApiState("unsupported", reason) if reason else ApiState("off")
        in_force = dict(settings.queue_limits)
        sources = dict.fromkeys(in_force, explicit)
    else:
        live = LiveQueueLimits(settings.queue_limits, api)
        state = live.state()
        in_force = live.copy()
        sources = {m: explicit if s == "explicit" else "api" for m, s in live.sources().items()}
    rows = [
        {"model": m, "tokens": in_force[m], "source": sources[m], "api_tokens": state.limits.get(m)}
        for m in sorted(in_force, key=lambda m: (m == "*", m))
    ]
    return {
        "limits": rows,
        "api": {
            "state": state.state,
            "project_id": state.project_id,
            "detail": state.detail,
            "without_limit": list(state.unknown),
            "skipped": list(state.skipped),
        },
    }


def run_limits(args: argparse.Namespace) -> int:
    from batchfsm.cli.output import print_json, print_line, print_table

    data = limits_json(args)
    api = data["api"]
    code = EXIT_FAILURE if api["state"] == "failed" else 0
    if args.json:
        print_json(data)
        return code
    rows = [(r["model"], f"{r['tokens']:,}", r["source"]) for r in data["limits"]]
    if rows:
        print_table("queue limits in force", ["model", "tokens", "source"], rows)
    else:
        print_line("no queue limits: every model is sent without an enqueued-token budget")
    print_line(_api_line(api))
    for problem in api["skipped"]:
        print_line(f"  skipped: {problem}")
    return code


def _api_line(api: dict[str, Any]) -> str:
    state, project = api["state"], api["project_id"]
    if state == "off":
        return (
            f"Administration API: not read (set {ENV_VARS['admin_key']} and "
            f"{ENV_VARS['project_id']} to take each model's batch queue limit from it)"
        )
    if state == "unsupported":
        return f"Administration API: not read: {api['detail']}"
    if state == "failed":
        return f"Administration API: project {project}: cannot be read: {api['detail']}"
    without = len(api["without_limit"])
    return f"Administration API: project {project} read" + (
        f"; {without} models listed without a batch queue limit" if without else ""
    )
