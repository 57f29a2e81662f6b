"""Batch reports without Prefect: summary CSV/JSON, before/after pictures and a static HTML page.

Pictures: MRI gets the middle axial, coronal and sagittal slices of input, output and their
difference (one 3x3 figure); audio gets spectrograms before and after. The HTML page lists
failures first, then a table of every file with its status, metrics, time and picture.
"""

from __future__ import annotations

import csv
import functools
import html
import json
import math
from pathlib import Path

import numpy as np

from restore.batch import FileResult, split_suffix
from restore.outputs import atomic_write

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


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


LOWER_IS_BETTER = ("sigma", "nrmse", "rmse", "mse", "lsd", "residual", "error")


def before_after_pairs(names: list[str]) -> list[tuple[str, str, str]]:
    """(label, before, after) for ``X_before``/``X_after`` and ``*.input.X``/``*.output.X`` metric names."""
    pairs = []
    for name in names:
        if name.endswith("_before") and name[: -len("_before")] + "_after" in names:
            pairs.append((name[: -len("_before")], name, name[: -len("_before")] + "_after"))
        elif ".input." in name and name.replace(".input.", ".output.", 1) in names:
            pairs.append((name.replace(".input.", ".", 1), name, name.replace(".input.", ".output.", 1)))
    return pairs


def improved(label: str, before: float, after: float) -> bool | None:
    """True when ``after`` is better than ``before`` (lower for noise/error names, else higher);
    None when either is not a finite number or they differ by less than 0.1%."""
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (before, after)):
        return None
    if abs(after - before) <= 1e-3 * max(abs(before), abs(after)):  # unchanged at the 4 digits shown
        return None
    lower = any(word in label.lower() for word in LOWER_IS_BETTER)
    return (after < before) if lower else (after > before)


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


# ---------------------------------------------------------------- pictures
# Drawn as arrays and written with Pillow, not matplotlib figures: a figure cost 1.4 s per file under
# load, more than restoring a small file, and it holds the GIL, so pictures serialised a threaded batch.

TILE_PX = 200  # longest side of one MRI slice or the width of a spectrogram, in pixels
GAP_PX = 4
LABEL_PX = 16  # height of a text line


