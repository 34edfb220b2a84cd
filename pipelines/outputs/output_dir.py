"""Which existing output a run may replace: only what this tool wrote, never the user's files.

A run swaps its finished output in place of `output_dir`. Before anything runs, the existing
location is checked:

- missing or empty: used;
- a complete previous run of this tool (its `manifest.json` carries the tool marker and the
  list of files the run wrote, each with its size and SHA-256) holding nothing else, every
  file as the run wrote it: replaced;
- anything else (no manifest, a foreign manifest, files the run did not write, a file changed
  since): refused with one line that names what is there, unless the caller passes
  `overwrite`;
- the current or home directory, a filesystem or bucket root, or a folder that holds the
  config file or anything the run reads (the locations the run passes in, from
  pipelines/runtime/input_locations.py): refused even with `overwrite`, because replacing it
  would delete what the run reads or what the user lives in.

`review/` (a person's verdicts, `instructbeam review`) is never the run's: it does not count
against replacing an output, and the swap carries it into the new one
(pipelines/outputs/staging.py).

The same rules hold for a local directory and a remote prefix (gs://, through Beam
FileSystems), except that a remote file is compared by size only (hashing it would mean
reading every object back). A manifest written before sizes and hashes were recorded lists
names only: a local file newer than that manifest counts as changed; remotely the names
alone decide, as before. Pure apart from listing and reading the location.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from apache_beam.io.filesystems import FileSystems

from pipelines.errors import InputError
from pipelines.outputs.owner import TOOL
from pipelines.outputs.review import REVIEW_DIR

MANIFEST: Final = "manifest.json"
# Written by the tool after the file list was sealed: the manifest itself, and report.html,
# which `instructbeam report OUT` may (re)write later.
ALWAYS_OURS: Final = frozenset({MANIFEST, "report.html"})
SHOWN: Final = 3  # foreign names listed in a refusal line
_GLOB: Final = re.compile(r"[*?\[]")


# -- what the manifest says ------------------------------------------------------------------

def is_complete_run(manifest: Any) -> bool:
    """True for a manifest this tool wrote at the end of a run: the marker and the file list,
    {path: {bytes, sha256}} (or, from older versions, a list of paths)."""
    if not (isinstance(manifest, dict) and manifest.get("tool") == TOOL):
        return False
    written = manifest.get("written")
    if isinstance(written, dict):
        return all(isinstance(name, str) and isinstance(rec, dict) for name, rec in
                   written.items())
    return isinstance(written, list) and all(isinstance(name, str) for name in written)


def _kept_aside(name: str) -> bool:
    """A person's files the run carries over instead of replacing (review verdicts)."""
    return name.startswith(REVIEW_DIR + "/")


def foreign_files(present: Iterable[str], manifest: Any) -> list[str]:
    """The files in `present` (paths relative to the output) that the previous run did not
    write; every file when `manifest` is not a complete run's. `review/` never counts."""
    ours = set(manifest["written"]) | ALWAYS_OURS if is_complete_run(manifest) else set()
    return sorted(name for name in present if name not in ours and not _kept_aside(name))


def file_record(path: Path) -> dict[str, Any]:
    """What the manifest keeps of a written file, so that the next run can tell whether it
    is still as this tool wrote it."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"bytes": path.stat().st_size, "sha256": digest}


def file_records(root: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{name: file_record} for files under `root`, sorted by name (the manifest's `written`)."""
    return {name: file_record(root / name) for name in sorted(names)}


def changed_files(root: Path, present: Iterable[str], manifest: Mapping[str, Any]
                  ) -> list[str]:
    """Files of a complete run at `root` that differ from what the run wrote. A manifest
    that lists names only (older versions): a file newer than manifest.json was changed."""
    written = manifest["written"]
    candidates = [n for n in present if n in written and n not in ALWAYS_OURS]
    if not isinstance(written, dict):
        sealed = (root / MANIFEST).stat().st_mtime_ns
        return sorted(n for n in candidates if (root / n).lstat().st_mtime_ns > sealed)
    return sorted(n for n in candidates if _differs(root / n, written[n]))


def _differs(path: Path, record: Mapping[str, Any]) -> bool:
    if path.is_symlink() or not path.is_file():
        return True
    if path.stat().st_size != record.get("bytes"):
        return True  # cheap: no need to read the file
    return file_record(path) != record
def _names(files: Sequence[str]) -> str:
    shown = ", ".join(files[:SHOWN])
    return shown + (f" (and {len(files) - SHOWN} more)" if len(files) > SHOWN else "")


def _refusal(where: str, present: Sequence[str], manifest: Any,
             changed: Sequence[str] = ()) -> str:
    hint = "; pass --overwrite to replace it"
    if manifest is None:
        return (f"output dir {where} is not a finished {TOOL} run (no {MANIFEST}) and holds "
                f"{_names(present)}{hint}")
    if not is_complete_run(manifest):
        return (f"output dir {where} has a {MANIFEST} this version of {TOOL} did not write "
                f"(no tool marker or file list); it holds {_names(present)}{hint}")
    parts = []
    if foreign := foreign_files(present, manifest):
        parts.append(f"files this tool did not write: {_names(foreign)}")
    if changed:
        parts.append(f"files changed since this tool wrote them: {_names(changed)}")
    return f"output dir {where} holds {'; and '.join(parts)}{hint}"


