"""Stress: three ``batchfsm poll --auto-retry`` processes on one store, many rounds.

Runs the scenario of ``tests/e2e/pollers.py`` (three fates, retry rounds, three pollers
racing for every effect and retry) ``--rounds`` times per store, with ``--stale`` of the
batch reads served stale, optionally beside ``--hog`` CPU-bound processes (each a busy
loop that stops by itself after ``--hog-seconds``, and is ended earlier by its pid when
the round is over). Every round gets its own sandbox seed, table or file. Checks the
e2e invariants after each round and prints pass/fail counts; a failed round's
histories, ledger, intents, sandbox request log and the pollers' stderr (run with
``-v``) are written to ``--out`` (every round's with ``--keep``).

    .venv/bin/python scripts/stress_pollers.py --rounds 30 --stores dynamodb,sqlite
    .venv/bin/python scripts/stress_pollers.py --rounds 30 --hog 1

DynamoDB needs the moto server: without ``BATCHFSM_TEST_DYNAMODB_URL`` the script starts
one with ``scripts/ddb-server.sh`` and stops it afterwards.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER_ENV = "BATCHFSM_TEST_DYNAMODB_URL"
HOG = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if "dynamodb" in stores and not os.environ.get(SERVER_ENV):
        return _with_moto(sys.argv[1:] if argv is None else argv)
    sys.path.insert(0, str(ROOT))
    from batchfsm.sandbox import running_sandbox
    from tests.e2e.pollers import (
        TIME_SCALE,
        diagnosis,
        dynamodb_place,
        figures,
        problems,
        run_pollers,
        scenario,
        sqlite_place,
    )

    args.out.mkdir(parents=True, exist_ok=True)
    tally: Counter[tuple[str, str]] = Counter()
    started = time.monotonic()
    for number in range(args.rounds):
        for store in stores:
            seed = args.seed + number
            hogs = [_hog(args.hog_seconds) for _ in range(args.hog)]
            began = time.monotonic()
            try:
                with (
                    tempfile.TemporaryDirectory(prefix="stress-pollers-") as tmp,
                    sqlite_place(Path(tmp)) if store == "sqlite" else dynamodb_place() as place,
                    running_sandbox(
                        scenario(seed=seed, stale=args.stale), time_scale=TIME_SCALE
                    ) as sandbox,
                ):
                    run = run_pollers(place, sandbox, Path(tmp), verbose=True)
                    broken = problems(run)
                    dump = args.out / f"{store}-round{number:03d}-seed{seed}.txt"
                    if broken or args.keep:
                        dump.write_text("\n".join(broken) + "\n\n" + diagnosis(run))
                    if broken:
                        print(f"FAIL {store} round {number} seed {seed}: {broken[0]}")
                        for line in broken[1:6]:
                            print(f"     {line}")
                        print(f"     details: {dump}")
                    else:
                        print(
                            f"ok   {store} round {number} seed {seed} "
                            f"({time.monotonic() - began:.1f} s) {figures(run)}"
                        )
            except Exception:
                broken = ["crashed"]
                print(f"FAIL {store} round {number} seed {seed}: the round crashed")
                traceback.print_exc()
            finally:
                for hog in hogs:
                    hog.kill()  # our own child, by its handle
                    hog.wait()
            tally[store, "fail" if broken else "pass"] += 1
            sys.stdout.flush()
            if broken and args.stop:
                return _report(tally, stores, started)
    return _report(tally, stores, started)


def _report(tally: Counter[tuple[str, str]], stores: list[str], started: float) -> int:
    minutes = (time.monotonic() - started) / 60
    print(f"\n== {minutes:.1f} min")
    for store in stores:
        print(f"{store}: {tally[store, 'pass']} passed, {tally[store, 'fail']} failed")
    return 1 if any(tally[s, "fail"] for s in stores) else 0


def _hog(seconds: float) -> subprocess.Popen[bytes]:
    """A CPU-bound process that ends by itself after ``seconds``."""
    return subprocess.Popen([sys.executable, "-c", HOG.format(seconds=seconds)])


def _with_moto(argv: list[str]) -> int:
    """Run this script again under ``scripts/ddb-server.sh`` (started, then stopped)."""
    script = shlex.join([sys.executable, str(Path(__file__).resolve()), *argv])
    command = f". scripts/ddb-server.sh && ddb_start >&2 && trap ddb_stop EXIT && {script}"
    return subprocess.run(["bash", "-c", command], cwd=ROOT, check=False).returncode


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="rounds per store (30)")
    parser.add_argument("--stores", default="dynamodb,sqlite", help="dynamodb,sqlite")
    parser.add_argument("--stale", type=float, default=0.3, help="stale-read share (0.3)")
    parser.add_argument("--seed", type=int, default=1000, help="sandbox seed of round 0")
    parser.add_argument("--hog", type=int, default=0, help="CPU hog processes per round (0)")
    parser.add_argument(
        "--hog-seconds", type=float, default=90.0, help="a hog's longest life (90 s)"
    )
    parser.add_argument("--stop", action="store_true", help="stop at the first failure")
    parser.add_argument("--keep", action="store_true", help="write every round's details")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "stress-pollers",
        help="where failed rounds are written",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
