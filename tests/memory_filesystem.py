"""An in-memory Beam filesystem (``memtest://``) standing in for GCS in tests: no network here.

Beam finds filesystems by subclass, so importing this module registers the scheme for every
pipeline in the test process (FnApiRunner runs in process). Only reading is implemented.
"""

from __future__ import annotations

import io

from apache_beam.io.filesystem import FileMetadata, FileSystem

SCHEME = "memtest"
FILES: dict[str, bytes] = {}


class MemoryFileSystem(FileSystem):
    @classmethod
    def scheme(cls) -> str:
        return SCHEME

    def has_dirs(self) -> bool:
        return False

    def join(self, basepath: str, *paths: str) -> str:
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path: str) -> tuple[str, str]:
        head, _, tail = path.rpartition("/")
        return head, tail

    def _list(self, dir_or_prefix: str):
        for path in sorted(FILES):
            if path.startswith(dir_or_prefix):
                yield FileMetadata(path, len(FILES[path]))

    def exists(self, path: str) -> bool:
        return path in FILES

    def size(self, path: str) -> int:
        return len(FILES[path])

    def metadata(self, path: str) -> FileMetadata:
        return FileMetadata(path, len(FILES[path]))

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        return io.BytesIO(FILES[path])

    def _unsupported(self, *args, **kwargs):
        raise NotImplementedError("memtest:// is read-only")

    create = copy = rename = delete = mkdirs = last_updated = checksum = _unsupported
