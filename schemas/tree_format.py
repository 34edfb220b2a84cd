"""The paper's on-disk tree: `tree_meta_info.json` plus one `<task_name>.json` per node.

Source: Explore-Instruct `en_data/demo_domain` (reference/seed-algorithms.md §3.1).
`tree_meta_info.json` is the nested tree without examples (keys `raw_task_name, task_name,
config_filename, reason, children`, indent 2, no final newline); each node file holds the same
fields with `examples` instead of `children` (one line, UTF-8 as is, final newline). These are
the bytes the paper's code wrote for generated nodes, so a tree we write reads back unchanged
in either implementation. No Beam and no file-system choice here: `dump_tree` returns the file
texts and the caller writes them where it wants.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from schemas.records import stable_id
from schemas.tree import Example, TaskNode, TreeView

META_FILE = "tree_meta_info.json"
PRUNED_FILE = "pruned_subtasks_name.json"  # the paper's list of pruned task names


class TreeFormatError(ValueError):
    """A tree directory that does not follow the format; the message names the file."""


def given_node_id(task_name: str) -> str:
    """Ids of nodes that come from a config or a loaded tree (task names are unique)."""
    return stable_id("explore_instruct", "given", task_name)


def read_tree(directory: str | Path) -> list[TaskNode]:
    """Load a tree in the paper's format; nodes come back in level order."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    meta = _load_json(meta_path)
    nodes: list[TaskNode] = []
    seen: set[str] = set()

    def visit(entry: Any, parent: TaskNode | None, order: tuple[int, ...], where: str) -> None:
        if not isinstance(entry, dict):
            raise TreeFormatError(f"{meta_path}: {where} is not an object")
        for key in ("task_name", "raw_task_name", "config_filename"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise TreeFormatError(f"{meta_path}: {where} has no string '{key}'")
        name = entry["task_name"]
        if name in seen:
            raise TreeFormatError(f"{meta_path}: task_name {name!r} appears twice")
        seen.add(name)
        node_file = directory / entry["config_filename"]
        data = _load_json(node_file)
        examples = data.get("examples", []) if isinstance(data, dict) else None
        if not isinstance(examples, list):
            raise TreeFormatError(f"{node_file}: 'examples' must be a list")
        node = TaskNode(
            node_id=given_node_id(name),
            parent_id=None if parent is None else parent.node_id,
            depth=len(order), task_name=name, raw_task_name=entry["raw_task_name"],
            reason=str(entry.get("reason") or ""), order=order,
            path=name if parent is None else f"{parent.path}/{name}",
            examples=tuple(_example(e, node_file, i) for i, e in enumerate(examples)),
        )
        nodes.append(node)
        children = entry.get("children", [])
        if not isinstance(children, list):
            raise TreeFormatError(f"{meta_path}: 'children' of {name!r} must be a list")
        for i, child in enumerate(children):
            visit(child, node, order + (i,), f"child {i} of {name!r}")

    visit(meta, None, (), "the root")
    return TreeView(nodes).level_order()


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TreeFormatError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise TreeFormatError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise TreeFormatError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def _example(entry: Any, path: Path, index: int) -> Example:
    if not isinstance(entry, dict) or not isinstance(entry.get("instruction"), str):
        raise TreeFormatError(f"{path}: example {index} has no string 'instruction'")
    return Example(entry["instruction"], str(entry.get("input") or ""),
                   str(entry.get("output") or ""))


def dump_tree(nodes: Iterable[TaskNode],
              examples: Mapping[str, Sequence[Example]] | None = None,
              pruned: Sequence[str] | None = None) -> dict[str, str]:
    """File name -> text for a tree; `examples` (by node id) replaces the nodes' own examples.

    `pruned` (task names) adds the paper's `pruned_subtasks_name.json`.
    """
    view = TreeView(nodes)

    def meta(node: TaskNode) -> dict[str, Any]:
        return {**_header(node), "children": [meta(c) for c in view.children(node.node_id)]}

    files = {META_FILE: json.dumps(meta(view.root), indent=2, ensure_ascii=False)}
    for node in view.level_order():
        own = node.examples if examples is None else examples.get(node.node_id, ())
        body = {**_header(node), "examples": [e.as_dict() for e in own]}
        files[node.config_filename] = json.dumps(body, ensure_ascii=False) + "\n"
    if pruned is not None:
        files[PRUNED_FILE] = json.dumps(list(pruned), ensure_ascii=False) + "\n"
    return files


def _header(node: TaskNode) -> dict[str, str]:
    return {"raw_task_name": node.raw_task_name, "task_name": node.task_name,
            "config_filename": node.config_filename, "reason": node.reason}


def write_tree(directory: str | Path, nodes: Iterable[TaskNode],
               examples: Mapping[str, Sequence[Example]] | None = None,
               pruned: Sequence[str] | None = None) -> None:
    """Write `dump_tree` into a local directory (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in dump_tree(nodes, examples, pruned).items():
        (directory / name).write_text(text, encoding="utf-8")
