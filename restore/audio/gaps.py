"""Find what the inpainter must fill: dropouts, NaN runs, user-marked gaps and clipped runs.

All positions are frames at the file's own rate, per channel. A *dropout* is a run of digital
silence (``|x| <= 1 LSB`` of 16-bit audio) of at least :data:`MIN_DROPOUT_SECONDS` inside active
audio, judged from the level at its edges (5 ms on each side) against the loud level around it
(90th percentile of 5 ms RMS within :data:`AROUND_SECONDS`): either one edge is loud (a cut), or
neither edge falls towards digital silence (both above :data:`FLOOR_LSB`; a noise floor that
suddenly drops to exact zeros). A clean recording that fades into silence between phrases has
edges of a few LSB on both sides and is left alone. A *clipped run* is at least :data:`MIN_CLIP_RUN` samples
at the channel's extreme value, when that value is full scale or a plateau the signal keeps
hitting (:func:`clip_levels`), and that value holds far more samples than the quantisation levels just
inside it (:data:`SPIKE_RATIO`): on a coarse grid (an 8-bit transfer) a steady tone's peaks repeat the
top value for several samples without any clipping, but clipping piles samples up at one level.
``lsb`` is the file's grid step (its smallest sample spacing, never finer than 16-bit's); the
dropout floors scale with it, since an 8-bit recording rounds its quiet passages to exact zeros.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import numpy as np

from restore.errors import InputError

SILENCE = 1.0 / 32768  # one LSB of 16-bit audio
MIN_DROPOUT_SECONDS = 0.002
MAX_DROPOUT_SECONDS = 2.0  # longer digital silence is taken as intended (a pause, a track gap)
EDGE_SECONDS = 0.005  # the stretch on each side of a silent run whose level decides "active"
ACTIVE_RATIO = 0.1  # an edge is active if its RMS is >= this share of the loud level around it
FLOOR_LSB = 4.0  # edges above this many 16-bit LSB (RMS) on both sides do not fade into digital silence
ACTIVE_LSB = 32.0  # audio quieter than this (RMS, ~-60 dBFS) around a silent run is not "active"
AROUND_SECONDS = 0.5  # the loud level: 90th percentile of 5 ms RMS within this much on each side
CONFIDENT_SECONDS = 0.3  # longer gaps are filled but flagged low-confidence
MIN_CLIP_RUN = 2
FULL_SCALE = 1.0 - 2.0 / 32768
PLATEAU_MIN_SAMPLES = 8  # samples at the extreme (in runs >= MIN_CLIP_RUN) that make it a plateau
SPIKE_LEVELS = 4  # the grid levels just inside an extreme that it is compared with
SPIKE_RATIO = 3.0  # a clip level holds this many times more samples than each of those levels on average


@dataclass(frozen=True)
class Region:
    """Frames ``[start, stop)`` of ``channel`` to fill; ``level`` is the signed clip level of a clipped run."""

    channel: int
    start: int
    stop: int
    kind: str  # "dropout" | "nan" | "marked" | "clipped" | "click" (restore.audio.declick)
    level: float = 0.0

    def seconds(self, sr: int) -> float:
        return (self.stop - self.start) / sr

    def record(self, sr: int) -> dict:
        out = asdict(self) | {"start_s": round(self.start / sr, 6), "stop_s": round(self.stop / sr, 6)}
        out["confidence"] = "low" if self.kind != "clipped" and self.seconds(sr) > CONFIDENT_SECONDS else "normal"
        if self.kind != "clipped":
            del out["level"]
        return out


def runs(mask: np.ndarray) -> np.ndarray:
    """``(k, 2)`` start/stop of the runs of True in a 1-D mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return edges.reshape(-1, 2)


def parse_gaps(text: str) -> list[tuple[float, float]]:
    """``"1.20-1.35,4.00-4.10"`` (seconds) -> ``[(1.2, 1.35), (4.0, 4.1)]``; InputError when malformed."""
    spans = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+(?:\.\d*)?)\s*-\s*(\d+(?:\.\d*)?)", part)
        if not m or float(m.group(1)) >= float(m.group(2)):
            raise InputError(f"--gaps: cannot read {part!r}: expected START-STOP in seconds with START < STOP, "
                             "e.g. 1.20-1.35,4.00-4.10")
        spans.append((float(m.group(1)), float(m.group(2))))
    if not spans:
        raise InputError("--gaps is empty: expected START-STOP in seconds, e.g. 1.20-1.35")
    return spans


def marked_regions(spans: list[tuple[float, float]], sr: int, frames: int, channels: int) -> list[Region]:
    out = []
    for a, b in spans:
        start, stop = round(a * sr), min(round(b * sr), frames)
        if start >= frames:
            raise InputError(f"--gaps {a}-{b}: starts after the end of the file ({frames / sr:.3f} s)")
        out += [Region(c, start, stop, "marked") for c in range(channels)]
    return out


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _loud_level(x: np.ndarray, sr: int) -> float:
    """90th percentile of the 5 ms RMS of ``x``."""
    w = max(1, int(EDGE_SECONDS * sr))
    n = x.size // w
    if n == 0:
        return _rms(x)
    frames = np.sqrt(np.mean(np.square(x[: n * w].reshape(n, w), dtype=np.float64), axis=1))
    return float(np.percentile(frames, 90))