@functools.lru_cache(maxsize=8)
def _lut(cmap: str) -> np.ndarray:
    from matplotlib import colormaps  # colour tables only; no pyplot, no figure

    lut = (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
    lut.setflags(write=False)  # shared by every picture (cached)
    return lut


def _colour(image: np.ndarray, cmap: str, lo: float, hi: float) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 through ``cmap`` over [lo, hi]."""
    scaled = (np.nan_to_num(image, nan=lo) - lo) / ((hi - lo) or 1.0)
    return _lut(cmap)[np.clip(scaled * 255.0, 0, 255).astype(np.uint8)]


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of the first two axes."""
    rows = np.minimum((np.arange(height) + 0.5) * image.shape[0] / height, image.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * image.shape[1] / width, image.shape[1] - 1).astype(int)
    return image[rows][:, cols]


def _middle_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Middle sagittal, coronal and axial slices of a (X, Y, Z[, ...]) volume (first volume if 4D),
    rotated so that superior / anterior is up."""
    v = volume.reshape(volume.shape[:3] + (-1,))[..., 0] if volume.ndim > 3 else volume
    x, y, z = (s // 2 for s in v.shape[:3])
    return [np.rot90(v[x, :, :]), np.rot90(v[:, y, :]), np.rot90(v[:, :, z])]


def mri_tiles(data_in: np.ndarray, data_out: np.ndarray,
              voxel_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> list[list[np.ndarray]]:
    """3x3 RGB tiles: rows input, output, difference (output - input, blue-white-red); columns the
    sagittal, coronal and axial middle slices, scaled to the voxel size's aspect ratio."""
    lo, hi = (float(v) for v in np.percentile(data_in, [1, 99.5]))
    diff = data_out - data_in
    span = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    zx, zy, zz = voxel_mm
    spacing = ((zz, zy), (zz, zx), (zy, zx))  # (row, column) mm of the rotated sagittal, coronal, axial slices
    tiles = []
    for volume, cmap, vmin, vmax in ((data_in, "gray", lo, hi), (data_out, "gray", lo, hi),
                                     (diff, "RdBu_r", -span, span)):
        row = []
        for sl, (dr, dc) in zip(_middle_slices(volume), spacing):
            height_mm, width_mm = sl.shape[0] * dr, sl.shape[1] * dc
            scale = TILE_PX / max(height_mm, width_mm)
            row.append(_resize(_colour(sl, cmap, vmin, vmax), max(1, round(height_mm * scale)),
                               max(1, round(width_mm * scale))))
        tiles.append(row)
    return tiles


def _spectrogram_db(samples: np.ndarray, sr: int) -> np.ndarray:
    """(frequency, frame) magnitude in dB of the channel mean, low frequencies in row 0."""
    from scipy.signal import stft

    mono = samples.mean(axis=1) if samples.ndim > 1 else samples
    _, _, z = stft(mono, fs=sr, nperseg=512 if sr >= 16000 else 256)
    return 20 * np.log10(np.abs(z) + 1e-8)


def audio_tiles(samples_in: np.ndarray, samples_out: np.ndarray, sr_in: int, sr_out: int) -> list[list[np.ndarray]]:
    """Spectrograms before and after (one row each), low frequencies at the bottom, on one 80 dB
    magma scale; each 3 * TILE_PX wide and 0-Nyquist of its own rate high."""
    specs = [_spectrogram_db(samples_in, sr_in), _spectrogram_db(samples_out, sr_out)]
    vmax = max(float(s.max()) for s in specs)
    return [[_resize(_colour(s[::-1], "magma", vmax - 80.0, vmax), TILE_PX, 3 * TILE_PX)] for s in specs]


def mosaic(tiles: list[list[np.ndarray]], title: str, row_labels: list[str], column_labels: list[str]):
    """One Pillow image: title, column labels, then the tiles on a grid with row labels on the left."""
    from PIL import Image, ImageDraw

    heights = [max(t.shape[0] for t in row) for row in tiles]
    widths = [max(row[j].shape[1] for row in tiles) for j in range(len(tiles[0]))]
    left, top = 80, 2 * LABEL_PX + GAP_PX
    canvas = Image.new("RGB", (left + sum(widths) + GAP_PX * len(widths), top + sum(heights) + GAP_PX * len(heights)),
                       "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP_PX, 1), title, fill="black")
    y = top
    for i, row in enumerate(tiles):
        x = left
        draw.text((GAP_PX, y + heights[i] // 2 - LABEL_PX // 2), row_labels[i], fill="black")
        for j, tile in enumerate(row):
            if i == 0 and column_labels:
                draw.text((x, LABEL_PX + 1), column_labels[j], fill="black")
            canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (x + (widths[j] - tile.shape[1]) // 2,
                                                                         y + (heights[i] - tile.shape[0]) // 2))
            x += widths[j] + GAP_PX
        y += heights[i] + GAP_PX
    return canvas


def picture_path(result: FileResult, picture_dir: Path) -> Path:
    stem, _ = split_suffix(Path(result.output))
    return Path(picture_dir) / f"{stem}.png"


def make_picture(result: FileResult, picture_dir: Path) -> Path | None:
    """Write the before/after picture for a done or skipped file; reuse one newer than the output."""
    if result.status == "failed" or not Path(result.output).is_file():
        return None
    target = picture_path(result, picture_dir)
    if target.is_file() and target.stat().st_mtime >= Path(result.output).stat().st_mtime:
        return target
    title = Path(result.input).name
    if result.kind == "mri":
        import nibabel as nib

        image_in = nib.load(result.input)
        zooms = tuple(float(z) for z in image_in.header.get_zooms()[:3])
        tiles = mri_tiles(np.asarray(image_in.dataobj, dtype=np.float32),
                          np.asarray(nib.load(result.output).dataobj, dtype=np.float32), zooms)
        image = mosaic(tiles, title, ["input", "output", "difference"], ["sagittal", "coronal", "axial"])
    else:
        import soundfile as sf

        samples_in, sr_in = sf.read(result.input, dtype="float32", always_2d=True)
        samples_out, sr_out = sf.read(result.output, dtype="float32", always_2d=True)
        seconds = len(samples_in) / sr_in
        tiles = audio_tiles(samples_in, samples_out, sr_in, sr_out)
        image = mosaic(tiles, f"{title}: spectrogram, 0-{seconds:.1f} s, 0-{sr_in / 2000:g} kHz, 80 dB range",
                       ["before", "after"], [])
    atomic_write(target, lambda tmp: image.save(tmp, format="PNG"))
    return target


# ---------------------------------------------------------------- HTML

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}.done{color:#176b2c;font-weight:bold}.skipped{color:#555}
.failed{color:#b00020;font-weight:bold}.better{color:#176b2c}.worse{color:#b00020}.failures{border:2px solid #b00020;background:#fff0f0;padding:.5em 1em}
img{max-width:640px;display:block;margin:.5em 0}figure{margin:1.5em 0}
"""


def render_html(results: list[FileResult], outdir: Path, pictures: dict[str, Path | None]) -> Path:
    """``report.html`` in ``outdir``: counts, failures, metrics table, then one picture per file.
    ``pictures`` maps an input path to its picture (or None)."""
    outdir = Path(outdir)
    c, names, esc = counts(results), metric_names(results), html.escape
    parts = [f"<!doctype html><meta charset='utf-8'><title>Restore batch report</title><style>{_STYLE}</style>",
             (f"<h1>Restore batch: {c['done']} done, {c['skipped']} skipped, "
              f"<span class='{'failed' if c['failed'] else ''}'>{c['failed']} failed</span> of {c['total']}</h1>")]
    failed = [r for r in results if r.status == "failed"]
    if failed:
        parts.append("<div class='failures'><h2>Failed</h2><ul>" + "".join(
            f"<li><b>{esc(Path(r.input).name)}</b>: {esc(r.error or '')}</li>" for r in failed) + "</ul></div>")
    pairs = before_after_pairs(names)
    paired = {n for _, b, a in pairs for n in (b, a)}
    others = [m for m in names if m not in paired]
    header = "".join(f"<th>{h}</th>" for h in ["file", "kind", "status", "seconds",
                     *[f"{esc(p[0])}: before &rarr; after" for p in pairs], *[esc(m) for m in others]])
    rows = []
    for r in results:
        flat = flat_metrics(r.metrics)
        cells = [esc(Path(r.input).name) if r.status == "failed" else
                 f"<a href='{esc(_relative(r.output, outdir))}'>{esc(Path(r.input).name)}</a>",
                 r.kind, f"<span class='{r.status}'>{r.status}</span>", f"{r.seconds:.2f}"]
        for label, b, a in pairs:
            if b in flat and a in flat:
                verdict = improved(label, flat[b], flat[a])
                css = "" if verdict is None else ("better" if verdict else "worse")
                cells.append(f"<span class='{css}'>{_number(flat[b])} &rarr; {_number(flat[a])}</span>")
            else:
                cells.append("")
        cells += [esc(_number(flat.get(m))) for m in others]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    parts.append("<h2>Files</h2><p>Green: better after restoration; red: worse. Click a name for the restored "
                 f"file.</p><table><tr>{header}</tr>{''.join(rows)}</table>")
    for r in results:
        picture = pictures.get(r.input)
        if picture:
            flat = flat_metrics(r.metrics)
            caption = "; ".join(f"{esc(label)} {_number(flat[b])} &rarr; {_number(flat[a])}"
                                for label, b, a in pairs if b in flat and a in flat)
            parts.append(f"<figure><img src='{esc(_relative(picture, outdir))}' alt='{esc(Path(r.input).name)}'>"
                         f"<figcaption><b>{esc(Path(r.input).name)}</b> {caption}</figcaption></figure>")
    text = "\n".join(parts) + "\n"
    atomic_write(outdir / REPORT_HTML, lambda tmp: tmp.write_text(text))
    return outdir / REPORT_HTML


def _relative(path: str | Path, outdir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(outdir.resolve()))
    except ValueError:
        return Path(path).resolve().as_uri()
