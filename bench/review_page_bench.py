"""Benchmark: the review page with a large audit sample (issue 24: "100K audit rows").

    PYTHONPATH=. .venv/bin/python bench/review_page_bench.py [--rows 100000] [--runs 3]

Writes a synthetic run folder (`--rows` audit rows over 4 sources, seeded: instruction of
~15 words, half the rows with an input of ~25 words, an output of ~80 words, every fifth row
a 4-turn dialogue with scores), renders `review/index.html` with whatever
`pipelines.outputs.review_page` is on PYTHONPATH (point PYTHONPATH at another checkout to
measure an older page), and opens it as a file in Debian's headless Chromium (the one
tests/browser.py drives). Reported, median of `--runs`:

- render_s: `write_page` in Python; page_mb: the page's size;
- load_ms: from navigation start to the first row on screen (the page sets body[data-row]),
  measured by the page's own clock (`performance.now()`), and wall_ms as Selenium saw it;
- key_ms: one `j` (move) key, re-render and layout included, mean of 50;
- verdict_ms: one `g` key in file mode (the verdict kept in localStorage), mean of 50;
- reload_ms: load again with those verdicts in the browser's storage;
- storage_chars: what the page keeps in localStorage after the 50 verdicts.

It also prints the machine (nproc, CPU model and flags, load average): the page runs on one
core, so the figures depend on the core's speed and on what else runs.

Figures, 100,000 rows, median of 3 (2026-12-07; nproc 2, "Intel(R) Xeon(R) Processor" with
avx2, avx512f/bw/vl/vnni/bf16/fp16, sha_ni, aes; load average 4-11 from other jobs on the same
2 cores, so expect noise of +-30%). load/reload: navigation start to the first row shown;
key: one `j`; verdict: one `g` (served: until the post is sent, not answered); storage: the
browser's localStorage after 50 verdicts (file page):

                          load_ms  key_ms  verdict_ms  reload_ms  storage
    served, before (8e0e32c)  6349    61.5        44.5       7374        -
    served, after              478     2.0         1.3        255        -
    file,   before (8e0e32c)  2813    85.2        82.1       3500   36,328 chars
    file,   after             1504     1.2         1.0        849    2,689 chars

Before, the page carried every row's texts as one JSON document parsed at load (served: 95
MB at every load, rendered by Python each time), every key re-counted all 100K rows, and
every verdict re-wrote one localStorage key holding all verdict lines with their texts (~730
chars a verdict: the 5 MB quota is full after ~7,000). After, the served page carries ids
and verdicts only and fetches blocks of 500 rows as it shows them; the file page embeds the
blocks and parses one when it shows one of its rows (what remains of its load is Chromium
parsing a 97 MB document); a key costs the same at 100 rows or 100K; storage keeps ~54 chars
a verdict, one key per block.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: the repo root, after PYTHONPATH (which may
    sys.path.append(str(Path(__file__).resolve().parents[1]))  # name an older checkout)

from pipelines.outputs.review_page import write_page  # noqa: E402
from pipelines.outputs.review_server import ReviewServer  # noqa: E402

WORDS = ("the of and to in is that for it as with was on be by this are or from at an not "
         "model data answer question write list explain summarize translate code function "
         "table city river history market price customer review product order return "
         "because however therefore example first second finally result value").split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def write_run(folder: Path, rows: int, seed: int = 0) -> Path:
    """A run folder with `rows` audit rows over 4 sources and a manifest."""
    rng = random.Random(seed)
    (folder / "audit").mkdir(parents=True)
    handles = {s: (folder / "audit" / f"{s}.jsonl").open("w", encoding="utf-8")
               for s in ("alpaca", "sharegpt", "self_instruct", "ultrachat")}
    names = list(handles)
    for i in range(rows):
        row: dict[str, object] = {
            "id": f"row-{i:07d}", "instruction": _text(rng, 15),
            "input": _text(rng, 25) if i % 2 else "", "output": _text(rng, 80),
            "stage": "instance_gen", "round": 1, "generator": "bench"}
        if i % 5 == 0:
            row["messages"] = [{"role": r, "content": _text(rng, 30)}
                               for r in ("user", "assistant", "user", "assistant")]
            row["scores"] = {"llm_judge": round(rng.uniform(1, 5), 2)}
        handles[names[i % 4]].write(json.dumps(row) + "\n")
    for handle in handles.values():
        handle.close()
    (folder / "manifest.json").write_text("{}", encoding="utf-8")
    return folder


def machine() -> dict[str, object]:
    info = Path("/proc/cpuinfo")
    cpu = info.read_text(encoding="utf-8") if info.exists() else ""
    field = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
             for line in cpu.splitlines() if ":" in line}
    return {"nproc": os.cpu_count(), "cpu": field.get("model name", platform.processor()),
            "flags": field.get("flags", ""), "loadavg": os.getloadavg(),
            "python": platform.python_version()}


def _driver(profile: Path):  # noqa: ANN202 - selenium's type, imported late
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--window-size=1200,900",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options,
                            service=Service(executable_path="/usr/bin/chromedriver"))


READY = """var done = arguments[arguments.length - 1];
(function wait() {
  if (document.body && document.body.getAttribute('data-row')) { done(performance.now()); }
  else { setTimeout(wait, 5); }
}());"""

KEYS = """var key = arguments[0], n = arguments[1], t = performance.now();
for (var i = 0; i < n; i += 1) {
  document.dispatchEvent(new KeyboardEvent('keydown', {key: key}));
  void document.body.offsetHeight;  // the layout of the new row, too
}
return (performance.now() - t) / n;"""

STORAGE = """var n = 0;
for (var i = 0; i < localStorage.length; i += 1) {
  var k = localStorage.key(i); n += k.length + localStorage.getItem(k).length; }
