"""Writes that stay in their folder: a symbolic link must not carry one elsewhere.

A run folder can hold links its user made, or come from someone else (a run shared as an
archive). Before the tool writes into one (the review page, verdicts, report.html, the
default export folder beside it), the target is resolved; if a link on the way leads out of
the folder, the write is refused with one line instead of landing wherever the link points.
Links that stay inside the folder are followed as usual.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.errors import InputError


def inside(root: Path, *parts: str) -> Path:
    """`root/parts...`; an InputError when resolving it leaves `root` through a link."""
    base = Path(root).resolve()
    path = base.joinpath(*parts)
    real = path.resolve()
    if real.is_relative_to(base):
        return path
    link = next((base.joinpath(*parts[:i]) for i in range(1, len(parts) + 1)
                 if base.joinpath(*parts[:i]).is_symlink()), path)
    raise InputError(f"refusing to write {path}: {link} is a symbolic link leading out of "
                     f"{base} (to {real}); remove the link")
