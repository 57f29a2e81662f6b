"""Batch reports without Prefect: summary CSV/JSON and one static HTML page people read.

The page (``report.html``, no JavaScript, pictures written beside it by
:mod:`restore.report_pictures`): counts; failed files with their one-line reason; every warning of
every file; then one group per kind (MRI, audio) with a summary line per file and a section per
file: warnings, findings, actions, the metrics chosen for its kind (before -> after, green when
better, red when worse) and its picture. Files with warnings come first within a group. What each
section says is read from the sidecar by :mod:`restore.report_content`.
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path

from restore import __version__
from restore.batch import FileResult
from restore.outputs import atomic_write
from restore.report_content import Digest, digest, number
from restore.report_pictures import make_picture, picture_path  # noqa: F401 - flows/ call them as report.*

SUMMARY_CSV, SUMMARY_JSON, REPORT_HTML, PICTURES = "batch_summary.csv", "batch_summary.json", "report.html", "report"


def counts(results: list[FileResult]) -> dict[str, int]:
    out = {"total": len(results), "done": 0, "skipped": 0, "failed": 0}
    for r in results:
        out[r.status] += 1
    return out


def flat_metrics(metrics: dict, prefix: str = "") -> dict[str, float | int | str]:
    """``{"reference": {"input": {"psnr": 1}}}`` -> ``{"reference.input.psnr": 1}``; lists are left out."""
    flat: dict = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_metrics(value, name + "."))
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            flat[name] = value
    return flat


def metric_names(results: list[FileResult]) -> list[str]:
    """Sorted union of flattened scalar metric names over all results."""
    return sorted({k for r in results for k in flat_metrics(r.metrics)})


def _rows_metrics(r: FileResult, names: list[str]) -> dict:
    flat = flat_metrics(r.metrics)
    return {m: flat.get(m, "") for m in names}


def table_rows(results: list[FileResult]) -> list[dict]:
    """One flat row per file: name, kind, status, seconds, each metric, error."""
    names = metric_names(results)
    rows = []
    for r in results:
        row = {"file": Path(r.input).name, "kind": r.kind, "status": r.status, "seconds": round(r.seconds, 3)}
        row.update(_rows_metrics(r, names))
        row["error"] = r.error or ""
        rows.append(row)
    return rows


def write_summary(results: list[FileResult], outdir: Path) -> tuple[Path, Path]:
    """``batch_summary.csv`` (one row per file) and ``batch_summary.json`` (counts + per-file details)."""
    outdir = Path(outdir)
    names = metric_names(results)
    fields = ["input", "output", "kind", "status", "seconds", *names, "error"]

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for r in results:
                writer.writerow({"input": r.input, "output": r.output, "kind": r.kind, "status": r.status,
                                 "seconds": round(r.seconds, 3), **_rows_metrics(r, names),
                                 "error": r.error or ""})

    summary = {"counts": counts(results), "files": [
        {"input": r.input, "output": r.output, "kind": r.kind, "status": r.status, "seconds": r.seconds,
         "reference": r.reference, "metrics": r.metrics, "error": r.error,
         "model": (r.record or {}).get("model"), "params": (r.record or {}).get("params")}
        for r in results]}
    text = json.dumps(summary, indent=2, default=_json_default) + "\n"
    atomic_write(outdir / SUMMARY_CSV, write_csv)
    atomic_write(outdir / SUMMARY_JSON, lambda tmp: tmp.write_text(text))
    return outdir / SUMMARY_CSV, outdir / SUMMARY_JSON


def _json_default(value):
    if hasattr(value, "item"):
        value = value.item()
        return value if not isinstance(value, float) or math.isfinite(value) else str(value)
    return str(value)


def markdown_summary(results: list[FileResult], report: Path | None = None) -> str:
    """A short markdown summary (counts, failures, report location) for a Prefect artifact."""
    c = counts(results)
    lines = [f"# Restore batch: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed of {c['total']}", ""]
    failed = [r for r in results if r.status == "failed"]
    if failed:
        lines += ["## Failed", ""] + [f"- **{Path(r.input).name}**: {r.error}" for r in failed] + [""]
    if report is not None:
        lines += [f"HTML report: `{report}`"]
    return "\n".join(lines)


# ---------------------------------------------------------------- HTML

KIND_TITLES = {"mri": "MRI", "audio": "Audio"}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:62em;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}.box h2{margin-top:.3em}
h3{margin:0 0 .3em}h4{margin:.8em 0 .2em;font-size:1em;color:#444}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
ul{margin:.2em 0;padding-left:1.4em}.done{color:#176b2c;font-weight:bold}.skipped{color:#555;font-weight:bold}
.failed{color:#b00020;font-weight:bold}.better{color:#176b2c}.worse{color:#b00020;font-weight:bold}
.box{padding:.4em 1em;margin:1em 0;border-radius:4px}.failures{border:2px solid #b00020;background:#fff0f0}
.warnings{border:2px solid #b8860b;background:#fff8e1}.file{border:1px solid #ddd;border-radius:4px;
padding:.6em 1em;margin:1em 0}.file .warnings{margin:.4em 0}.cols{display:flex;flex-wrap:wrap;gap:0 2em}
.cols>div{flex:1 1 20em}img{max-width:100%;display:block;margin:.5em 0}.muted{color:#666}
"""


def ordered(results: list[FileResult]) -> list[tuple[FileResult, Digest]]:
    """(result, digest) pairs: failed first, then files with warnings, then the rest (each in input order)."""
    pairs = [(r, digest(r)) for r in results]
    return sorted(pairs, key=lambda p: 0 if p[1].status == "failed" else (1 if p[1].warnings else 2))