return n;"""


SAVED = """var done = arguments[arguments.length - 1];
(function wait() {
  if (document.getElementById('status').getAttribute('data-pending') === '0') { done(0); }
  else { setTimeout(wait, 5); }
}());"""


def measure(url: str, profile: Path) -> dict[str, float]:
    driver = _driver(profile)
    try:
        driver.set_page_load_timeout(600)
        driver.set_script_timeout(600)
        start = time.perf_counter()
        driver.get(url)
        load_ms = driver.execute_async_script(READY)
        wall_ms = (time.perf_counter() - start) * 1000
        key_ms = driver.execute_script(KEYS, "j", 50)
        verdict_ms = driver.execute_script(KEYS, "g", 50)
        driver.execute_async_script(SAVED)  # served: every verdict posted and answered
        storage = driver.execute_script(STORAGE)
        driver.get(url)
        reload_ms = driver.execute_async_script(READY)
        done = driver.execute_script("return document.getElementById('done').textContent")
        assert done.startswith("50 of"), done
        return {"load_ms": load_ms, "wall_ms": wall_ms, "key_ms": key_ms,
                "verdict_ms": verdict_ms, "reload_ms": reload_ms, "storage_chars": storage}
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=("file", "served"), default="file",
                        help="open review/index.html as a file, or served by ReviewServer")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        run = write_run(Path(tmp) / "run", args.rows)
        renders, results = [], []
        for n in range(args.runs):
            start = time.perf_counter()
            page = write_page(run)
            renders.append(time.perf_counter() - start)
            if args.mode == "file":
                results.append(measure(page.as_uri(), Path(tmp) / f"profile-{n}"))
                continue
            (run / "review" / "verdicts.jsonl").unlink(missing_ok=True)
            server = ReviewServer(run)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                results.append(measure(server.url, Path(tmp) / f"profile-{n}"))
            finally:
                server.shutdown()
                server.server_close()
        summary = {k: round(statistics.median(r[k] for r in results), 1) for k in results[0]}
        out = {"rows": args.rows, "mode": args.mode,
               "page_mb": round(page.stat().st_size / 1e6, 1),
               "render_s": round(statistics.median(renders), 2), **summary,
               "runs": results, "machine": machine()}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
