"""``batchfsm submit | poll | retry | cancel``: parsing and printing only.

The logic lives in :mod:`batchfsm.jobs.submit`, :mod:`batchfsm.poller`, :mod:`batchfsm.jobs.retry`
and :mod:`batchfsm.jobs.cancel`; the object graph comes from :mod:`batchfsm.wiring`.
``submit``, ``poll`` and ``retry`` first close submit intents a crashed run left open
(:func:`~batchfsm.jobs.reconcile.reconcile_intents`).

JSON shapes (``--json``): :mod:`batchfsm.cli.views`.

Exit codes: 0 success; 1 an API or store failure; 2 bad input (a bad line, bad
metadata, cancelling an ended batch); 3 ``poll --until-done`` ran out of ``--timeout``;
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from batchfsm.cli.budget_options import add_budget_options
from batchfsm.cli.metrics import add_metrics_port
from batchfsm.cli.output import plural, positive_int, print_json, print_line, print_table
from batchfsm.cli.provider import add_provider_option
from batchfsm.cli.store import add_store_option
from batchfsm.cli.views import (
    poll_summary_json,
    record_json,
    retry_json,
    submit_json,
)
from batchfsm.errors import InputFileError
from batchfsm.jobs.endpoints import MESSAGES
from batchfsm.jobs.input_file import ENDPOINTS, check_endpoint
from batchfsm.jobs.provider_limits import limits_for

__all__ = ["EXIT_INTERRUPTED", "EXIT_TIMEOUT", "add_parsers"]

EXIT_TIMEOUT = 3
EXIT_INTERRUPTED = 130


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds (>= 0), not {text!r}")
    return value


def _endpoint(text: str) -> str:
    try:  # a retired endpoint is refused saying why
        return check_endpoint(text)
    except InputFileError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parsers(subparsers: Any) -> None:
    for add in (_add_submit, _add_poll, _add_retry, _add_cancel):
        add(subparsers)


def _add_submit(subparsers: Any) -> None:
    submit = subparsers.add_parser("submit", help="validate a JSONL request file and send it")
    submit.add_argument("file", type=Path, help="the JSONL request file")
    submit.add_argument("--endpoint", default=None, type=_endpoint, metavar="ENDPOINT",
                        help="one of " + ", ".join(sorted(ENDPOINTS)) + "; required, but "
                        "with --provider anthropic it is /v1/messages (the default)")  # fmt: skip
    submit.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE",
        help="batch metadata (repeatable; at most 14 pairs, batchfsm adds two)",
    )  # fmt: skip
    submit.add_argument(
        "--max-attempts",
        type=positive_int,
        default=None,
        help="executions per request before it is failed (default 3)",
    )
    submit.add_argument(
        "--job-id",
        default=None,
        help="name the job (default: a digest of the input, so a re-run resumes)",
    )
    _max_requests_option(submit)
    add_budget_options(submit, queue=True, cost=True)
    add_provider_option(submit)
    submit.add_argument("--json", action="store_true", help="print the job and its batches as JSON")
    add_store_option(submit)
    submit.set_defaults(func=run_submit)


def _add_poll(subparsers: Any) -> None:
    poll = subparsers.add_parser("poll", help="poll every tracked batch and run what it owes")
    mode = poll.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="one cycle, then exit")
    mode.add_argument(
        "--until-done",
        action="store_true",
        help="exit 0 once nothing is left to do (3 on --timeout)",
    )
    poll.add_argument(
        "--interval",
        type=_seconds,
        metavar="S",
        default=None,
        help="seconds between cycles (default $BATCHFSM_POLL_INTERVAL or 30)",
    )
    poll.add_argument(
        "--timeout", type=_seconds, default=None, metavar="S", help="give up after S seconds"
    )
    poll.add_argument(
        "--auto-retry", action="store_true", help="send retry items as new batches inside the loop"
    )
    poll.add_argument(
        "--backoff-base",
        type=_seconds,
        metavar="S",
        default=None,
        help="first wait after a queue-full failure ($BATCHFSM_RETRY_BACKOFF_BASE, else 60 s)",
    )
    poll.add_argument(
        "--backoff-cap",
        type=_seconds,
        metavar="S",
        default=None,
        help="longest wait after queue-full failures ($BATCHFSM_RETRY_BACKOFF_CAP, else 1800 s)",
    )
    poll.add_argument(
        "--webhooks",
        action="store_true",
        default=None,
        help="webhooks are configured (also implied by $OPENAI_WEBHOOK_SECRET or "
        "$BATCHFSM_WEBHOOKS): polling is the fallback, stretched for batches that do not move",
    )
    poll.add_argument(
        "--poll-ceiling",
        type=_seconds,
        metavar="S",
        default=None,
        help="with webhooks, the longest wait between polls of a batch "
        "($BATCHFSM_POLL_CEILING, else 600 s)",
    )
    _max_requests_option(poll)
    add_budget_options(poll, queue=True, rounds=True, concurrency=True)
    add_provider_option(poll)
    _results_dir_option(poll)
    poll.add_argument("--json", action="store_true", help="print a JSON summary at the end")
    add_metrics_port(poll)
    add_store_option(poll)
    poll.set_defaults(func=run_poll)


def _add_retry(subparsers: Any) -> None:
    retry = subparsers.add_parser("retry", help="send the items waiting in retry as new batches")
    retry.add_argument("--job", default=None, help="only this job (default: every job)")
    add_budget_options(retry, rounds=True)
    _max_requests_option(retry)
    add_provider_option(retry)
    retry.add_argument(
        "--json",
        action="store_true",
        help="print the batches sent and the items still waiting as JSON",
    )
    add_store_option(retry)
    retry.set_defaults(func=run_retry)


def _add_cancel(subparsers: Any) -> None:
    cancel = subparsers.add_parser("cancel", help="ask the API to cancel a batch")
    cancel.add_argument("batch_id", metavar="BATCH", help="the batch id (batch_...)")
    add_provider_option(cancel)
    cancel.add_argument("--json", action="store_true", help="print the batch's status row as JSON")
    add_store_option(cancel)
    cancel.set_defaults(func=run_cancel)


def _max_requests_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-requests", type=positive_int, default=None, metavar="N",
        help="at most N requests per batch (default and maximum: the provider's, 50,000 "
        "on OpenAI); smaller batches finish sooner",
    )  # fmt: skip


def _results_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results-dir", type=Path, default=None,
        help="where results land (default ./batchfsm-results or $BATCHFSM_RESULTS_DIR)",
    )  # fmt: skip


def _metadata(pairs: list[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputFileError(f"expected KEY=VALUE, not {pair!r}", field="metadata")
        metadata[key] = value
    return metadata


# -- commands ----------------------------------------------------------------------------


def run_submit(args: argparse.Namespace) -> int:
    from batchfsm.cli.activity import Activity, spinner, watched_runtime
    from batchfsm.cli.hints import held_intents
    from batchfsm.jobs.intents import Intents
    from batchfsm.jobs.reconcile import reconcile_intents
    from batchfsm.jobs.submit import check_job_id, submit_job
    from batchfsm.providers import profile_for
    from batchfsm.wiring import settings_from_args

    metadata = _metadata(args.metadata)
    check_job_id(args.job_id)  # before the store is opened: a bad id writes nothing
    settings = settings_from_args(args)
    profile = profile_for(settings)
    if args.endpoint is None and profile.name != "anthropic":
        raise InputFileError("--endpoint is required (except with --provider anthropic)")
    args.endpoint = args.endpoint or MESSAGES  # Anthropic's: every request a Messages call
    profile.check_endpoint(args.endpoint)  # and before any client is built
    activity = Activity()  # a spinner on a terminal while files upload
    with watched_runtime(settings, activity) as runtime, spinner(args, activity):
        reconcile_intents(Intents.of(runtime.tracker))
        result = submit_job(
            runtime.tracker,
            args.file,
            args.endpoint,
            metadata=metadata,
            max_attempts=args.max_attempts,
            job_id=args.job_id,
            limits=limits_for(runtime.settings, args.max_requests),
            max_cost=args.max_cost,
            progress=activity.show,  # the spinner's line (set as the spinner started)
        )
        data = submit_json(runtime.store, result)
        held = held_intents(runtime, job_id=result.job.job_id, open_ids=result.open_intents)
    if args.json:
        print_json(data)
        if held:
            print_line(held, sys.stderr)
        return 0
    job = data["job"]
    verb = "resumed" if result.resumed else "submitted"
    print_line(
        f"job {job['job_id']} {verb}: {plural(job['requests'], 'request')} in "
        f"{plural(len(data['batches']), 'batch')} ({len(result.launched) or 'none'} sent now)"
    )
    if data["batches"]:
        _print_batches(data["batches"])
    if held:
        print_line(held, sys.stderr)
    return 0


def _print_batches(rows: list[dict[str, Any]]) -> None:
    print_table(
        plural(len(rows), "batch"),
        ["batch", "job", "state", "requests", "retry of"],
        [(r["batch_id"], r["job_id"], r["state"], r["requests"], r["parent_batch_id"])
         for r in rows],
    )  # fmt: skip


def run_poll(args: argparse.Namespace) -> int:
    from batchfsm.cli.activity import Activity, watched_runtime
    from batchfsm.cli.hints import nothing_tracked
    from batchfsm.cli.main import each_cycle
    from batchfsm.cli.progress import PlainProgress, QuietProgress, make_progress
    from batchfsm.jobs.retry import Backoff
    from batchfsm.poller import Poller
    from batchfsm.wiring import settings_from_args

    activity = Activity(metrics_port=args.metrics_port)  # downloads, harvests; metrics
    with watched_runtime(settings_from_args(args), activity) as runtime:
        settings = runtime.settings
        progress = (
            QuietProgress()
            if getattr(args, "quiet", 0)
            else PlainProgress(sys.stderr, clock=runtime.tracker.clock)
            if args.json
            else make_progress(clock=runtime.tracker.clock)
        )
        activity.attach(progress)
        with progress:
            poller = Poller(
                runtime.tracker,
                backoff=Backoff(
                    settings.backoff_base if args.backoff_base is None else args.backoff_base,
                    settings.backoff_cap if args.backoff_cap is None else args.backoff_cap,
                ),
                limits=limits_for(runtime.settings, args.max_requests),
                on_cycle=each_cycle(activity.after(progress.on_cycle)),
                webhooks=args.webhooks,
            )
            if poller.schedule is not None and args.poll_ceiling is not None:
                poller.schedule.ceiling = args.poll_ceiling
            try:
                summary = poller.run(
                    until_done=args.until_done,
                    max_cycles=1 if args.once else None,
                    interval=args.interval,
                    timeout=args.timeout,
                    auto_retry=args.auto_retry,
                )
            except KeyboardInterrupt:
                print("batchfsm: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
        empty = nothing_tracked(runtime.store) if not summary.batches else None
    if args.json:
        print_json(poll_summary_json(summary))
    elif args.until_done or args.once:
        state = "done" if summary.done else "timed out" if summary.timed_out else "not done"
        print_line(
            f"{state} after {plural(summary.cycles, 'cycle')}: "
            f"{plural(len(summary.batches), 'batch')}, "
            f"{plural(summary.retry_items, 'item')} in retry"
        )
    if empty:
        print_line(empty, sys.stderr)
    return EXIT_TIMEOUT if summary.timed_out else 0


def run_retry(args: argparse.Namespace) -> int:
    from batchfsm.jobs.intents import Intents
    from batchfsm.jobs.reconcile import reconcile_intents
    from batchfsm.jobs.retry import retry_items
    from batchfsm.wiring import runtime_from_args

    if args.job is not None:  # an unknown job is bad input, said before any client is built
        from batchfsm.cli.store import open_existing

        store = open_existing(args.store)
        try:
            store.load_job(args.job)
        finally:
            store.close()
    with runtime_from_args(args) as runtime:
        reconcile_intents(Intents.of(runtime.tracker), job_id=args.job)
        result = retry_items(
            runtime.tracker, job_id=args.job, limits=limits_for(runtime.settings, args.max_requests)
        )
        data = retry_json(runtime.store, result)
    if args.json:
        print_json(data)
        return 0
    if not data["batches"]:
        waiting = sum(w["items"] for w in data["waiting"])
        print_line(
            "no items waiting in retry"
            if not waiting
            else f"{plural(waiting, 'item')} wait out a queue-full backoff, until "
            + min(w["ready_at"] for w in data["waiting"])
        )
        return 0
    _print_batches(data["batches"])
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from batchfsm.jobs.cancel import cancel_batch
    from batchfsm.wiring import runtime_from_args

    with runtime_from_args(args) as runtime:
        record = cancel_batch(runtime.tracker, args.batch_id)
    row = record_json(record)
    if args.json:
        print_json(row)
    else:
        print(
            f"cancel requested for {record.batch_id}: now {record.state.value} "
            "(it ends once the API reports `cancelled`; `batchfsm poll` follows it)"
        )
    return 0
