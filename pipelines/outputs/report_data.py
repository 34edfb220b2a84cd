"""What report.html draws, read from a finished run's shards: only the needed columns, sampled
evenly when a table is large, so the report stays quick for a million-row run.

Plain functions returning plain Python numbers; the page and its charts are built elsewhere
(pipelines/outputs/report_html.py, pipelines/outputs/report_svg.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from pipelines.outputs.report_svg import TreeRow, nice_step
from schemas import Reason
from schemas.tree_format import read_tree

MAX_ROWS = 200_000  # rows read per table; larger tables are sampled evenly
MAX_TREE_ROWS = 400
ROUGE_BINS = 20  # bins of 0.05 over [0, 1], as in the Self-Instruct paper's figure


@dataclass(frozen=True)
class Column:
    values: list[Any]
    total: int  # rows in the table (more than len(values) when sampled)


def read_column(output_dir: Path, table: str, column: str,
                where: ds.Expression | None = None) -> Column | None:
    """One column of a shard directory (None when the table or the column is absent)."""
    directory = output_dir / table
    files = sorted(str(p) for p in directory.glob("*.parquet")) if directory.is_dir() else []
    if not files:
        return None
    dataset = ds.dataset(files, format="parquet")
    names = set(dataset.schema.names)
    if column not in names or (where is not None and "reason" not in names):
        return None
    total = dataset.count_rows(filter=where)
    if total > MAX_ROWS:
        indices = pa.array([i * total // MAX_ROWS for i in range(MAX_ROWS)], pa.int64())
        table_ = dataset.take(indices, columns=[column], filter=where)
    else:
        table_ = dataset.to_table(columns=[column], filter=where)
    return Column(table_.column(column).combine_chunks(), total)  # type: ignore[arg-type]


def head_rows(output_dir: Path, table: str, columns: Sequence[str], n: int,
              where: ds.Expression | None = None) -> list[dict[str, Any]]:
    """The first `n` rows in shard order (deterministic), for the page's example tables."""
    directory = output_dir / table
    files = sorted(str(p) for p in directory.glob("*.parquet")) if directory.is_dir() else []
    if not files:
        return []
    dataset = ds.dataset(files, format="parquet")
    names = set(dataset.schema.names)
    if not set(columns) <= names or (where is not None and "reason" not in names):
        return []
    return dataset.head(n, columns=list(columns), filter=where).to_pylist()


def word_counts(column: Column | None) -> list[int]:
    if column is None or len(column.values) == 0:
        return []
    words = pc.count_substring_regex(column.values, r"\S+")  # "" is 0 words, not [""]
    return [int(n) for n in pc.fill_null(words, 0).to_pylist()]


def floats(column: Column | None) -> list[float]:
    if column is None:
        return []
    return [float(v) for v in column.values.to_pylist() if v is not None and not math.isnan(v)]


def rouge_bins(values: Sequence[float]) -> list[int]:
    counts = [0] * ROUGE_BINS
    for v in values:
        # 1e-9: 0.7 * 20 is 13.999..., and 0.7 belongs to the bin [0.70, 0.75).
        counts[min(max(int(math.floor(v * ROUGE_BINS + 1e-9)), 0), ROUGE_BINS - 1)] += 1
    return counts


def rouge_series(output_dir: Path) -> tuple[list[float], list[float], int, int]:
    """ROUGE-L to the most similar pool text: (kept, not_novel, kept rows, not_novel rows).
    Kept instructions come from `instructions/` when the recipe writes it (Self-Instruct),
    else from the dataset rows that carry a score."""
    kept = read_column(output_dir, "instructions", "rouge_l_max") or read_column(
        output_dir, "data", "rouge_l_max")
    not_novel = read_column(output_dir, "rejected", "rouge_l_max",
                            ds.field("reason") == Reason.NOT_NOVEL.value)
    return (floats(kept), floats(not_novel), kept.total if kept else 0,
            not_novel.total if not_novel else 0)


