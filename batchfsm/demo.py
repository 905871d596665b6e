"""``batchfsm demo``: the main job on embedded defaults, with no key and no network.

For now it replays the bundled example histories through the rulebook and draws the
lifecycle with the paths they took.
"""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path
from typing import Any

from batchfsm.fsm.diagram import render
from batchfsm.fsm.replay import replay
from batchfsm.history_file import read_history
from batchfsm.output import print_table


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="run the end-to-end demo (no API key needed)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("batchfsm-demo"),
        help="where to write the demo's diagram (default ./batchfsm-demo)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    examples = resources.files("batchfsm") / "examples"
    rows = []
    edges = set()
    finals = set()
    for entry in sorted(examples.iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".jsonl"):
            continue
        with resources.as_file(entry) as path:
            result = replay(list(read_history(path)))
        edges |= {(h.source, h.dest) for h in result.transitions}
        finals.add(result.final_state)
        rows.append(
            (
                entry.name,
                result.final_state.value,
                " -> ".join(
                    [
                        result.transitions[0].source.value,
                        *(h.dest.value + ("*" if h.implied else "") for h in result.transitions),
                    ]
                )
                if result.transitions
                else "",
                len(result.rejected),
                ", ".join(f"{e.state.value}:{e.handler}" for e in result.effects),
            )
        )
    print_table(
        "replayed example histories (* = implied, never observed)",
        ["history", "final", "path", "rejected", "effects owed"],
        rows,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "lifecycle.mmd"
    text = render("mermaid", highlight_edges=edges, current_states=finals)
    target.write_text(text if isinstance(text, str) else text.decode())
    print(f"lifecycle diagram with these paths: {target}")
    return 0
