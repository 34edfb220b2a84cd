"""The live progress line: a bootstrap loop shows accepted/target, requests in flight and an
ETA from the rate so far, ahead of the per-stage counts (tok/s)."""

from __future__ import annotations

import time

from pipelines.outputs import progress


def test_the_line_shows_each_loop_with_its_eta(monkeypatch):
    line = progress._Progress()
    line._enabled = True
    monkeypatch.setattr(line, "_draw", lambda: None)  # no printing; build the line by hand
    line.start()
    line.loop("instructions", accepted=0, target=400, in_flight=32)
    line._loops["instructions"][3] = time.monotonic() - 100  # the loop started 100 s ago
    line.loop("instructions", accepted=100, target=400, in_flight=32)
    line.add("instruction_gen", requests=40, tokens=4000)
    text = line._line(time.time())
    assert text.index("instructions: 100/400 accepted, 32 in flight, ETA 5m") < \
        text.index("instruction_gen: 40 req")
    assert " tok/s" in text
    line.loop("instructions", accepted=400, target=400, in_flight=0)
    assert "instructions: 400/400 accepted, 0 in flight |" in line._line(time.time())


def test_with_the_requests_left_the_eta_counts_every_request():
    line = progress._Progress()
    line._enabled = True
    line._draw = lambda: None
    line.start()
    line.loop("instructions", accepted=0, target=400, in_flight=32)
    line._loops["instructions"][3] = time.monotonic() - 100
    # all 400 accepted, but 300 follow-ups of 100 answered requests are still to come
    line.loop("instructions", accepted=400, target=400, in_flight=32, answered=100, left=300)
    assert "400/400 accepted, 32 in flight, ETA 5m" in line._line(time.time())


def test_eta():
    assert progress._eta(0, 10, 5.0) == ""
    assert progress._eta(10, 10, 5.0) == ""
    assert progress._eta(5, 10, 30.0) == ", ETA 30s"
    assert progress._eta(1, 10, 100.0) == ", ETA 15m00s"
