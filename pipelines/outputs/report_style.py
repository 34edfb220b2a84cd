"""The stylesheet of report.html, inline in the page: system fonts, one restrained palette
(blue kept, amber rejected, red failed, light blue for a pool behind a dataset), and widths
that follow the window."""

CSS = """
:root{--ink:#1f2933;--mute:#6b7280;--line:#e5e7eb;--k:#2f6fb0;--r:#d9822b;--f:#c23b3b;
--p:#c7d7ea;--bg:#f7f8fa}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1000px;margin:0 auto;padding:24px 20px 40px}
header,section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:18px 22px;
margin-bottom:16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0 0 2px}
.meta,.intro,footer{color:var(--mute);margin:0 0 12px}
.intro{font-size:13px}footer{font-size:12px;text-align:center}
.pill{font-size:12px;font-weight:600;border-radius:10px;padding:2px 9px;margin-left:8px;
vertical-align:middle}.ok{color:#25633f;background:#e3f2e8}.bad{color:#fff;background:var(--f)}
h3{font-size:13px;margin:14px 0 4px}
table.text td{text-align:left;vertical-align:top;overflow-wrap:anywhere;font-size:12px}
table.text th{text-align:left}table.text td.num{text-align:right;white-space:nowrap}
figcaption{font-weight:600;font-size:13px;margin:0 0 4px}.note{color:var(--mute);font-size:12px;
margin:2px 0 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:10px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 10px}
.card b{display:block;font-size:19px}.card span{color:var(--mute);font-size:12px}
figure{margin:8px 0 14px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:8px 18px}
svg.chart{display:block;width:100%;height:auto;overflow:visible}
svg text{font-size:12px;fill:var(--ink)}
svg .axis,svg .val{fill:var(--mute);font-size:11px}
svg .muted{fill:#9ca3af}
.k{fill:var(--k)}.r{fill:var(--r)}.f{fill:var(--f)}.p{fill:var(--p)}
line.gl{stroke:var(--line)}line.axisline{stroke:#9ca3af}
line.marker{stroke:var(--f);stroke-dasharray:4 3}
path.conn{fill:none;stroke:#b6bcc6}circle.dot{fill:var(--k)}circle.dot.muted{fill:#c0c5cc}
.nodata{color:var(--mute);font-size:13px;border:1px dashed var(--line);border-radius:6px;
padding:10px 12px}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{text-align:right;padding:4px 8px;border-bottom:1px solid var(--line)}
th:first-child,td:first-child{text-align:left}th{color:var(--mute);font-weight:600}
ul.targets{margin:12px 0 0;padding-left:18px;font-size:13px}ul.targets .miss{color:var(--f)}
"""