def find_dropouts(x: np.ndarray, sr: int, channel: int = 0, offset: int = 0, *, lsb: float = SILENCE) -> list[Region]:
    """Dropouts in one channel ``x: (L,)`` (NaN counts as non-silent here; see :func:`find_nan`);
    ``lsb``: the file's grid step (the edge floors are counted in it)."""
    lsb = max(lsb, SILENCE)
    silent = np.abs(np.nan_to_num(x, nan=1.0)) <= SILENCE
    edge, around = max(1, int(EDGE_SECONDS * sr)), int(AROUND_SECONDS * sr)
    out = []
    for start, stop in runs(silent):
        if not MIN_DROPOUT_SECONDS * sr <= stop - start <= MAX_DROPOUT_SECONDS * sr or start == 0 or stop == x.size:
            continue
        before, after = x[max(0, start - edge) : start], x[stop : stop + edge]
        context = np.concatenate([x[max(0, start - around) : start], x[stop : stop + around]])
        loud = _loud_level(np.nan_to_num(context), sr)
        edges = (_rms(np.nan_to_num(before)), _rms(np.nan_to_num(after)))
        cut = max(edges) >= max(ACTIVE_RATIO * loud, ACTIVE_LSB / 2 * SILENCE, 2 * FLOOR_LSB * lsb)
        if loud >= ACTIVE_LSB * SILENCE and (min(edges) > FLOOR_LSB * lsb or cut):
            out.append(Region(channel, offset + int(start), offset + int(stop), "dropout"))
    return out


def find_nan(x: np.ndarray, channel: int = 0, offset: int = 0) -> list[Region]:
    return [Region(channel, offset + int(a), offset + int(b), "nan") for a, b in runs(~np.isfinite(x))]


def clip_levels(x: np.ndarray, *, lsb: float = SILENCE) -> tuple[float | None, float | None]:
    """The positive and negative clip levels of one channel ``x: (L,)``, or None where it is not clipped
    (see :func:`is_clip_level`; ``lsb`` is the grid step)."""
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return None, None
    levels = []
    for extreme, sign in ((float(finite.max()), 1.0), (float(finite.min()), -1.0)):
        if sign * extreme <= SILENCE:
            levels.append(None)
            continue
        at = runs(x == extreme)
        long = at[(at[:, 1] - at[:, 0]) >= MIN_CLIP_RUN]
        count = int((long[:, 1] - long[:, 0]).sum()) if long.size else 0
        inside = near_level_count(finite, extreme, lsb)
        levels.append(extreme if is_clip_level(extreme, count, inside, lsb=lsb) else None)
    return levels[0], levels[1]


def near_level_count(x: np.ndarray, level: float, lsb: float) -> int:
    """Samples of ``x`` within :data:`SPIKE_LEVELS` grid steps inside ``level`` (towards zero), ``level`` excluded."""
    lsb = max(lsb, SILENCE)
    if level > 0:
        return int(((x < level) & (x >= level - SPIKE_LEVELS * lsb * (1 + 1e-6))).sum())
    return int(((x > level) & (x <= level + SPIKE_LEVELS * lsb * (1 + 1e-6))).sum())


def is_clip_level(level: float, count: int, inside: int = 0, *, lsb: float = SILENCE) -> bool:
    """A channel extreme held for ``count`` samples (in runs >= :data:`MIN_CLIP_RUN`) is a clip level when
    it is full scale (within a grid step) or a plateau of >= :data:`PLATEAU_MIN_SAMPLES` samples, and
    ``count`` is >= :data:`SPIKE_RATIO` times the mean count of the :data:`SPIKE_LEVELS` grid levels
    just inside it (``inside`` samples in all)."""
    full = abs(level) >= min(FULL_SCALE, 1.0 - 2 * max(lsb, SILENCE))
    spike = count >= SPIKE_RATIO * inside / SPIKE_LEVELS
    return count > 0 and (full or count >= PLATEAU_MIN_SAMPLES) and spike


def find_clipped(x: np.ndarray, levels: tuple[float | None, float | None], channel: int = 0,
                 offset: int = 0) -> list[Region]:
    out = []
    for level in levels:
        if level is None:
            continue
        for a, b in runs(x == level):
            if b - a >= MIN_CLIP_RUN:
                out.append(Region(channel, offset + int(a), offset + int(b), "clipped", float(level)))
    return out


def merge(regions: list[Region]) -> list[Region]:
    """Sorted regions with overlapping or touching ones of the same channel and kind joined."""
    out: list[Region] = []
    for r in sorted(regions, key=lambda r: (r.channel, r.kind, r.start)):
        last = out[-1] if out else None
        if last and (last.channel, last.kind, last.level) == (r.channel, r.kind, r.level) and r.start <= last.stop:
            out[-1] = Region(r.channel, last.start, max(last.stop, r.stop), r.kind, r.level)
        else:
            out.append(r)
    return sorted(out, key=lambda r: (r.start, r.channel))
