"""Read and validate seed tasks (Self-Instruct JSONL) with errors naming file, line and field."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.errors import InputError
from prompts import BUILTIN_SEED_TASKS, builtin_path
from schemas.jsonl import iter_json_lines, split_lines


@dataclass(frozen=True, slots=True)
class SeedTask:
    id: str
    instruction: str
    instances: tuple[tuple[str, str], ...]  # (input, output)
    is_classification: bool


def resolve_seed_path(spec: str) -> Path:
    return builtin_path(BUILTIN_SEED_TASKS) if spec == "builtin" else Path(spec)


def read_seed_tasks(spec: str) -> list[SeedTask]:
    """Load every seed task or raise one InputError for the first problem found."""
    path = resolve_seed_path(spec)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: seed file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a JSONL file") from None
    tasks: list[SeedTask] = []
    seen: dict[str, int] = {}
    for number, obj in iter_json_lines(split_lines(raw), str(path), InputError):
        task = _parse_object(obj, f"{path}:{number}")
        if task.id in seen:
            raise InputError(f"{path}:{number}: field 'id' repeats {task.id!r} "
                             f"(first on line {seen[task.id]})")
        seen[task.id] = number
        tasks.append(task)
    if not tasks:
        raise InputError(f"{path}: contains no seed tasks")
    return tasks


def _parse_object(obj: dict[str, Any], where: str) -> SeedTask:
    instruction = _field(obj, "instruction", str, where)
    if not instruction.strip():
        raise InputError(f"{where}: field 'instruction' is empty")
    is_clf = _field(obj, "is_classification", bool, where)
    task_id = obj.get("id", "")
    if not isinstance(task_id, str) or not task_id:
        raise InputError(f"{where}: field 'id' must be a non-empty string")
    instances = _field(obj, "instances", list, where)
    if not instances:
        raise InputError(f"{where}: field 'instances' must hold at least one instance")
    pairs = []
    for k, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise InputError(f"{where}: field 'instances[{k}]' must be an object")
        inp = _field(inst, "input", str, where, f"instances[{k}].")
        out = _field(inst, "output", str, where, f"instances[{k}].")
        pairs.append((inp, out))
    return SeedTask(task_id, instruction, tuple(pairs), is_clf)


def _field(obj: dict, name: str, typ: type, where: str, prefix: str = "") -> object:
    if name not in obj:
        raise InputError(f"{where}: field '{prefix}{name}' is missing")
    value = obj[name]
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise InputError(f"{where}: field '{prefix}{name}' must be {typ.__name__}, "
                         f"got {type(value).__name__}")
    return value
