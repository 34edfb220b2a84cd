"""Export a finished run's kept data (`<out>/data/*.parquet`) to the formats SFT trainers read.

- `alpaca`: a JSON list of {"instruction", "input", "output"} (Stanford Alpaca's file shape).
- `sharegpt`: a JSON list of {"conversations": [{"from": "human", ...}, {"from": "gpt", ...}]}.
- `openai`: JSON Lines of {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}.
- `ecomgpt`: JSON Lines in EcomGPT's six parts (task_description, prompt, input,
  candidate_labels, output_constraints, output): pipelines/outputs/export_ecomgpt.py.

Choices, so that a reader of the file knows what they got:
- The human / user turn of a single-turn row is `instruction + "\\n\\n" + input` when the input
  has text, else the instruction alone (Alpaca's own prompt puts the input after the
  instruction as a separate block; a whitespace-only input carries nothing and is left out).
- A multi-turn row (an UltraChat dialogue, stored in `messages`, or an input dataset read with
  `messages_field`, stored in `conversation`) is exported whole in the ShareGPT and OpenAI
  formats. Alpaca has no turns: an Alpaca export of a run holding a row of more than one
  exchange is refused (naming the row) unless `first_exchange` is set, which writes each
  row's single-turn view (the first user turn and the reply after it) and counts the rows
  it cut, so a trainer never loses rounds 2+ without a word.
- Rows come out in `id` order, whatever the number of shards: each shard is sorted by id when
  written (pipelines/outputs/shards.py), so a k-way merge of record batches gives the global order
  without loading the data. A shard that is not sorted (a file written by another tool) is
  sorted on its own, which holds that one shard in memory.
- JSON lists are written one item per line, incrementally, into a temporary file that is
  renamed into place when complete: a big export never sits in memory, and an interrupted
  one never leaves a truncated file under the final name.
- `with_provenance` adds {"meta": {"id", "generator", "prompt_ref"}} to every item.
- The default file goes to `<run>.export/`, beside the run folder, not inside it: rerunning
  the config replaces the run folder, and the export must survive that.

Pure: pyarrow and json only (no Beam), so it runs anywhere the Parquet files are.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.errors import InputError
from pipelines.outputs.confine import inside
from pipelines.outputs.export_ecomgpt import COLUMNS as ECOMGPT_COLUMNS
from pipelines.outputs.export_ecomgpt import ecomgpt_item

FORMATS: Final = ("alpaca", "sharegpt", "openai", "ecomgpt")
DEFAULT_FILE_NAMES: Final = {"alpaca": "alpaca.json", "sharegpt": "sharegpt.json",
                             "openai": "openai.jsonl", "ecomgpt": "ecomgpt.jsonl"}
JSON_LINES_FORMATS: Final = ("openai", "ecomgpt")
META_FIELDS: Final = ("id", "generator", "prompt_ref")
_TEXT_FIELDS: Final = ("id", "instruction", "input", "output", "conversation", "messages")
_SHAREGPT_ROLES: Final = {"user": "human", "assistant": "gpt", "system": "system"}
BATCH_ROWS: Final = 1024


def prompt_text(instruction: str, input_text: str | None) -> str:
    """The user turn of a single-turn row: the instruction, then the input as its own block."""
    if input_text and input_text.strip():
        return f"{instruction}\n\n{input_text}"
    return instruction


def _messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The row as canonical [{"role", "content"}] messages (the stored turns if any)."""
    if row.get("messages"):
        return [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    if row.get("conversation"):
        return [{"role": m["role"], "content": m["content"]}
                for m in json.loads(row["conversation"])]
    return [{"role": "user", "content": prompt_text(row["instruction"], row.get("input"))},
            {"role": "assistant", "content": row.get("output") or ""}]


def _with_meta(item: dict[str, Any], row: dict[str, Any], with_provenance: bool
               ) -> dict[str, Any]:
    if with_provenance:
        item["meta"] = {name: row.get(name) for name in META_FIELDS}
    return item


def alpaca_item(row: dict[str, Any], with_provenance: bool = False) -> dict[str, Any]:
    item = {"instruction": row["instruction"], "input": row.get("input") or "",
            "output": row.get("output") or ""}
    return _with_meta(item, row, with_provenance)


def sharegpt_item(row: dict[str, Any], with_provenance: bool = False) -> dict[str, Any]:
    turns = [{"from": _SHAREGPT_ROLES[m["role"]], "value": m["content"]}
             for m in _messages(row)]
    return _with_meta({"conversations": turns}, row, with_provenance)


def openai_item(row: dict[str, Any], with_provenance: bool = False) -> dict[str, Any]:
    return _with_meta({"messages": _messages(row)}, row, with_provenance)


FORMATTERS: Final[dict[str, Callable[[dict[str, Any], bool], dict[str, Any]]]] = {
    "alpaca": alpaca_item, "sharegpt": sharegpt_item, "openai": openai_item,
    "ecomgpt": ecomgpt_item}


def data_files(run_dir: Path) -> list[Path]:
    """The kept-data shards of a finished run; an InputError if it is not one."""
    if not (run_dir / "manifest.json").exists():
        raise InputError(f"{run_dir}: no manifest.json (not a finished instructbeam run)")
    files = sorted((run_dir / "data").glob("*.parquet"))
    if not files:
        raise InputError(f"{run_dir}/data: no Parquet shards")
    return files


def _sorted_by_id(shard: pq.ParquetFile) -> bool:
    ids = shard.read(columns=["id"]).column("id")
    return len(ids) < 2 or bool(pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py())


def _shard_rows(path: Path, columns: list[str]) -> Iterator[dict[str, Any]]:
    """One shard's rows in id order, a record batch at a time when it is already sorted."""
    shard = pq.ParquetFile(path)
    present = [c for c in columns if c in shard.schema_arrow.names]
    if not _sorted_by_id(shard):
        table = shard.read(columns=present).sort_by("id")
        batches = table.to_batches(max_chunksize=BATCH_ROWS)
    else:
        batches = shard.iter_batches(batch_size=BATCH_ROWS, columns=present)
    for batch in batches:
        yield from batch.to_pylist()


def iter_rows(run_dir: Path,
              columns: tuple[str, ...] = _TEXT_FIELDS + META_FIELDS + ECOMGPT_COLUMNS
              ) -> Iterator[dict[str, Any]]:
    """Every kept row of a run, in global id order (a k-way merge of the sorted shards)."""
    wanted = list(dict.fromkeys(columns))
    shards = [_shard_rows(path, wanted) for path in data_files(run_dir)]
    return heapq.merge(*shards, key=lambda row: row["id"])


def write_items(path: Path, items: Iterator[dict[str, Any]], *, json_lines: bool) -> int:
    """Write items as a JSON list (one item per line) or JSON Lines; atomically; the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)  # a leftover, or a link: replaced, never written through
    count = 0
    try:
        with tmp.open("x", encoding="utf-8", newline="\n") as handle:
            if not json_lines:
                handle.write("[")
            for item in items:
                text = json.dumps(item, ensure_ascii=False)
                if json_lines:
                    handle.write(text + "\n")
                else:
                    handle.write(("\n" if count == 0 else ",\n") + text)
                count += 1
            if not json_lines:
                handle.write("\n]\n" if count else "]\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def default_output(run_dir: Path, fmt: str) -> Path:
    """`<run>.export/<file>` beside the run folder: a rerun replaces the run folder
    (pipelines/outputs/output_dir.py) but never touches this one, and an export never passes for a
    file the run wrote. An InputError when `<run>.export` or the file is a link leading out of
    the folder that holds the run (pipelines/outputs/confine.py); an explicit `--output` is
    the user's own choice and is written as given."""
    run_dir = run_dir if run_dir.name else run_dir.resolve()
    return inside(run_dir.parent, f"{run_dir.name}.export", DEFAULT_FILE_NAMES[fmt])


def exchanges(row: dict[str, Any]) -> int:
    """How many user turns a row holds (1 for a single-turn row)."""
    return max(sum(m["role"] == "user" for m in _messages(row)), 1)


class _Cut:
    """Rows the Alpaca view cut to their first exchange: refused, or counted."""

    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self.rows = 0

    def check(self, row: dict[str, Any]) -> dict[str, Any]:
        n = exchanges(row)
        if n > 1:
            if not self.allowed:
                raise InputError(
                    f"row {row['id']} is a dialogue of {n} exchanges, and Alpaca has no "
                    "turns: its export would keep only the first exchange. Export as "
                    "sharegpt or openai, or pass --first-exchange to keep the first "
                    "exchange of every dialogue")
            self.rows += 1
        return row


def export(run_dir: Path, fmt: str, output: Path | None = None, *,
           with_provenance: bool = False, first_exchange: bool = False) -> tuple[Path, int]:
    """Export a run's kept data; returns (file written, items written). Alpaca of a run with
    dialogues: refused, or (`first_exchange`) cut, see `export_counted`."""
    target, count, _ = export_counted(run_dir, fmt, output, with_provenance=with_provenance,
                                      first_exchange=first_exchange)
    return target, count


def export_counted(run_dir: Path, fmt: str, output: Path | None = None, *,
                   with_provenance: bool = False, first_exchange: bool = False
                   ) -> tuple[Path, int, int]:
    """`export`, also returning how many dialogues the Alpaca view cut to one exchange."""
    if fmt not in FORMATTERS:
        raise InputError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    target = output if output is not None else default_output(run_dir, fmt)
    formatter = FORMATTERS[fmt]
    rows = iter_rows(run_dir)
    cut = _Cut(first_exchange)
    if fmt == "alpaca":
        rows = (cut.check(row) for row in rows)
    items = (formatter(row, with_provenance) for row in rows)
    return target, write_items(target, items, json_lines=fmt in JSON_LINES_FORMATS), cut.rows