def render_html(results: list[FileResult], outdir: Path, pictures: dict[str, Path | None]) -> Path:
    """``report.html`` in ``outdir`` (see the module docstring). ``pictures`` maps an input path to
    its picture (or None)."""
    outdir, esc = Path(outdir), html.escape
    c = counts(results)
    pairs = ordered(results)
    anchors = {id(r): f"file-{i}" for i, r in enumerate(results)}
    parts = [(f"<!doctype html><html lang='en'><meta charset='utf-8'><title>Restore batch report</title>"
             f"<style>{_STYLE}</style><body>"),
             (f"<h1>Restore batch: {c['done']} done, {c['skipped']} skipped, "
              f"<span class='{'failed' if c['failed'] else ''}'>{c['failed']} failed</span> of {c['total']}</h1>"
              f"<p class='muted'>restore {esc(__version__)}. Green: better after restoration; red: worse. "
              "Each file's name links to its section; its section links to the restored file.</p>")]
    failed = [(r, d) for r, d in pairs if d.status == "failed"]
    if failed:
        parts.append("<div class='box failures'><h2>Failed</h2><ul>" + "".join(
            f"<li><b>{esc(d.name)}</b> ({esc(KIND_TITLES.get(d.kind, d.kind))}): {esc(d.error or '')}</li>"
            for _, d in failed) + "</ul></div>")
    warned = [(r, d) for r, d in pairs if d.warnings]
    if warned:
        parts.append("<div class='box warnings'><h2>Warnings</h2><ul>" + "".join(
            f"<li><a href='#{anchors[id(r)]}'>{esc(d.name)}</a>: {esc(w)}</li>" for r, d in warned for w in d.warnings)
            + "</ul></div>")
    for kind in [*KIND_TITLES, *sorted({r.kind for r in results} - set(KIND_TITLES))]:
        group = [(r, d) for r, d in pairs if r.kind == kind]
        if group:
            parts.append(_group_html(kind, group, outdir, pictures, anchors))
    text = "\n".join(parts) + "\n</body></html>\n"
    atomic_write(outdir / REPORT_HTML, lambda tmp: tmp.write_text(text))
    return outdir / REPORT_HTML


def _group_html(kind: str, group: list[tuple[FileResult, Digest]], outdir: Path, pictures: dict,
                anchors: dict) -> str:
    """One kind's summary table (a line per file) and a section per file that was not failed."""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{_name_link(d, anchors[id(r)])}</td><td class='{d.status}'>{d.status}</td>"
        f"<td>{esc(d.summary)}</td><td class='n'>{len(d.warnings) or ''}</td><td class='n'>{d.seconds:.1f}</td></tr>"
        for r, d in group)
    parts = [f"<h2>{esc(KIND_TITLES.get(kind, kind))}: {len(group)} file{'s' if len(group) != 1 else ''}</h2>",
             ("<table class='summary'><tr><th>file</th><th>status</th><th>summary</th><th>warnings</th>"
             f"<th>seconds</th></tr>{rows}</table>")]
    parts += [_file_html(r, d, outdir, pictures.get(r.input), anchors[id(r)]) for r, d in group if d.status != "failed"]
    return "\n".join(parts)


def _name_link(d: Digest, anchor: str) -> str:
    """A file's name, linked to its section (a failed file has none: its reason is in its line)."""
    return html.escape(d.name) if d.status == "failed" else f"<a href='#{anchor}'>{html.escape(d.name)}</a>"


def _items(title: str, lines: list[str]) -> str:
    return f"<div><h4>{title}</h4><ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul></div>"


def _file_html(r: FileResult, d: Digest, outdir: Path, picture: Path | None, anchor: str) -> str:
    esc = html.escape
    head = f"<h3>{esc(d.name)} <span class='{d.status}'>{d.status}</span></h3>"
    parts = [(f"<section class='file' id='{anchor}'>{head}<p class='muted'>"
             f"<a href='{esc(_relative(r.output, outdir))}'>{esc(Path(r.output).name)}</a> "
             f"&middot; {d.seconds:.1f} s</p>")]
    if d.warnings:
        parts.append("<div class='box warnings'>" + _items("Warnings", d.warnings) + "</div>")
    columns = [_items(t, lines) for t, lines in (("Findings", d.findings), ("Actions", d.actions)) if lines]
    if columns:
        parts.append("<div class='cols'>" + "".join(columns) + "</div>")
    if d.metrics:
        rows = []
        for m in d.metrics:
            css = {True: "better", False: "worse", None: ""}[m.better]
            before = "" if m.before is None else f"{number(m.before)}{m.unit}"
            rows.append(f"<tr><td>{esc(m.label)}</td><td class='n'>{esc(before)}</td>"
                        f"<td class='n {css}'>{esc(number(m.after))}{esc(m.unit)}</td></tr>")
        parts.append("<h4>Metrics</h4><table class='metrics'><tr><th>metric</th><th>input</th><th>output</th></tr>"
                     + "".join(rows) + "</table>")
    if picture:
        parts.append(f"<figure><img src='{esc(_relative(picture, outdir))}' alt='before and after: {esc(d.name)}'>"
                     "</figure>")
    return "".join(parts) + "</section>"


def _relative(path: str | Path, outdir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(outdir.resolve()))
    except ValueError:
        return Path(path).resolve().as_uri()