def length_bins(counts: Sequence[int], max_bins: int = 24) -> tuple[list[float], list[int], bool]:
    """Histogram of word counts with a 1-2-5 bin width; values above the 99th percentile share
    the last bin (returned flag True) so one runaway output does not flatten the chart."""
    if not counts:
        return [], [], False
    ordered = sorted(counts)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    upper = max(p99, 1)
    width = int(nice_step(upper / (max_bins - 1)))
    bins = upper // width + 1
    hist = [0] * bins
    for n in counts:
        hist[min(n // width, bins - 1)] += 1
    return [float(i * width) for i in range(bins + 1)], hist, ordered[-1] >= bins * width


@dataclass(frozen=True)
class TagStats:
    top: list[tuple[str, int, int]]  # (tag, rows in the dataset, rows in the pool)
    pool_tags: int
    kept_tags: int
    pool_rows: int
    kept_rows: int
    mean_pool: float
    mean_kept: float


def tag_stats(output_dir: Path, top_n: int = 20) -> TagStats | None:
    """Tag frequencies of the dataset against the pool (dataset + rejected rows that were
    tagged, e.g. #InsTag rows Cf-D did not pick); None when no row has tags."""
    kept_col = read_column(output_dir, "data", "tags")
    if kept_col is None or kept_col.values.null_count == len(kept_col.values):
        return None
    rejected_col = read_column(output_dir, "rejected", "tags")
    kept_lists = [t for t in kept_col.values.to_pylist() if t is not None]
    rejected_lists = [] if rejected_col is None else [
        t for t in rejected_col.values.to_pylist() if t is not None]
    kept = Counter(tag for tags in kept_lists for tag in set(tags))
    pool = kept + Counter(tag for tags in rejected_lists for tag in set(tags))
    top = sorted(pool.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
    n_pool = len(kept_lists) + len(rejected_lists)
    return TagStats(
        top=[(tag, kept.get(tag, 0), n) for tag, n in top], pool_tags=len(pool),
        kept_tags=len(kept), pool_rows=n_pool, kept_rows=len(kept_lists),
        mean_pool=sum(map(len, kept_lists + rejected_lists)) / n_pool if n_pool else 0.0,
        mean_kept=sum(map(len, kept_lists)) / len(kept_lists) if kept_lists else 0.0)


def tree_rows(output_dir: Path) -> tuple[list[TreeRow], str, int] | None:
    """The Explore-Instruct tree in pre-order: from the `nodes` table (with the dataset's rows
    per node), else from a tree written in the paper's format. (rows, source, total nodes)."""
    nodes = _nodes_table(output_dir)
    if nodes is not None:
        node_ids = read_column(output_dir, "data", "node_id")
        in_data = Counter(v for v in node_ids.values.to_pylist() if v) if node_ids else Counter()
        children: dict[str | None, list[dict[str, Any]]] = {}
        for node in sorted(nodes, key=lambda n: n["level_order"]):
            children.setdefault(node["parent_id"], []).append(node)
        ordered: list[tuple[dict[str, Any], int | None]] = []
        stack: list[tuple[dict[str, Any], int | None]] = [
            (n, None) for n in reversed(children.get(None, []))]
        while stack and len(ordered) < MAX_TREE_ROWS:
            node, parent = stack.pop()
            ordered.append((node, parent))
            here = len(ordered) - 1
            stack.extend((c, here) for c in reversed(children.get(node["id"], [])))
        rows = [TreeRow(
            depth=n["depth"], label=n["task_name"], value=in_data.get(n["id"], 0),
            background=n["examples_filtered"] or 0, muted=bool(n["pruned"]), parent_index=p,
            note=f"{in_data.get(n['id'], 0)} / {n['examples_filtered'] or 0}"
                 + (" · pruned" if n["pruned"] else "")) for n, p in ordered]
        return rows, "nodes", len(nodes)
    meta = output_dir / "tree" / "tree_meta_info.json"
    if not meta.is_file():
        return None
    tree = sorted(read_tree(meta.parent), key=lambda n: n.order)  # order tuples sort pre-order
    index = {n.node_id: i for i, n in enumerate(tree)}
    rows = [TreeRow(depth=n.depth, label=n.task_name, value=len(n.examples), background=0,
                    note=f"{len(n.examples)} examples", parent_index=index.get(n.parent_id))
            for n in tree[:MAX_TREE_ROWS]]
    return rows, "tree", len(tree)


def _nodes_table(output_dir: Path) -> list[dict[str, Any]] | None:
    directory = output_dir / "nodes"
    files = sorted(str(p) for p in directory.glob("*.parquet")) if directory.is_dir() else []
    if not files:
        return None
    columns = ["id", "parent_id", "depth", "task_name", "level_order", "examples_filtered",
               "pruned"]
    table = ds.dataset(files, format="parquet").to_table(columns=columns)
    return table.to_pylist() or None
