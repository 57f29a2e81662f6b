"""File-level gap filling and declipping: detect regions in a streaming pass, fill them, patch blocks.

    pass 1: peak, per-channel extremes, non-finite samples      (io blocks, bounded memory)
    pass 2: dropouts, NaN runs, candidate clipped runs per block  (+ the user's --gaps)
    fill:   regions grouped into jobs with context -> inpaint.fill_samples at the file's rate
    write:  blocks read from the input with the fills patched in (:class:`Patched`)

Only the samples inside regions are replaced; every other sample is read from the input as is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from restore.audio import declick, gaps, io
from restore.audio.inpaint import InpaintModel, fill_samples
from restore.device import single_threaded_blas
from restore.errors import InputError

BLOCK_SECONDS = 20.0
CONTEXT_SECONDS = 0.5  # input on each side of a region that the fill sees
MAX_JOB_SECONDS = 4.0  # a chain of nearby regions is split into jobs of about this length
MAX_UNKNOWN_SHARE = 0.5  # more unknown than this in a file is refused (nothing left to fill from)
FILL_KINDS = {"fill": ("dropout", "nan", "marked"), "declip": ("clipped",), "denoise": (),
              "auto": ("dropout", "nan", "marked", "clipped", "click")}


@dataclass
class Scan:
    peak: float
    extremes: np.ndarray  # (channels, 2): max and min of the finite samples
    nonfinite: int
    frames: int  # frames actually decoded (a header can declare more than the file holds)
    lsb: float = gaps.SILENCE  # the grid step of the samples (1/128 for 8-bit), never below 16-bit's

    @property
    def silent(self) -> bool:
        """Every finite sample below :data:`io.SILENCE_PEAK` (-120 dBFS)."""
        return self.peak < io.SILENCE_PEAK


def scan(info: io.AudioInfo) -> Scan:
    """Pass 1 over the file (blocks of at most ~2^18 samples); an undecodable file is an InputError."""
    peak, nonfinite, frames, grid = 0.0, 0, 0, 0  # grid: gcd of the samples in 16-bit steps, 1 once finer
    extremes = np.stack([np.full(info.channels, -np.inf), np.full(info.channels, np.inf)], axis=1)
    try:
        with sf.SoundFile(str(info.path)) as f:
            for block in f.blocks(blocksize=max(1 << 12, io.SCAN_FRAMES // info.channels), dtype="float32",
                                  always_2d=True):
                frames += block.shape[0]
                finite = np.isfinite(block)
                nonfinite += int((~finite).sum())
                clean = np.where(finite, block, 0.0)
                peak = max(peak, float(np.abs(clean).max(initial=0.0)))
                extremes[:, 0] = np.maximum(extremes[:, 0], np.where(finite, block, -np.inf).max(axis=0))
                extremes[:, 1] = np.minimum(extremes[:, 1], np.where(finite, block, np.inf).min(axis=0))
                if grid != 1:
                    grid = _grid_steps(clean, grid)
    except sf.LibsndfileError as e:
        raise InputError(f"cannot decode {info.path.name} ({e}); its header may not match its data") from None
    if frames == 0:
        raise InputError(f"{info.path.name} declares {info.frames} frames but holds none that can be decoded")
    return Scan(peak, extremes, nonfinite, min(frames, info.frames), max(grid, 1) * gaps.SILENCE)


def _grid_steps(block: np.ndarray, grid: int) -> int:
    """The gcd of ``grid`` and the samples of ``block`` in 16-bit steps (1 if any lies off that grid)."""
    steps = block * 32768.0  # exact in float32: a power of two
    ints = np.rint(steps)
    if not np.array_equal(ints, steps):
        return 1
    return int(np.gcd.reduce(np.abs(ints.astype(np.int64)).ravel(), initial=grid))


def detect(info: io.AudioInfo, found: Scan, *, task: str,
           marked: list[tuple[float, float]] | None = None) -> list[gaps.Region]:
    """Pass 2: the regions ``task`` fills (see :data:`FILL_KINDS`), merged and sorted."""
    kinds = FILL_KINDS[task]
    if found.nonfinite and "nan" not in kinds:
        raise InputError(f"{info.path.name} contains {found.nonfinite} NaN or infinite samples "
                         f"(--task {task} does not fill them; use --task auto or fill)")
    regions: list[gaps.Region] = []
    inside = np.zeros((info.channels, 2), np.int64)  # samples just inside each extreme (gaps.near_level_count)
    if kinds:
        block, margin = int(BLOCK_SECONDS * info.sr), int((gaps.AROUND_SECONDS + gaps.MAX_DROPOUT_SECONDS) * info.sr)
        for start in range(0, info.frames, block):
            stop = min(start + block, info.frames)
            lo, hi = max(0, start - margin), min(info.frames, stop + margin)
            x = io.read_block(info, lo, hi)
            for c in range(info.channels):
                if "dropout" in kinds:
                    regions += [r for r in gaps.find_dropouts(x[:, c], info.sr, c, lo, lsb=found.lsb)
                                if start <= r.start < stop]
                if "nan" in kinds:
                    regions += gaps.find_nan(x[:, c], c, lo)
                if "click" in kinds:
                    own = x[start - lo : stop - lo, c]
                    regions += declick.find_clicks(own, info.sr, c, start, lsb=found.lsb)
                if "clipped" in kinds:
                    regions += gaps.find_clipped(x[:, c], tuple(found.extremes[c]), c, lo)
                    own = x[start - lo : stop - lo, c]
                    inside[c] += [gaps.near_level_count(own, level, found.lsb) for level in found.extremes[c]]
    if "clipped" in kinds:
        regions = [r for r in regions if r.kind != "clipped"] + _confirmed_clipping(
            [r for r in gaps.merge(regions) if r.kind == "clipped"], found, inside)
    if marked:
        regions += gaps.marked_regions(marked, info.sr, info.frames, info.channels)
    regions = _clicks_apart(gaps.merge(regions))
    unknown = sum(r.stop - r.start for r in regions)
    if unknown > MAX_UNKNOWN_SHARE * info.frames * info.channels:
        raise InputError(f"{info.path.name}: {unknown / (info.frames * info.channels):.0%} of the samples would have "
                         "to be filled; too little is left to fill from")
    return regions


def _clicks_apart(regions: list[gaps.Region]) -> list[gaps.Region]:
    """``regions`` without the clicks that overlap another region of their channel (a dropout's edge
    or a clipped peak reads as impulsive too; that region's own fill covers it)."""
    spans: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for c in {r.channel for r in regions}:
        others = sorted((r.start, r.stop) for r in regions if r.channel == c and r.kind != "click")
        starts = np.array([a for a, _ in others], np.int64)
        reach = np.maximum.accumulate(np.array([b for _, b in others], np.int64)) if others else starts
        spans[c] = (starts, reach)  # reach[i]: the furthest stop among the first i + 1 others

    def free(r: gaps.Region) -> bool:
        starts, reach = spans[r.channel]
        i = int(np.searchsorted(starts, r.stop))  # others that start before the click ends
        return i == 0 or reach[i - 1] <= r.start

    return [r for r in regions if r.kind != "click" or free(r)]


def _confirmed_clipping(candidates: list[gaps.Region], found: Scan, inside: np.ndarray) -> list[gaps.Region]:
    """Keep a channel's clipped runs at a level only if it is a clip level (:func:`gaps.is_clip_level`:
    full scale or a plateau, and a spike over the grid levels just inside it)."""
    out = []
    for c, level in {(r.channel, r.level) for r in candidates}:
        runs = [r for r in candidates if (r.channel, r.level) == (c, level)]
        near = int(inside[c, 0 if level > 0 else 1])
        if gaps.is_clip_level(level, sum(r.stop - r.start for r in runs), near, lsb=found.lsb):
            out += runs
    return out


@dataclass
class Fills:
    """Filled values per channel: ``{channel: [(start, values), ...]}`` at the file's rate."""

    by_channel: dict[int, list[tuple[int, np.ndarray]]] = field(default_factory=dict)
    # (channel, start, stop) -> the fill's gain on pseudo-gaps next to that run (inpaint.shrink_weight)
    gains: dict[tuple[int, int, int], float] = field(default_factory=dict)
    _index: dict = field(default_factory=dict, repr=False)

    def gain_of(self, region: gaps.Region) -> float | None:
        """The pseudo-gap gain of the filled run that holds ``region``, if one was measured."""
        for (c, a, b), beta in self.gains.items():
            if c == region.channel and a <= region.start and region.stop <= b:
                return beta
        return None

    def peak(self) -> float:
        return max((float(np.abs(v).max()) for runs in self.by_channel.values() for _, v in runs if v.size), default=0.0)

    def patch(self, block: np.ndarray, start: int) -> np.ndarray:
        """``block`` (frames ``[start, start + len)``) with the filled values written in (a copy)."""
        out = block.copy()
        stop = start + block.shape[0]
        for c, runs in self.by_channel.items():
            if c not in self._index:
                runs.sort(key=lambda r: r[0])
                self._index[c] = (np.array([a for a, _ in runs]), max(v.size for _, v in runs))
            starts, longest = self._index[c]
            for i in range(np.searchsorted(starts, start - longest), np.searchsorted(starts, stop)):
                a, values = runs[i]
                b = a + values.size
                if a < stop and b > start:
                    lo, hi = max(a, start), min(b, stop)
                    out[lo - start : hi - start, c] = values[lo - a : hi - a]
        return out

    def add(self, channel: int, start: int, values: np.ndarray) -> None:
        self.by_channel.setdefault(channel, []).append((start, values))
        self._index.pop(channel, None)


def jobs(regions: list[gaps.Region], sr: int, frames: int) -> Iterator[tuple[int, int, int, list[gaps.Region]]]:
    """``(channel, lo, hi, regions)``: nearby regions of one channel with :data:`CONTEXT_SECONDS` around them."""
    ctx, longest = int(CONTEXT_SECONDS * sr), int(MAX_JOB_SECONDS * sr)
    for c in sorted({r.channel for r in regions}):
        group: list[gaps.Region] = []
        for r in sorted((r for r in regions if r.channel == c), key=lambda r: r.start):
            if group and (r.start - ctx > group[-1].stop + ctx or r.stop - group[0].start > longest):
                yield c, max(0, group[0].start - ctx), min(frames, max(g.stop for g in group) + ctx), group
                group = []
            group.append(r)
        if group:
            yield c, max(0, group[0].start - ctx), min(frames, max(g.stop for g in group) + ctx), group


def fill_regions(info: io.AudioInfo, regions: list[gaps.Region], model: InpaintModel | None, *, seed: int = 0,
                 steps: int | None = None, progress: bool = True) -> Fills:
    """Compute the filled values of every region (``model=None``: the AR baseline only)."""
    with single_threaded_blas():
        return _fill_regions(info, regions, model, seed=seed, steps=steps, progress=progress)


def _fill_regions(info: io.AudioInfo, regions: list[gaps.Region], model: InpaintModel | None, *, seed: int,
                  steps: int | None, progress: bool) -> Fills:
    fills = Fills()
    planned = list(jobs(regions, info.sr, info.frames))
    # per channel, regions by start: a job's window finds its regions by bisection, not by a scan
    by_channel: dict[int, list[gaps.Region]] = {}
    for r in sorted(regions, key=lambda r: r.start):
        by_channel.setdefault(r.channel, []).append(r)
    starts = {c: np.array([r.start for r in rs]) for c, rs in by_channel.items()}
    longest = {c: max(r.stop - r.start for r in rs) for c, rs in by_channel.items()}
    bar = tqdm(total=len(planned), unit="gap", desc=f"fill {info.path.name}", disable=not progress or not planned)
    for i, (c, lo, hi, group) in enumerate(planned):
        x = io.read_block(info, lo, hi)[:, c].astype(np.float64)
        known = np.isfinite(x)
        levels = np.zeros_like(x)
        first, last = np.searchsorted(starts[c], [lo - longest[c], hi])
        for r in by_channel[c][first:last]:  # every region of this channel inside the window is unknown here
            if r.stop > lo:
                a, b = max(r.start, lo) - lo, min(r.stop, hi) - lo
                known[a:b] = False
                levels[a:b] = r.level
        if all(r.kind == "click" for r in group):  # short impulses: a local LSAR fill, no network
            filled = declick.fill_clicks(np.where(known, x, 0.0), known, info.sr)
            for r in group:
                fills.add(c, r.start, filled[r.start - lo : r.stop - lo].astype(np.float32))
            bar.update(1)
            continue
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        def on_gain(a: int, b: int, beta: float, c: int = c, lo: int = lo) -> None:
            fills.gains[(c, lo + a, lo + b)] = round(beta, 3)

        filled = fill_samples(model, np.where(known, x, 0.0), known, sr=info.sr,
                              levels=levels if levels.any() else None, steps=steps, generator=generator,
                              on_gain=on_gain)
        for r in group:
            fills.add(c, r.start, filled[r.start - lo : r.stop - lo].astype(np.float32))
        bar.update(1)
    bar.close()
    return fills