# -- what a run reads (passed in: pipelines/runtime/input_locations.py) ----------------------

def _fixed_part(location: str) -> str:
    """A glob cut to the directory before its first wildcard; other locations unchanged."""
    match = _GLOB.search(location)
    if not match:
        return location.rstrip("/") or location
    head = location[:match.start()]
    return head.rstrip("/") if head.endswith("/") else head.rpartition("/")[0]


# -- local directories -----------------------------------------------------------------------

def local_files(root: Path) -> list[str]:
    """Every file under `root` as a relative POSIX path (symlinks count as files, not
    followed)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_symlink() or not p.is_dir())


def read_local_manifest(root: Path) -> Any:
    """The manifest at `root`: None when there is none, {} when it cannot be read."""
    try:
        return json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: not a manifest we can trust


def _protected_local(out: Path, reads: Sequence[tuple[str, str]]) -> str | None:
    """Why `out` must never be replaced, or None."""
    if out.parent == out:
        return "is a filesystem root"
    places = [("the current directory", Path.cwd())]
    try:
        places.append(("the home directory", Path.home()))
    except RuntimeError:  # no HOME and no passwd entry: nothing to guard
        pass
    for what, path in places:
        path = path.resolve()
        if out == path:
            return f"is {what}"
        if out in path.parents:
            return f"contains {what} ({path})"
    for what, loc in reads:
        if "://" in loc:
            continue
        path = Path(_fixed_part(loc)).expanduser().resolve()
        if out == path or out in path.parents:
            return f"contains {what} ({loc})"
    return None


def check_protected(out: Path, reads: Sequence[tuple[str, str]]) -> None:
    """Raise InputError when `out` (an absolute path) must never be replaced, whatever it
    holds; only reads the filesystem."""
    why = _protected_local(out, reads)
    if why:
        raise InputError(f"output dir {out} {why}; {TOOL} never replaces it (even with "
                         "--overwrite): choose a new folder")


def check_local(out: Path, reads: Sequence[tuple[str, str]], overwrite: bool) -> None:
    """Raise InputError unless a run may put its output at `out` (an absolute path)."""
    check_protected(out, reads)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise InputError(f"output dir {out} exists and is not a directory")
    present = local_files(out)
    if not present or overwrite:
        return
    manifest = read_local_manifest(out)
    changed = changed_files(out, present, manifest) if is_complete_run(manifest) else []
    if manifest is None or foreign_files(present, manifest) or changed:
        raise InputError(_refusal(str(out), present, manifest, changed))


# -- remote prefixes (Beam FileSystems) ------------------------------------------------------

def remote_files(prefix: str) -> list[str]:
    """Every object under `prefix/` as a path relative to it."""
    return sorted(remote_sizes(prefix))


def remote_sizes(prefix: str) -> dict[str, int]:
    """{path relative to `prefix/`: size in bytes} of every object under it."""
    base = prefix.rstrip("/") + "/"
    return {m.path[len(base):]: m.size_in_bytes
            for m in FileSystems.match([base + "**"])[0].metadata_list}


def remote_records(prefix: str) -> dict[str, dict[str, Any]]:
    """The manifest's `written` for a remote output: sizes only (see the module docstring)."""
    return {name: {"bytes": size} for name, size in sorted(remote_sizes(prefix).items())}


def _read_remote_manifest(prefix: str) -> Any:
    path = f"{prefix}/{MANIFEST}"
    if not FileSystems.exists(path):
        return None
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}


def check_remote(out: str, reads: Sequence[tuple[str, str]], overwrite: bool) -> None:
    """`check_local` for a remote prefix such as gs://bucket/out (no trailing slash)."""
    if "/" not in out.partition("://")[2].strip("/"):
        raise InputError(f"output dir {out} is a bucket root; {TOOL} never replaces it (even "
                         "with --overwrite): choose a folder inside it")
    for what, loc in reads:
        fixed = _fixed_part(loc)
        if fixed == out or fixed.startswith(out + "/"):
            raise InputError(f"output dir {out} contains {what} ({loc}); {TOOL} never "
                             "replaces it (even with --overwrite): choose a new folder")
    sizes = remote_sizes(out)
    present = sorted(sizes)
    if not present or overwrite:
        return
    manifest = _read_remote_manifest(out)
    changed: list[str] = []
    if is_complete_run(manifest) and isinstance(manifest["written"], dict):
        written = manifest["written"]
        changed = sorted(n for n in present if n in written and n not in ALWAYS_OURS
                         and written[n].get("bytes") != sizes[n])
    if manifest is None or foreign_files(present, manifest) or changed:
        raise InputError(_refusal(out, present, manifest, changed))
