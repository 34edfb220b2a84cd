"""report.html: one self-contained page that shows what a run made and why rows were dropped.

Written beside the shards (by `run` just before manifest.json, or again by `instructbeam report
OUT`). Everything is inline: CSS in a <style>, charts as server-side SVG
(pipelines/outputs/report_svg.py) from numbers read out of the shards
(pipelines/outputs/report_data.py). No script, font, image or network request, so the page
opens the same from a laptop, a bucket or an e-mail attachment.
All text that came from a model or a config is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from pipelines.outputs import report_data as data
from pipelines.outputs import report_svg as svg
from pipelines.outputs.confine import inside
from pipelines.outputs.manifest import failure_ratio, read
from pipelines.outputs.report_style import CSS
from pipelines.outputs.report_svg import Bar, Segment
from pipelines.outputs.targets import missed, outcome
from schemas import Reason

REPORT_FILE = "report.html"
LENGTH_FIELDS = ("instruction", "input", "output")


def write_report(output_dir: Path, manifest: dict[str, Any] | None = None) -> Path:
    """Write `<output_dir>/report.html`; `manifest` defaults to the run's manifest.json (a run
    passes its manifest dict, because manifest.json is written after the report)."""
    output_dir = Path(output_dir)
    if manifest is None:
        manifest = read(output_dir)
    path = inside(output_dir, REPORT_FILE)  # never through a link out of the run folder
    tmp = inside(output_dir, REPORT_FILE + ".tmp")
    tmp.write_text(render(output_dir, manifest), encoding="utf-8")
    tmp.rename(path)
    return path


def render(output_dir: Path, manifest: dict[str, Any]) -> str:
    sections = [_header(manifest), _funnel(manifest), _novelty(output_dir, manifest),
                _lengths(output_dir), _tags(output_dir, manifest), _figures(manifest),
                _tree(output_dir),
                _examples(output_dir), _usage(manifest)]
    title = f"instructbeam report: {manifest.get('recipe', '?')}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)}</title><style>{CSS}</style></head><body><main>'
            + "".join(s for s in sections if s) + _footer(manifest) + "</main></body></html>\n")


def _figure(caption: str, chart: str, note: str = "") -> str:
    """A chart with its visible caption (a "no data" note already names itself)."""
    head = f"<figcaption>{escape(caption)}</figcaption>" if chart.startswith("<svg") else ""
    tail = f'<p class="note">{escape(note)}</p>' if note else ""
    return f"<figure>{head}{chart}{tail}</figure>"


def _section(title: str, intro: str, *figures: str, grid: bool = False) -> str:
    inner = "".join(figures)
    return (f'<section><h2>{escape(title)}</h2><p class="intro">{escape(intro)}</p>'
            + (f'<div class="grid">{inner}</div>' if grid else inner) + "</section>")


def _header(m: dict[str, Any]) -> str:
    gen = m.get("generator")
    run = m.get("run", {})
    who = f"generator {gen['model']} ({gen.get('backend', '?')})" if gen else "no generator"
    rows = m.get("rows", {})
    usage = run.get("generator_usage", {})
    cards = [("dataset rows", rows.get("data", 0)),
             *((("input rows", m["input_rows"]),) if "input_rows" in m else ()),
             *((k, v) for k, v in sorted(rows.items()) if k not in ("data", "rejected", "failed")),
             ("rejected", rows.get("rejected", 0)), ("failed", rows.get("failed", 0)),
             ("generator requests", sum(u.get("requests", 0) for u in usage.values()))]
    broken = [c for c in m.get("accounting", []) if not c.get("holds")]
    status = ('<span class="pill ok">accounting OK</span>' if not broken else
              f'<span class="pill bad">accounting broken at {len(broken)} check(s)</span>')
    meta = " · ".join(escape(str(x)) for x in (
        who, f"started {run.get('started', '?')}",
        f"{run['duration_s']} s" if "duration_s" in run else "",
        f"failure ratio {failure_ratio(m):.3f}" if "stages" in m else "") if x)
    card_html = "".join(f'<div class="card"><b>{escape(_num(v))}</b><span>{escape(k)}</span>'
                        f"</div>" for k, v in cards)
    goals, goal_list = _targets(m)
    return (f"<header><h1>instructbeam · {escape(str(m.get('recipe', '?')))} {status}{goals}"
            f'</h1><p class="meta">{meta}</p><div class="cards">{card_html}</div>{goal_list}'
            "</header>")


def _targets(m: dict[str, Any]) -> tuple[str, str]:
    """(a pill for the title, one line per target) — a missed target is said at the top."""
    found = m.get("targets", {})
    if not found:
        return "", ""
    short = missed(m)
    pill = (f'<span class="pill bad">{len(short)} target{"s" * (len(short) > 1)} not met'
            "</span>" if short else '<span class="pill ok">targets met</span>')
    items = "".join(f'<li class="{"miss" if not t["met"] else "met"}"><code>{escape(name)}'
                    f"</code>: {escape(outcome(t))}</li>" for name, t in found.items())
    return " " + pill, f'<ul class="targets">{items}</ul>'


def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _funnel(m: dict[str, Any]) -> str:
    bars: list[Bar] = []
    for stage, row in m.get("stages", {}).items():
        if "produced" in row:
            rejected = sum(row.get("rejected", {}).values())
            note = f"{row['kept']:,} kept of {row['produced']:,}"
            if row.get("failed"):
                note += f" · {row['failed']:,} failed requests"
            bars.append(Bar(stage, (Segment(row["kept"], "k", "kept"),
                                    Segment(rejected, "r", "rejected")), note))
        elif "in" in row:
            bars.append(Bar(stage, (Segment(row["ok"], "k", "ok"),
                                    Segment(row["failed"], "f", "failed")),
                            f"{row['ok']:,} ok of {row['in']:,}"))
    funnel = svg.bar_chart(
        "Records per stage", "Each stage's records (or requests, for generation-only stages) "
        "split into kept, rejected and failed.", bars,
        [("k", "kept / ok"), ("r", "rejected"), ("f", "failed")])
    reasons = sorted(((f"{stage} · {reason}", n) for stage, row in m.get("stages", {}).items()
                      for reason, n in row.get("rejected", {}).items() if n),
                     key=lambda kv: (-kv[1], kv[0]))
    by_reason = svg.bar_chart(
        "Rejections by reason", "Rejected records per stage and reason code.",
        [Bar(label, (Segment(n, "r", "rejected"),), f"{n:,}") for label, n in reasons])
    return _section("Funnel", "What each stage received and let through; every record is "
                    "kept, rejected with a reason, or failed.",
                    _figure("Records per stage", funnel), _figure("Rejections by reason",
                                                                  by_reason))


def _threshold(m: dict[str, Any]) -> float | None:
    cfg = m.get("config", {})
    own = cfg.get(m.get("recipe", ""), {}) or {}
    for key in ("rouge_threshold", "filter_threshold"):
        if isinstance(own.get(key), int | float):
            return float(own[key])
    novelty = cfg.get("filters", {}).get("novelty", {})
    return float(novelty["threshold"]) if novelty.get("enabled") else None


def _novelty(output_dir: Path, m: dict[str, Any]) -> str:
    kept, not_novel, n_kept, n_not = data.rouge_series(output_dir)
    edges = [i / data.ROUGE_BINS for i in range(data.ROUGE_BINS + 1)]
    threshold = _threshold(m)
    chart = svg.histogram(
        "ROUGE-L to the most similar pool instruction",
        f"Histogram in bins of 0.05: {len(kept)} kept instructions, {len(not_novel)} rejected "
        "as not novel.", edges,
        [("k", f"kept ({n_kept:,})", data.rouge_bins(kept)),
         ("r", f"rejected: not novel ({n_not:,})", data.rouge_bins(not_novel))],
        x_label="ROUGE-L F to the most similar instruction",
        marker=None if threshold is None else (threshold, f"threshold {threshold:g}"))
    return _section("Novelty", "How close each new instruction came to the pool, as in the "
                    "Self-Instruct paper's figure; scores above the threshold are "
                    "rejected.", _figure("ROUGE-L to the most similar pool instruction", chart))


def _lengths(output_dir: Path) -> str:
    charts = []
    for field in LENGTH_FIELDS:
        column = data.read_column(output_dir, "data", field)
        counts = data.word_counts(column)
        edges, hist, overflow = data.length_bins(counts)
        title = f"{field.capitalize()} length (words)"
        if not counts:
            charts.append(svg.no_data(title))
            continue
        ordered = sorted(counts)
        sampled = f", sampled from {column.total:,}" if column and column.total > len(counts) \
            else ""
        desc = (f"n={len(counts):,}{sampled}, median {ordered[len(ordered) // 2]}, "
                f"max {ordered[-1]}, empty {ordered.count(0)}")
        chart = svg.histogram(title, desc, edges, [("k", field, hist)], x_label="words",
                              overflow=overflow, width=300, legend=False)
        charts.append(_figure(field, chart, desc))
    return _section("Lengths", "Words per field in the kept dataset (whitespace-separated).",
                    *charts, grid=True)


def _tags(output_dir: Path, m: dict[str, Any]) -> str:
    report = m.get("instag") or m.get("reports", {}).get("instag")
    stats = data.tag_stats(output_dir)
    if stats is None and not report:
        return ""
    if stats is not None:
        top = stats.top
    else:  # the report's pool counts only
        top = [(t, 0, n) for t, n in report.get("top_tags", [])[:20]]
    freq = svg.bar_chart(
        "Tag frequency", "Rows carrying each of the most frequent tags: in the dataset (dark) "
        "and in the tagged pool (light).",
        [Bar(t, (Segment(pool, "p", "pool"), Segment(kept, "k", "dataset")),
             f"{kept:,} / {pool:,}", overlay=True) for t, kept, pool in top],
        [("k", "dataset"), ("p", "pool")])
    pool_tags, kept_tags = (stats.pool_tags, stats.kept_tags) if stats else (0, 0)
    mean_pool, mean_kept = (stats.mean_pool, stats.mean_kept) if stats else (0.0, 0.0)
    if report:
        pool_tags, mean_pool = report["pool"]["tags"], report["pool"]["mean_tags"]
        if report.get("subset"):
            kept_tags, mean_kept = report["subset"]["tags"], report["subset"]["mean_tags"]
    coverage = kept_tags / pool_tags if pool_tags else 0.0
    cover = svg.bar_chart(
        "Tag coverage", f"Distinct tags: {kept_tags} of {pool_tags} in the dataset "
        f"({100 * coverage:.1f}% coverage).",
        [Bar("pool", (Segment(pool_tags, "p", "distinct tags"),),
             f"{pool_tags:,} tags · {mean_pool:.2f} per row"),
         Bar("dataset", (Segment(kept_tags, "k", "distinct tags"),),
             f"{kept_tags:,} tags ({100 * coverage:.1f}%) · {mean_kept:.2f} per row")])
    return _section("Tags", "Tag frequencies and how much of the pool's tag vocabulary the "
                    "dataset covers.", _figure("Most frequent tags", freq),
                    _figure("Tag coverage", cover))


def _figures(m: dict[str, Any]) -> str:
    """The `summary` rows of every recipe report that has them (e.g. UltraChat's dialogue
    statistics), one table per report."""
    tables = []
    for name, report in sorted(m.get("reports", {}).items()):
        rows = report.get("summary") if isinstance(report, dict) else None
        if not rows:
            continue
        body = "".join(f"<tr><td>{escape(str(label))}</td><td>{escape(_num(value))}</td></tr>"
                       for label, value in rows)
        tables.append(f"<h3>{escape(name)}</h3><table><tbody>{body}</tbody></table>")
    if not tables:
        return ""
    return ("<section><h2>Figures</h2><p class=\"intro\">What the recipe measured over its "
            "dataset (reports/&lt;name&gt;.json).</p>" + "".join(tables) + "</section>")


def _tree(output_dir: Path) -> str:
    found = data.tree_rows(output_dir)
    if found is None:
        return ""
    rows, source, total = found
    if source == "nodes":
        legend = [("k", "examples in the dataset"), ("p", "examples after the filter")]
        intro = "The task tree in pre-order; numbers are dataset / after-filter examples."
    else:
        legend = [("k", "examples in the node file")]
        intro = "The task tree written in the paper's format, with each node's examples."
    if total > len(rows):
        intro += f" The first {len(rows)} of {total} nodes are shown."
    return _section("Explore-Instruct tree", intro, _figure(f"Task tree ({total} nodes)",
                    svg.tree_chart("Explore-Instruct task tree", f"{total} nodes", rows,
                                   legend)))


def _examples(output_dir: Path, n: int = 5) -> str:
    """A few kept rows and a few rejected as not novel beside their most similar text: the
    numbers above are about these texts, so show some (clipped, escaped)."""
    kept = data.head_rows(output_dir, "data", LENGTH_FIELDS, n)
    close = data.head_rows(output_dir, "rejected", ("instruction", "most_similar", "score"), n,
                           ds.field("reason") == Reason.NOT_NOVEL.value)
    if not kept and not close:
        return ""
    def cell(text: object, css: str = "") -> str:
        cls = f' class="{css}"' if css else ""
        return f"<td{cls}>{escape(_clip(str(text or ''), 280))}</td>"

    def table(heads: Sequence[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in heads)
        body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
        return f'<table class="text"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    parts = []
    if kept:
        parts.append("<h3>Kept rows</h3>" + table(
            LENGTH_FIELDS, [[cell(r[f]) for f in LENGTH_FIELDS] for r in kept]))
    if close:
        parts.append("<h3>Rejected as not novel</h3>" + table(
            ("instruction", "most similar pool instruction", "ROUGE-L"),
            [[cell(r["instruction"]), cell(r["most_similar"]), cell(_score(r["score"]), "num")]
             for r in close]))
    return ("<section><h2>Examples</h2><p class=\"intro\">The first rows of the shards, "
            "clipped.</p>" + "".join(parts) + "</section>")


def _score(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _usage(m: dict[str, Any]) -> str:
    usage = m.get("run", {}).get("generator_usage", {})
    if not usage:
        return ""
    keys = sorted({k for u in usage.values() for k in u})
    head = "".join(f"<th>{escape(k.replace('_', ' '))}</th>" for k in keys)
    body = "".join(f"<tr><td>{escape(stage)}</td>" + "".join(
        f"<td>{_num(u.get(k, 0))}</td>" for k in keys) + "</tr>" for stage, u in usage.items())
    return (f"<section><h2>Generator usage</h2><table><thead><tr><th>stage</th>{head}</tr>"
            f"</thead><tbody>{body}</tbody></table></section>")


def _footer(m: dict[str, Any]) -> str:
    versions = m.get("run", {}).get("versions", {})
    parts = [f"schema {m.get('schema_version', '?')}"] + [
        f"{k} {v}" for k, v in versions.items() if k in ("instructbeam", "apache-beam")]
    return f"<footer>{escape(' · '.join(parts))} · from manifest.json and the shards</footer>"
