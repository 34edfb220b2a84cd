"""The Explore-Instruct task tree: nodes, their examples, task names, and the `nodes` table.

Source: Wan et al. 2023, `generate_instruction.py` (anytree `AnyNode` with `task_name`,
`raw_task_name`, `reason`, `examples`); reference/seed-algorithms.md §3.1. A node's
`task_name` is the paper's unique id (the formalized name, with `_0`..`_9` appended on a
collision); `node_id` is our stable hash, which every generated row carries as lineage together
with `path`, the task names from the root joined by "/".

Level order (anytree `LevelOrderIter`, the order prune, filter and sample walk the tree in) is
the sort by `(depth, order)`, where `order` lists the sibling index of every node on the way
from the root: parents come before children, and siblings keep their insertion order.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import pyarrow as pa

from schemas.records import SCHEMA_VERSION

MAX_NAME_SUFFIXES: Final = 10  # the paper tries `_0` .. `_9` on a name collision
_NON_ALNUM = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True, slots=True)
class Example:
    """One instruction example of a task: what the paper stores in a node's `examples`."""

    instruction: str
    input: str = ""
    output: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"instruction": self.instruction, "input": self.input, "output": self.output}


@dataclass(frozen=True, slots=True)
class TaskNode:
    """A task of the domain tree. `examples` are the ones the node was created with: given
    (config or a loaded tree) or the 2 that came with it from `extend` and passed the rules."""

    node_id: str
    parent_id: str | None
    depth: int
    task_name: str  # formalized, unique in the tree: the paper's id and file name
    raw_task_name: str  # as written by the user or the model
    reason: str
    order: tuple[int, ...]  # sibling indices from the root; (depth, order) sorts level order
    path: str  # task names from the root, "/"-joined
    origin: str = "given"  # "given" (config or loaded tree) | "explored"
    examples: tuple[Example, ...] = ()
    attempt: int | None = None  # the extension attempt that created it

    @property
    def config_filename(self) -> str:
        return f"{self.task_name}.json"


def level_order_key(node: TaskNode) -> tuple[int, tuple[int, ...]]:
    return (node.depth, node.order)


def formalize_taskname(name: str) -> str:
    """The paper's `formalize_taskname`: runs of non-[A-Za-z0-9] become "_", lower-cased."""
    return _NON_ALNUM.sub(" ", name).strip().replace(" ", "_").lower()


def unique_task_name(name: str, taken: Container[str]) -> str | None:
    """`name`, or `name_0`..`name_9` when taken; None once all ten suffixes are used."""
    if name not in taken:
        return name
    for i in range(MAX_NAME_SUFFIXES):
        candidate = f"{name}_{i}"
        if candidate not in taken:
            return candidate
    return None


class TreeView:
    """Read-only index over a set of nodes: children, peers, names, level order."""

    def __init__(self, nodes: Iterable[TaskNode]) -> None:
        self.nodes = sorted(nodes, key=level_order_key)
        self.by_id = {n.node_id: n for n in self.nodes}
        kids: dict[str | None, list[TaskNode]] = defaultdict(list)
        for node in self.nodes:
            kids[node.parent_id].append(node)
        self._children = dict(kids)
        self.task_names = frozenset(n.task_name for n in self.nodes)

    @property
    def root(self) -> TaskNode:
        return self.nodes[0]

    def children(self, node_id: str) -> list[TaskNode]:
        return self._children.get(node_id, [])

    def parent(self, node: TaskNode) -> TaskNode | None:
        return None if node.parent_id is None else self.by_id[node.parent_id]

    def peers(self, node: TaskNode) -> list[TaskNode]:
        """anytree `siblings`: the parent's other children (none for the root)."""
        if node.parent_id is None:
            return []
        return [n for n in self.children(node.parent_id) if n.node_id != node.node_id]

    def level_order(self) -> list[TaskNode]:
        return list(self.nodes)


# --- the `nodes` table --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node of the final tree with what happened to it: a row of the `nodes` table."""

    id: str  # node_id
    parent_id: str | None
    depth: int
    task_name: str
    raw_task_name: str
    reason: str
    path: str
    level_order: int  # position in level order (0 = root)
    origin: str
    children: int
    extend_requests: int  # extension attempts sent for this node (bounded by config)
    extend_stop: str  # target_reached | breadth_cap | attempts_exhausted | depth_limit
    new_children: int  # children this run's extension added
    examples_given: int  # examples the node came with (given, or its extension examples)
    enrich_requests: int
    examples_enriched: int  # enrich examples that passed the per-example rules
    examples_filtered: int  # examples kept by the per-node ROUGE-L filter
    examples_sampled: int
    pruned: bool
    prune_score: float | None = None  # max ROUGE-L of its name against earlier kept names
    pruned_similar_to: str | None = None


_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
_NODE_TYPES: Final[Mapping[str, pa.DataType]] = {
    "id": _S, "parent_id": _S, "depth": _I, "task_name": _S, "raw_task_name": _S,
    "reason": _S, "path": _S, "level_order": _I, "origin": _S, "children": _I,
    "extend_requests": _I, "extend_stop": _S, "new_children": _I, "examples_given": _I,
    "enrich_requests": _I, "examples_enriched": _I, "examples_filtered": _I,
    "examples_sampled": _I, "pruned": _B, "prune_score": _F, "pruned_similar_to": _S,
}  # fmt: skip
_NODE_NULLABLE: Final = frozenset({"parent_id", "prune_score", "pruned_similar_to"})

NODE_SCHEMA: Final = pa.schema(
    [pa.field(k, t, nullable=k in _NODE_NULLABLE) for k, t in _NODE_TYPES.items()],
    metadata={"instructbeam.schema_version": SCHEMA_VERSION, "instructbeam.kind": "node"},
)
