"""Bad requests to the review server get one line and status 400 (or 413), never a traceback
and a dropped connection, and never touch the verdict log (issue 24, section 5)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from review_fakes import audit_row, small_run, write_audit

from pipelines.outputs.review import verdicts_path
from pipelines.outputs.review_server import ReviewServer


@pytest.fixture
def served(tmp_path) -> Iterator[ReviewServer]:
    server = ReviewServer(small_run(tmp_path / "run"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _raw(server: ReviewServer, body: bytes, length: str | None = None) -> tuple[str, bytes]:
    """Send a POST byte for byte; the status line and body of the answer."""
    host = f"127.0.0.1:{server.port}"
    head = (f"POST /verdicts HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(head.encode("latin-1") + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer, "the server dropped the connection without an answer"
    headers, _, payload = answer.partition(b"\r\n\r\n")
    return headers.split(b"\r\n")[0].decode(), payload


@pytest.mark.parametrize(("body", "length", "status"), [
    (b'{"id": ["r001"], "verdict": "good"}', None, "400"),
    (b'{"id": {"a": 1}, "verdict": "good"}', None, "400"),
    (b'{"id": "r001", "verdict": "good"}', "abc", "400"),
    (b'{"id": "r001", "verdict": "good"}', "-5", "400"),
    (b"[" * 5000 + b"]" * 5000, None, "400"),
    (b'{"id": "r001", "verdict": "good", "reason": "\\ud800"}', None, "400"),
    (b'{"id": "\\udfff", "verdict": "good"}', None, "400"),
    (b'{"id": "r001", "verdict": "good", "reason": "\xff\xfe"}', None, "400"),
    (b"x" * 100, "99999999999999999999", "413"),
])
def test_a_bad_request_is_one_line_never_a_traceback(served, capsys, body, length, status):
    line, payload = _raw(served, body, length)
    assert line.split()[1] == status, (line, payload)
    text = payload.decode("utf-8")
    assert text and "\n" not in text.strip() and "Traceback" not in text
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err
    assert not verdicts_path(served.run_dir).exists()


def test_a_good_request_still_works_after_bad_ones(served):
    _raw(served, b'{"id": ["r001"]}')
    line, payload = _raw(served, b'{"id": "r001", "verdict": "good", "reason": "caf\\u00e9"}')
    assert line.split()[1] == "200" and json.loads(payload)["reason"] == "café"


def _get(server: ReviewServer, path: str) -> tuple[int, str]:
    request = urllib.request.Request(server.url.rstrip("/") + path)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def test_the_served_page_leaves_the_rows_to_blocks_it_fetches(tmp_path):
    """A large sample is not sent whole at every page load: the page holds ids and verdicts,
    the texts come by blocks of 500 from rows/<n>."""
    run = write_audit(tmp_path / "run", {"big": [audit_row(i) for i in range(1, 1201)]})
    server = ReviewServer(run)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, page = _get(server, "/")
        assert status == 200 and "r1200" in page and "Output 1200" not in page
        status, block = _get(server, "/rows/2")
        assert status == 200
        assert [r["id"] for r in json.loads(block)] == [f"r{i:03d}" for i in range(1001, 1201)]
        assert json.loads(block)[-1]["output"] == "Output 1200"
        for path in ("/rows/3", "/rows/-1", "/rows/abc", "/rows/"):
            assert _get(server, path)[0] == 404
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
