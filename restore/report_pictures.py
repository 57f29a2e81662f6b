"""Before/after pictures of the batch report, drawn as arrays and written with Pillow.

MRI: the middle sagittal, coronal and axial slices of input, output and their difference (one 3x3
mosaic). Audio: spectrograms before and after on one dB scale, with a strip between them marking
the regions the sidecar lists (gaps, clipped runs, clicks) at their times.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from restore.batch import FileResult, split_suffix
from restore.outputs import atomic_write
from restore.report_content import marked_spans

# Drawn as arrays and written with Pillow, not matplotlib figures: a figure cost 1.4 s per file under
# load, more than restoring a small file, and it holds the GIL, so pictures serialised a threaded batch.

TILE_PX = 200  # longest side of one MRI slice or the width of a spectrogram, in pixels
GAP_PX = 4
LABEL_PX = 18  # height of a text line
FONT_PX = 13


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


MARK_COLOURS = {"clipped": (230, 120, 0), "click": (0, 150, 60)}  # any other kind (gaps): blue
GAP_COLOUR = (20, 110, 230)
STRIP_PX = 14


def region_strip(spans: list[tuple[float, float, str]], seconds: float, width: int) -> np.ndarray:
    """(STRIP_PX, width, 3) uint8: light grey, with each (start_s, stop_s, kind) span drawn at its
    place on the 0-``seconds`` time axis (at least 2 px wide, so a click stays visible)."""
    strip = np.full((STRIP_PX, width, 3), 235, np.uint8)
    for start, stop, kind in spans:
        lo = int(np.clip(start / seconds * width, 0, width - 2)) if seconds > 0 else 0
        hi = max(lo + 2, int(np.ceil(np.clip(stop / seconds * width, 0, width)))) if seconds > 0 else 0
        strip[:, lo:hi] = MARK_COLOURS.get(kind, GAP_COLOUR)
    return strip


def mosaic(tiles: list[list[np.ndarray]], title: str, row_labels: list[str], column_labels: list[str]):
    """One Pillow image: title, column labels, then the tiles on a grid with row labels on the left."""
    from PIL import Image, ImageDraw, ImageFont

    heights = [max(t.shape[0] for t in row) for row in tiles]
    widths = [max(row[j].shape[1] for row in tiles) for j in range(len(tiles[0]))]
    left, top = 80, 2 * LABEL_PX + GAP_PX
    font = ImageFont.load_default(size=FONT_PX)  # Pillow's bundled font: no system fonts needed
    width = max(left + sum(widths) + GAP_PX * len(widths), int(font.getlength(title)) + 2 * GAP_PX)
    canvas = Image.new("RGB", (width, top + sum(heights) + GAP_PX * len(heights)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP_PX, 1), title, fill="black", font=font)
    y = top
    for i, row in enumerate(tiles):
        x = left
        draw.text((GAP_PX, y + heights[i] // 2 - LABEL_PX // 2), row_labels[i], fill="black", font=font)
        for j, tile in enumerate(row):
            if i == 0 and column_labels:
                draw.text((x, LABEL_PX + 1), column_labels[j], fill="black", font=font)
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
        from restore.mri.io import load_volume  # NIfTI or a DICOM series, in and out

        volume_in = load_volume(result.input, series_uid=(result.record or {}).get("input", {}).get("series_uid"))
        zooms = tuple(float(z) for z in volume_in.header.get_zooms()[:3])
        tiles = mri_tiles(volume_in.data, load_volume(result.output).data, zooms)
        image = mosaic(tiles, title, ["input", "output", "difference"], ["sagittal", "coronal", "axial"])
    else:
        import soundfile as sf

        samples_in, sr_in = sf.read(result.input, dtype="float32", always_2d=True)
        samples_out, sr_out = sf.read(result.output, dtype="float32", always_2d=True)
        seconds = len(samples_in) / sr_in
        before, after = audio_tiles(samples_in, samples_out, sr_in, sr_out)
        spans = marked_spans(result.record)
        heading = f"{title}: spectrogram, 0-{seconds:.1f} s, 0-{sr_in / 2000:g} kHz, 80 dB range"
        if spans:
            image = mosaic([before, [region_strip(spans, seconds, before[0].shape[1])], after],
                           heading + "; marked: gaps blue, clipped orange, clicks green",
                           ["before", "marked", "after"], [])
        else:
            image = mosaic([before, after], heading, ["before", "after"], [])
    atomic_write(target, lambda tmp: image.save(tmp, format="PNG"))
    return target
