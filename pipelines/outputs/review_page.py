"""review/index.html: one self-contained page for reviewing a run's audit sample by keyboard.

Everything is inline (CSS, script, the rows as JSON), so the page needs nothing but itself.
The rows sit in blocks of `CHUNK`, parsed only when one of their rows is shown, so a sample of
100K rows loads and moves as fast as a small one (bench/review_page_bench.py). Served by
`instructbeam review RUN` (pipelines/outputs/review_server.py), the page leaves the blocks out
and fetches them from that local server, to which it posts each verdict; the server appends it
to review/verdicts.jsonl. Opened as a file, it keeps the decisions (never the texts) in the
browser's localStorage, one key per block, and "export verdicts" downloads them for
`instructbeam review RUN --import FILE`. Either way, reopening resumes at the first unreviewed
row.

Rows are untrusted model text: they reach the page only as JSON inside a script element with
every `<`, `>` and `&` escaped, and the script puts them into the page with `textContent`,
never as markup.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any, Final

from pipelines.outputs.confine import inside
from pipelines.outputs.report_style import CSS
from pipelines.outputs.review import (
    MAX_REASON,
    PAGE_FILE,
    REVIEW_DIR,
    VERDICTS_FILE,
    SampleRow,
    log_notice,
    read_sample,
    read_verdicts,
)

# No request may leave the page except its own posts to the server that served it.
CSP: Final = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "connect-src 'self'; img-src data:")

PAGE_CSS: Final = """
.row{min-height:320px}.rowhead{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center;
margin-bottom:6px}.rowhead .where{color:var(--mute)}
.text{white-space:pre-wrap;overflow-wrap:anywhere;border:1px solid var(--line);border-radius:6px;
padding:8px 10px;background:#fcfcfd;max-height:40vh;overflow:auto;font:13px/1.45 ui-monospace,
SFMono-Regular,Menlo,Consolas,monospace}.text.empty{color:var(--mute);font-style:italic}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;font-size:12px;
margin:10px 0}dl.meta dt{color:var(--mute)}dl.meta dd{margin:0;overflow-wrap:anywhere}
.pill.none{color:var(--mute);background:var(--bg);border:1px solid var(--line)}
.pill.good{color:#25633f;background:#e3f2e8}.pill.bad{color:#fff;background:var(--f)}
.pill.skip{color:var(--ink);background:#eceff3}
.reason{display:flex;gap:8px;align-items:center;margin:12px 0 8px}.reason input{flex:1;
min-width:0;font:inherit;padding:5px 8px;border:1px solid var(--line);border-radius:6px}
.buttons{display:flex;flex-wrap:wrap;gap:6px}button{font:inherit;padding:4px 10px;
border:1px solid var(--line);border-radius:6px;background:#fff;cursor:pointer}
button kbd,.keys kbd{font:11px ui-monospace,monospace;border:1px solid var(--line);
border-radius:3px;padding:0 4px;background:var(--bg)}
#status{min-height:1.4em;font-size:12px;color:var(--mute)}#status.error{color:var(--f);
font-weight:600}.done{color:#25633f;font-weight:600}
.keys{font-size:12px;color:var(--mute);margin:0}
.notice{color:var(--f);font-weight:600}#dialogue h4{margin:8px 0 2px;font-size:12px;
color:var(--mute)}.turn.assistant{background:#f6f8fb}
"""

PAGE_JS: Final = r"""
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var DATA = JSON.parse($("review-data").textContent);
  // Only ids and sources are read up front; a row's texts are parsed from its chunk when it
  // is shown (a few chunks are kept), so a 100K-row sample loads as fast as a small one.
  var IDS = DATA.ids, SRC = DATA.src, N = IDS.length, CHUNK = DATA.chunk;
  var CHUNKS = Math.ceil(N / CHUNK), VERDICTS = ["good", "bad", "skip"];
  var SERVED = location.protocol === "http:" || location.protocol === "https:";
  var STORE = "instructbeam-review:" + DATA.key;
  var state = Object.create(null), draft = Object.create(null), index = Object.create(null);
  var history = [], cache = {}, cached = [];
  var pending = 0, queue = Promise.resolve(), done = 0;
  var counts = DATA.sources.map(function () { return {n: 0, good: 0, bad: 0, skip: 0}; });
  var reasonBox = $("reason");
  IDS.forEach(function (id, i) { index[id] = i; counts[SRC[i]].n += 1; });
  Object.keys(DATA.verdicts).forEach(function (id) { state[id] = DATA.verdicts[id]; });

  // Opened as a file the rows sit in the page's own blocks; served, the page asks the
  // server for a block (rows/<n>) when it first shows one of its rows, and the next one
  // when it comes near its edge.
  var loading = {};
  function parsed(c, rows) {
    cache[c] = rows;
    cached.push(c);
    if (cached.length > 8) { delete cache[cached.shift()]; }
    return rows;
  }
  function rowAt(i) {
    var c = Math.floor(i / CHUNK);
    if (!Object.prototype.hasOwnProperty.call(cache, c)) {
      if (DATA.remote) { return null; }
      parsed(c, JSON.parse($("rows-" + c).textContent));
    }
    return cache[c][i - c * CHUNK];
  }
  function fetchChunk(c) {
    if (c < 0 || c >= CHUNKS || Object.prototype.hasOwnProperty.call(cache, c)) {
      return Promise.resolve();
    }
    if (!loading[c]) {
      loading[c] = fetch("rows/" + c).then(function (r) {
        if (!r.ok) { return r.text().then(function (t) { throw new Error(t || r.status); }); }
        return r.json();
      }).then(function (rows) { parsed(c, rows); })
        .catch(function (e) { status("could not load rows: " + e.message, true); })
        .then(function () { delete loading[c]; });
    }
    return loading[c];
  }
  function nearby(i) {  // the block of row i, and the next or previous one near its edges
    var c = Math.floor(i / CHUNK), off = i - c * CHUNK, wanted = [fetchChunk(c)];
    if (off > CHUNK - 50) { wanted.push(fetchChunk(c + 1)); }
    if (off < 50) { wanted.push(fetchChunk(c - 1)); }
    return wanted[0];
  }
  function newer(id, line) {
    return id in index && typeof line.verdict === "string" &&
      (!state[id] || line.at >= state[id].at);
  }
  function storeChunk(c) {  // this chunk's decisions only: never the texts
    var kept = {};
    for (var i = c * CHUNK; i < Math.min(N, (c + 1) * CHUNK); i += 1) {
      var v = state[IDS[i]];
      if (v) { kept[IDS[i]] = [v.verdict, v.reason, v.at]; }
    }
    localStorage.setItem(STORE + ":" + c, JSON.stringify(kept));
  }
  if (!SERVED) {  // verdicts made in this browser since the page was written
    for (var c = 0; c < CHUNKS; c += 1) {
      var got = {};
      try {
        got = JSON.parse(localStorage.getItem(STORE + ":" + c) || "{}");
      } catch (e) { got = {}; }
      Object.keys(got).forEach(function (id) {
        if (!Array.isArray(got[id])) { return; }
        var line = {verdict: got[id][0], reason: got[id][1], at: got[id][2]};
        if (newer(id, line)) { state[id] = line; }
      });
    }
    var legacy = null;  // an earlier version kept whole lines, texts too, in one key
    try { legacy = JSON.parse(localStorage.getItem(STORE) || "null"); } catch (e) { legacy = null; }
    if (legacy) {
      var touched = {};
      Object.keys(legacy).forEach(function (id) {
        var l = legacy[id];
        if (l && newer(id, l)) {
          state[id] = {verdict: l.verdict, reason: l.reason, at: l.at};
          touched[Math.floor(index[id] / CHUNK)] = true;
        }
      });
      try {
        Object.keys(touched).forEach(function (c) { storeChunk(Number(c)); });
        localStorage.removeItem(STORE);
      } catch (e) { /* kept where it was: nothing is lost */ }
    }
  }
  function verdictOf(id) {
    var v = state[id];
    return v && VERDICTS.indexOf(v.verdict) >= 0 ? v.verdict : null;
  }
  IDS.forEach(function (id, i) {
    var v = verdictOf(id);
    if (v) { counts[SRC[i]][v] += 1; done += 1; }
  });
  function setState(id, line) {  // keeps the per-source counts without a pass over all rows
    var before = verdictOf(id), s = counts[SRC[index[id]]];
    state[id] = line;
    var after = verdictOf(id);
    if (before) { s[before] -= 1; done -= 1; }
    if (after) { s[after] += 1; done += 1; }
  }
  function status(text, error) {
    $("status").textContent = text;
    $("status").className = error ? "error" : "";
  }
  function firstUnreviewed(from) {
    for (var n = 0; n < N; n += 1) {
      var i = (from + n) % N;
      if (!verdictOf(IDS[i])) { return i; }
    }
    return -1;
  }
  var pos = Math.max(0, firstUnreviewed(0));

  function lineFor(id, verdict, reason) {
    return {verdict: verdict, reason: reason, at: new Date().toISOString(), id: id};
  }
  function post(line) {
    pending += 1;
    $("status").setAttribute("data-pending", pending);
    queue = queue.then(function () {  // one at a time, so the log keeps the order of keys
      return fetch("verdicts", {method: "POST", headers: {"Content-Type": "application/json"},
                                body: JSON.stringify({id: line.id, verdict: line.verdict,
                                                      reason: line.reason})})
        .then(function (r) {
          if (!r.ok) { return r.text().then(function (t) { throw new Error(t || r.status); }); }
          return r.json();
        })
        .then(function (saved) {
          if (state[saved.id] === line) {
            state[saved.id] = {verdict: saved.verdict, reason: saved.reason, at: saved.at};
          }
          status("saved to " + DATA.file);
        })
        .catch(function (e) {
          status("NOT saved (" + e.message + "): use export verdicts to keep them", true);
        })
        .then(function () {
          pending -= 1;
          $("status").setAttribute("data-pending", pending);
        });
    });
  }
  function save(line) {
    setState(line.id, line);
    if (SERVED) {
      post(line);
    } else {
      try {
        storeChunk(Math.floor(index[line.id] / CHUNK));
        status("kept in this browser: export verdicts, then instructbeam review RUN --import FILE");
      } catch (e) { status("could not keep it in this browser: " + e.message, true); }
    }
  }
  function record(verdict) {
    var id = IDS[pos];
    history.push({id: id, before: state[id] || null});
    save(lineFor(id, verdict, reasonBox.value.trim()));
    delete draft[id];
    var next = firstUnreviewed(pos + 1);
    pos = next >= 0 ? next : Math.min(pos + 1, N - 1);
    render();
  }
  function undo() {
    var last = history.pop();
    if (!last) { status("nothing to undo"); return; }
    var before = last.before, back = before && VERDICTS.indexOf(before.verdict) >= 0;
    save(lineFor(last.id, back ? before.verdict : "undone", back ? before.reason : ""));
    pos = index[last.id];
    render();
  }
  function keepReason() {
    var id = IDS[pos], verdict = verdictOf(id), text = reasonBox.value.trim();
    if (verdict) {
      history.push({id: id, before: state[id]});
      save(lineFor(id, verdict, text));
    } else {
      draft[id] = text;
      status("reason kept for this row: press g, b or s");
    }
    reasonBox.blur();
    render();
  }
  function move(step) {
    pos = Math.max(0, Math.min(N - 1, pos + step));
    render();
  }
  function exportVerdicts() {  // whole lines: the texts come from the page's blocks
    var blocks = [];
    IDS.forEach(function (id, i) {
      if (state[id]) { blocks.push(Math.floor(i / CHUNK)); }
    });
    var pendingBlocks = blocks.filter(function (c, k) { return blocks.indexOf(c) === k; });
    var ready = DATA.remote ? Promise.all(pendingBlocks.map(function (c) {
      return fetchChunk(c).then(function () { return [c, cache[c]]; });
    })) : Promise.resolve([]);
    ready.then(function (fetched) {
      var rows = {};
      fetched.forEach(function (pair) { rows[pair[0]] = pair[1]; });
      var lines = [];
      IDS.forEach(function (id, i) {
        var v = state[id], c = Math.floor(i / CHUNK);
        if (!v) { return; }
        var row = DATA.remote ? rows[c][i - c * CHUNK] : rowAt(i);
        lines.push(JSON.stringify({id: id, stage: row.stage, source: row.source,
                                   verdict: v.verdict, reason: v.reason,
                                   instruction: row.instruction, input: row.input,
                                   output: row.output, at: v.at}) + "\n");
      });
      var a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob(lines, {type: "application/x-ndjson"}));
      a.download = DATA.name + "-verdicts.jsonl";
      document.body.appendChild(a);
      a.click();
      a.remove();
      status("exported " + lines.length + " verdicts");
    }).catch(function (e) { status("export failed: " + e.message, true); });
  }
  function fill(id, text) {
    $(id).textContent = text === "" ? "(empty)" : text;
    $(id).className = text === "" ? "text empty" : "text";
  }
  function shown(value) {
    if (typeof value === "number" && !Number.isInteger(value)) { return value.toFixed(3); }
    return typeof value === "string" ? value : JSON.stringify(value);
  }
  function renderMeta(row) {
    var dl = $("meta");
    dl.textContent = "";
    var pairs = [["id", row.id]];
    Object.keys(row.extra).forEach(function (k) {
      var v = row.extra[k];
      if (k === "messages") { return; }  // shown whole, as the dialogue
      if (v && typeof v === "object" && !Array.isArray(v)) {
        Object.keys(v).forEach(function (sub) { pairs.push([k + "." + sub, v[sub]]); });
      } else if (v !== null && v !== "") { pairs.push([k, v]); }
    });
    pairs.forEach(function (p) {
      var dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = p[0];
      dd.textContent = shown(p[1]);
      dl.appendChild(dt);
      dl.appendChild(dd);
    });
  }
  function renderDialogue(row) {
    var turns = Array.isArray(row.extra.messages) ? row.extra.messages : [];
    var box = $("dialogue");
    box.textContent = "";
    $("dialogue-box").hidden = turns.length === 0;
    $("instruction-box").hidden = turns.length > 0;  // the dialogue's first turns
    $("output-box").hidden = turns.length > 0;
    $("input-box").hidden = turns.length > 0 && row.input === "";
    $("dialogue-head").textContent = "Dialogue (" + turns.length + " turns)";
    turns.forEach(function (m, n) {
      var head = document.createElement("h4"), text = document.createElement("div");
      head.textContent = (n + 1) + " · " + String(m.role);
      text.className = "text turn " + String(m.role);
      text.textContent = String(m.content);
      box.appendChild(head);
      box.appendChild(text);
    });
  }
  function renderProgress() {
    $("done").textContent = done + " of " + N + " reviewed";
    $("done").className = done === N ? "done" : "";
    var body = $("per-source");
    body.textContent = "";
    DATA.sources.forEach(function (name, k) {
      var s = counts[k], tr = document.createElement("tr");
      [name, (s.good + s.bad + s.skip) + " / " + s.n, s.good, s.bad, s.skip]
        .forEach(function (cell) {
          var td = document.createElement("td");
          td.textContent = String(cell);
          tr.appendChild(td);
        });
      body.appendChild(tr);
    });
  }
  function render() {
    if (N === 0) { $("pos").textContent = "no audit rows"; renderProgress(); return; }
    if (DATA.remote) { nearby(pos); }
    var row = rowAt(pos);
    if (!row) {
      var wanted = pos;
      $("pos").textContent = "row " + (pos + 1) + " of " + N + " (loading)";
      nearby(pos).then(function () { if (pos === wanted && rowAt(pos)) { render(); } });
      return;
    }
    var verdict = verdictOf(row.id);
    $("pos").textContent = "row " + (pos + 1) + " of " + N;
    $("where").textContent = row.source + " · " + row.stage;
    $("verdict").textContent = verdict || "unreviewed";
    $("verdict").className = "pill " + (verdict || "none");
    fill("instruction", row.instruction);
    fill("input", row.input);
    fill("output", row.output);
    renderDialogue(row);
    renderMeta(row);
    if (document.activeElement !== reasonBox) {
      reasonBox.value = row.id in draft ? draft[row.id] : (verdict ? state[row.id].reason : "");
    }
    renderProgress();
    document.body.setAttribute("data-row", row.id);
  }
  reasonBox.addEventListener("keydown", function (e) {
    if (e.key === "Enter") { e.preventDefault(); keepReason(); }
    if (e.key === "Escape") { e.preventDefault(); reasonBox.blur(); render(); }
  });
  var KEYS = {
    g: function () { record("good"); }, b: function () { record("bad"); },
    s: function () { record("skip"); }, u: undo,
    r: function () { reasonBox.focus(); reasonBox.select(); },
    j: function () { move(1); }, k: function () { move(-1); },
    ArrowRight: function () { move(1); }, ArrowDown: function () { move(1); },
    ArrowLeft: function () { move(-1); }, ArrowUp: function () { move(-1); }
  };
  document.addEventListener("keydown", function (e) {
    if (e.target === reasonBox || e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (!Object.prototype.hasOwnProperty.call(KEYS, e.key)) { return; }
    e.preventDefault();
    KEYS[e.key]();
  });
  document.querySelectorAll("button[data-key]").forEach(function (button) {
    button.addEventListener("click", function () { KEYS[button.getAttribute("data-key")](); });
  });
  $("export").addEventListener("click", exportVerdicts);
  if (DATA.notice) { $("notice").textContent = DATA.notice; $("notice").hidden = false; }
  status(SERVED ? "verdicts are saved to " + DATA.file
                : "opened as a file: verdicts stay in this browser until exported");
  render();
}());
"""

CHUNK: Final = 500  # rows per JSON block: parsing one takes a few ms whatever the sample's size

BUTTONS: Final = (("g", "good"), ("b", "bad"), ("s", "skip"), ("u", "undo"),
                  ("k", "previous"), ("j", "next"))


def run_key(run_dir: Path, rows: list[SampleRow]) -> str:
    """Names this run's verdicts in the browser's storage (file:// pages share one origin)."""
    text = "\n".join([str(Path(run_dir).resolve()), *(row.id for row in rows)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def script_json(value: Any) -> str:
    """JSON that cannot end or open a tag inside <script>: `<`, `>` and `&` as \\u escapes."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(run_dir: Path, rows: Sequence[SampleRow] | None = None, *, remote: bool = False,
           ) -> str:
    """The page for a run, with the verdicts in force when it is rendered: ids and sources in
    one small JSON block, the rows' texts in blocks of `CHUNK` rows that the script parses
    only when it shows one of their rows. `remote` (the server's page) leaves the blocks out:
    the script fetches them (`chunk_json`), so a large sample is not sent at every load."""
    run_dir = Path(run_dir)
    rows = list(read_sample(run_dir) if rows is None else rows)
    verdicts = read_verdicts(run_dir)
    name = run_dir.resolve().name or "run"
    sources = list(dict.fromkeys(r.source for r in rows))
    number = {source: k for k, source in enumerate(sources)}
    data = {"key": run_key(run_dir, rows), "name": name, "file": f"{REVIEW_DIR}/{VERDICTS_FILE}",
            "notice": log_notice(run_dir), "chunk": CHUNK, "sources": sources, "remote": remote,
            "ids": [r.id for r in rows], "src": [number[r.source] for r in rows],
            "verdicts": {i: {"verdict": v.verdict, "reason": v.reason, "at": v.at}
                         for i, v in verdicts.items()}}
    chunks = "".join(
        f'<script type="application/json" id="rows-{start // CHUNK}">'
        f"{script_json([_row(r) for r in rows[start:start + CHUNK]])}</script>"
        for start in range(0, len(rows), CHUNK)) if not remote else ""
    buttons = "".join(f'<button type="button" data-key="{key}"><kbd>{key}</kbd> {label}'
                      "</button>" for key, label in BUTTONS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{escape(f'instructbeam review: {name}')}</title>"
        f"<style>{CSS}{PAGE_CSS}</style></head><body><main>"
        f"<header><h1>instructbeam review · {escape(name)}</h1>"
        f'<p class="meta">{len(rows)} audit rows from {len(sources)} source'
        f'{"s" * (len(sources) != 1)} · <span id="done"></span></p>'
        '<p id="notice" class="notice" role="alert" hidden></p>'
        '<table><thead><tr><th>source</th><th>reviewed</th><th>good</th><th>bad</th>'
        '<th>skip</th></tr></thead><tbody id="per-source"></tbody></table></header>'
        '<section class="row"><div class="rowhead"><b id="pos"></b>'
        '<span class="pill none" id="verdict"></span><span class="where" id="where"></span>'
        '</div><div id="instruction-box"><h3>Instruction</h3>'
        '<div class="text" id="instruction"></div></div>'
        '<div id="input-box"><h3>Input</h3><div class="text" id="input"></div></div>'
        '<div id="output-box"><h3>Output</h3><div class="text" id="output"></div></div>'
        '<div id="dialogue-box" hidden><h3 id="dialogue-head">Dialogue</h3>'
        '<div id="dialogue"></div></div><dl class="meta" id="meta"></dl>'
        '<div class="reason"><label for="reason"><kbd>r</kbd> reason</label>'
        f'<input id="reason" type="text" maxlength="{MAX_REASON}" autocomplete="off" '
        'placeholder="why (optional); Enter keeps it"></div>'
        f'<div class="buttons">{buttons}<button type="button" id="export">export verdicts'
        '</button></div><p id="status" role="status" data-pending="0"></p></section>'
        '<section><p class="keys"><kbd>g</kbd> good · <kbd>b</kbd> bad · <kbd>s</kbd> skip · '
        "<kbd>r</kbd> type a reason (replaces the old one; <kbd>End</kbd> appends), "
        "<kbd>Enter</kbd> keeps it (and re-saves a reviewed "
        "row), <kbd>Esc</kbd> leaves it · <kbd>u</kbd> undo the last verdict · "
        "<kbd>j</kbd>/<kbd>k</kbd> or arrows move · verdicts go to "
        f"{escape(str(run_dir / REVIEW_DIR / VERDICTS_FILE))}</p></section></main>"
        f'<script type="application/json" id="review-data">{script_json(data)}</script>'
        f"{chunks}<script>{PAGE_JS}</script></body></html>\n")


def chunk_json(rows: Sequence[SampleRow], number: int) -> str | None:
    """Block `number` of the rows as JSON (what the served page fetches), None past the end."""
    if not 0 <= number < -(-len(rows) // CHUNK):
        return None
    return json.dumps([_row(r) for r in rows[number * CHUNK:(number + 1) * CHUNK]],
                      ensure_ascii=False, sort_keys=True)


def _row(row: SampleRow) -> dict[str, Any]:
    return {"id": row.id, "source": row.source, "stage": row.stage,
            "instruction": row.instruction, "input": row.input, "output": row.output,
            "extra": dict(row.extra)}


def write_page(run_dir: Path) -> Path:
    """Write `RUN_DIR/review/index.html`: replaced whole, never half-written, never through a
    link. The folders are checked by confine.py; the page is written to a fresh temporary
    file of a random name (O_EXCL), so nothing planted in review/ (index.html.tmp as a link
    to the manifest or out of the run) is ever opened, and renamed over index.html, which
    replaces a link there instead of following it."""
    path = inside(run_dir, REVIEW_DIR, PAGE_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = render(run_dir).encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{PAGE_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(page)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
