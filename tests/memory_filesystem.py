"""An in-memory Beam filesystem (``memtest://``) standing in for GCS in tests: no network here.

Beam finds filesystems by subclass, so importing this module registers the scheme for every
pipeline in the test process (FnApiRunner runs in process). Objects live in `FILES`; like GCS
there are no directories, a file appears when its writer is closed, and rename moves objects
one by one (a test can make it fail part way).
"""

from __future__ import annotations

import io

from apache_beam.io.filesystem import BeamIOError, FileMetadata, FileSystem

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

    def create(self, path, mime_type="application/octet-stream", compression_type=None):
        return _Writer(path)

    def rename(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names,
                                       strict=True):
            if source not in FILES:
                raise BeamIOError("Rename operation failed", {(source, destination):
                                                             FileNotFoundError(source)})
            FILES[destination] = FILES.pop(source)

    def delete(self, paths):
        missing = {path: FileNotFoundError(path) for path in paths if path not in FILES}
        for path in paths:
            FILES.pop(path, None)
        if missing:
            raise BeamIOError("Delete operation failed", missing)

    def _unsupported(self, *args, **kwargs):
        raise NotImplementedError("memtest:// does not implement this")

    copy = mkdirs = last_updated = checksum = _unsupported


class _Writer(io.BytesIO):
    """A write channel: the object exists (whole) once the writer is closed."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def close(self) -> None:
        if not self.closed:
            FILES[self._path] = self.getvalue()
        super().close()
