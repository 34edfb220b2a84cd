"""A run writes report.html beside its shards before manifest.json, the summary points at it,
`instructbeam report OUT` writes it again, and a report bug never costs the run."""

from __future__ import annotations

from helpers import scripted_config

from pipelines.cli import main
from pipelines.outputs import report_html
from pipelines.outputs.report import format_summary
from pipelines.recipes.registry import recipe_info
from pipelines.run import run


def test_run_writes_the_report_before_the_manifest(scripted_server, tmp_path, capsys):
    server = scripted_server()
    out = tmp_path / "out"
    result = run(scripted_config(server.base_url, out, None, max_prompts=4))
    report = out / "report.html"
    assert report.is_file()
    assert report.stat().st_mtime_ns <= (out / "manifest.json").stat().st_mtime_ns
    html = report.read_text(encoding="utf-8")
    assert html.count('<svg class="chart"') >= 6  # funnel, reasons, ROUGE-L, three lengths
    assert f"report:       {report}" in format_summary(result.manifest, out, recipe_info())
    report.unlink()
    assert main(["report", str(out)]) == 0
    assert report.read_text(encoding="utf-8") == html
    assert str(report) in capsys.readouterr().out


def test_a_failing_report_does_not_fail_the_run(scripted_server, tmp_path, monkeypatch, caplog):
    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(report_html, "write_report", broken)
    server = scripted_server()
    out = tmp_path / "out"
    run(scripted_config(server.base_url, out, None, max_prompts=4))
    assert (out / "manifest.json").is_file() and not (out / "report.html").exists()
    assert "report.html was not written" in caplog.text
