"""The local server behind `instructbeam review RUN`: it serves the review page and appends each
verdict the page posts to review/verdicts.jsonl.

Standard library only, bound to 127.0.0.1. It answers only requests addressed to itself (the
Host header names this server, a posted verdict comes from its own page), so another web site
open in the same browser cannot write verdicts. The texts of a verdict line are taken from
the run's audit sample, never from the request: the page sends only id, verdict and reason.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from pipelines.errors import InputError
from pipelines.outputs.review import (
    MAX_REASON,
    UNDONE,
    VERDICTS,
    append_verdicts,
    make_verdict,
    read_sample,
)
from pipelines.outputs.review_page import CSP, chunk_json, render

HOST: Final = "127.0.0.1"
MAX_BODY: Final = 16 * 1024 + 4 * MAX_REASON  # bytes; a verdict is an id, a word and a note


def _parse(body: bytes) -> Any:
    """The request's JSON, with every way it can be bad as one ValueError: invalid UTF-8, or
    nesting deep enough to exhaust the parser's recursion."""
    try:
        return json.loads(body)
    except RecursionError:
        raise ValueError("bad request: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"bad request: not JSON ({exc})") from None


def _one_line(exc: Exception) -> bytes:
    """An error's text as one line of UTF-8, whatever it holds."""
    text = " ".join(str(exc).split())
    return text.encode("utf-8", "backslashreplace")[:1000]


class ReviewServer(ThreadingHTTPServer):
    """Serves one run's review page on `HOST`; port 0 picks a free port."""

    daemon_threads = True

    def __init__(self, run_dir: Path, port: int = 0) -> None:
        self.run_dir = Path(run_dir)
        self.sample = read_sample(self.run_dir)  # read once: the page fetches it by blocks
        self.rows = {row.id: row for row in self.sample}
        self.lock = threading.Lock()  # one append at a time, in arrival order
        super().__init__((HOST, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def origins(self) -> tuple[str, ...]:
        return tuple(f"{name}:{self.port}" for name in (HOST, "localhost"))


class _Handler(BaseHTTPRequestHandler):
    server: ReviewServer
    timeout = 30  # seconds; a client that promises a body and sends none does not hold a thread

    def do_GET(self) -> None:  # noqa: N802 - the name http.server dispatches to
        if not self._addressed_to_us():
            return
        if self.path.startswith("/rows/"):
            number = self.path.removeprefix("/rows/")
            block = chunk_json(self.server.sample, int(number)) if number.isdigit() else None
            if block is None:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"no such block of rows")
            else:
                self._send(HTTPStatus.OK, "application/json", block.encode("utf-8"))
            return
        if self.path not in ("/", "/index.html"):
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")
            return
        try:
            page = render(self.server.run_dir, self.server.sample, remote=True).encode("utf-8")
        except InputError as exc:  # e.g. a malformed line in the log: one line, not a traceback
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", _one_line(exc))
            return
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", page)

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        if not self._addressed_to_us():
            return
        if self.path != "/verdicts":
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found")
            return
        origin = self.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") not in self.server.origins():
            self._send(HTTPStatus.FORBIDDEN, "text/plain", b"verdicts come from the review page")
            return
        if not self.headers.get("Content-Type", "").startswith("application/json"):
            self._send(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "text/plain", b"send JSON")
            return
        length = self._length()
        if length is None:
            return
        try:
            line = self._verdict(_parse(self.rfile.read(length)))
        except (ValueError, InputError) as exc:
            self._send(HTTPStatus.BAD_REQUEST, "text/plain", _one_line(exc))
            return
        try:
            with self.server.lock:
                append_verdicts(self.server.run_dir, [line])
        except InputError as exc:  # review/ became a link
            self._send(HTTPStatus.FORBIDDEN, "text/plain", _one_line(exc))
            return
        self._send(HTTPStatus.OK, "application/json", line.to_json().encode("utf-8"))

    def _length(self) -> int | None:
        """The body's length from a single decimal Content-Length, or None once refused."""
        values = self.headers.get_all("Content-Length") or []
        if len(values) != 1 or not values[0].strip().isdigit() or not values[0].isascii():
            self.close_connection = True  # the body's end is unknown: nothing more to read
            self._send(HTTPStatus.BAD_REQUEST, "text/plain",
                       b"bad request: one decimal Content-Length is required")
            return None
        length = int(values[0])
        if not 0 < length <= MAX_BODY:
            self.close_connection = True
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "text/plain",
                       f"bad length: 1 to {MAX_BODY} bytes".encode())
            return None
        return length

    def _verdict(self, body: Any) -> Any:
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object {id, verdict, reason}")
        key = body.get("id")
        row = self.server.rows.get(key) if isinstance(key, str) else None
        if row is None:
            raise ValueError(f"id {key!r:.80} is not in the audit sample")
        verdict, reason = body.get("verdict"), body.get("reason", "")
        if verdict not in (*VERDICTS, UNDONE) or not isinstance(reason, str):
            raise ValueError("verdict must be good, bad, skip or undone; reason a string")
        try:
            reason.encode("utf-8")
        except UnicodeEncodeError:  # "\ud800" is valid JSON but no text the log can hold
            raise ValueError("reason holds a lone surrogate (not Unicode text)") from None
        return make_verdict(row, verdict, reason)

    def _addressed_to_us(self) -> bool:
        """Refuse requests for another host name (DNS rebinding)."""
        if self.headers.get("Host") in self.server.origins():
            return True
        self._send(HTTPStatus.MISDIRECTED_REQUEST, "text/plain", b"wrong host")
        return False

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
        """Quiet: the terminal shows where verdicts go, not one line per key press."""
