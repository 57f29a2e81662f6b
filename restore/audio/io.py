"""Audio files at the edge: probe, validate, read blocks, write in the input's format (soundfile).

Blocks are ``(frames, channels)`` float32 in [-1, 1] full scale. Nothing is resampled here.
Bad input raises :class:`InputError` with what was wrong and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from restore.errors import InputError

# output suffix -> libsndfile major format
FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}
SILENCE_PEAK = 1e-6  # a file whose peak stays below this (-120 dBFS) is "all silent"
SCAN_FRAMES = 1 << 18
MAX_CHANNELS = 64  # more is refused: a hostile header could ask for 1024 channels of 2^18-frame blocks
MIN_SR, MAX_SR = 1_000, 768_000  # Hz; below 1 kHz a 16 kHz model rate would resample one sample into >16


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sr: int
    channels: int
    frames: int
    format: str  # libsndfile major format, e.g. "WAV"
    subtype: str  # e.g. "PCM_16", "FLOAT", "VORBIS"

    @property
    def seconds(self) -> float:
        return self.frames / self.sr


def load_info(path: Path) -> AudioInfo:
    """Probe ``path``: readable, a supported suffix and format, and not empty."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"unsupported audio file type {path.name!r} (expected {', '.join(FORMATS)})")
    if not path.is_file():
        raise InputError(f"input not found: {path}")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise InputError(f"cannot read {path.name} as audio ({e}); expected WAV, FLAC, OGG or MP3") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise InputError(f"{path.name} holds no audio samples (empty file)")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise InputError(f"{path.name} declares {info.channels} channels (1..{MAX_CHANNELS} are supported)")
    if not MIN_SR <= info.samplerate <= MAX_SR:
        raise InputError(f"{path.name} declares a sample rate of {info.samplerate} Hz "
                         f"({MIN_SR}..{MAX_SR} Hz are supported)")
    return AudioInfo(path, int(info.samplerate), int(info.channels), int(info.frames), info.format, info.subtype)


def read_block(info: AudioInfo, start: int, stop: int) -> np.ndarray:
    """Samples ``[start, stop)`` as ``(stop - start, channels)`` float32."""
    with sf.SoundFile(str(info.path)) as f:
        f.seek(start)
        block = f.read(stop - start, dtype="float32", always_2d=True)
    if block.shape[0] < stop - start:  # some decoders (MP3) report a few frames too many
        block = np.pad(block, ((0, stop - start - block.shape[0]), (0, 0)))
    return block


def read_all(path: Path, *, max_frames: int | None = None) -> tuple[np.ndarray, int]:
    """Whole file (or its first ``max_frames``) as ``(frames, channels)`` float32, and its rate."""
    samples, sr = sf.read(str(path), frames=-1 if max_frames is None else max_frames, dtype="float32", always_2d=True)
    return samples, int(sr)


@dataclass(frozen=True)
class OutputFormat:
    format: str
    subtype: str

    @property
    def is_integer(self) -> bool:
        return self.subtype.startswith(("PCM_", "ULAW", "ALAW")) or self.subtype in ("DPCM_8", "DPCM_16")


def output_format(info: AudioInfo, output_path: Path) -> OutputFormat:
    """The input's format and subtype, unless the output suffix asks for another format."""
    suffix = Path(output_path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"unsupported output file type {Path(output_path).name!r} (expected {', '.join(FORMATS)})")
    fmt = FORMATS[suffix]
    if fmt == info.format and sf.check_format(fmt, info.subtype):
        return OutputFormat(fmt, info.subtype)
    return OutputFormat(fmt, sf.default_subtype(fmt))


class AudioWriter:
    """Sequential writer; integer subtypes get samples clipped to [-1, 1], and the count is kept."""

    def __init__(self, path: Path, sr: int, channels: int, fmt: OutputFormat) -> None:
        self._file = sf.SoundFile(str(path), "w", samplerate=sr, channels=channels, format=fmt.format, subtype=fmt.subtype)
        self._clip = fmt.is_integer or fmt.format in ("OGG", "MP3")
        self.clipped = 0

    def write(self, block: np.ndarray) -> None:
        if self._clip:
            over = np.abs(block) > 1.0
            if over.any():
                self.clipped += int(over.sum())
                block = np.clip(block, -1.0, 1.0)
        self._file.write(block)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioWriter:  # noqa: PYI034 - a plain class, never subclassed
        return self

    def __exit__(self, *exc) -> None:
        self.close()
