"""Process a long file in overlapping chunks joined with raised-cosine crossfades (bounded memory).

Chunk ``k`` covers ``[k * (chunk - overlap), ... + chunk)``; neighbours share ``overlap`` frames
where the earlier chunk fades out as the later fades in (weights sum to 1). Only one chunk and
one overlap tail are held in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    stop: int


def plan_chunks(frames: int, chunk: int, overlap: int) -> list[Chunk]:
    """Chunks over ``[0, frames)``; each one after the first overlaps the previous by ``overlap``.

    Every chunk is longer than ``overlap``; a file shorter than ``chunk`` is one chunk.
    """
    if not 0 <= overlap < chunk:
        raise ValueError(f"overlap must be 0..chunk-1, got overlap={overlap}, chunk={chunk}")
    step = chunk - overlap
    chunks, start = [], 0
    while True:
        stop = min(start + chunk, frames)
        chunks.append(Chunk(len(chunks), start, stop))
        if stop >= frames:
            return chunks
        start += step


def crossfade(n: int) -> np.ndarray:
    """Raised-cosine fade-in of ``n`` samples, ``(n, 1)``; ``1 - fade`` is the matching fade-out."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)).astype(np.float32)[:, None] if n else np.zeros((0, 1), np.float32)


def stream_chunks(
    chunks: list[Chunk],
    read: Callable[[Chunk], np.ndarray],
    process: Callable[[Chunk, np.ndarray], np.ndarray],
) -> Iterator[np.ndarray]:
    """Yield finished output blocks in order; their concatenation has the input's length.

    ``read(chunk) -> (n, C)`` and ``process(chunk, block) -> (n, C)`` see one chunk at a time.
    """
    tail: np.ndarray | None = None  # the previous chunk's output over its overlap with this one
    for i, chunk in enumerate(chunks):
        out = process(chunk, read(chunk))
        if tail is not None:
            fade = crossfade(tail.shape[0])
            out[: tail.shape[0]] = tail * (1 - fade) + out[: tail.shape[0]] * fade
        if i + 1 < len(chunks):
            keep = chunks[i + 1].start - chunk.start
            tail = out[keep:].copy()
            yield out[:keep]
        else:
            yield out
