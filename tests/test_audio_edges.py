"""Edge inputs of the audio pipeline (issue 23, item 7): each is restored or passed through with its
geometry kept (rate, channels, subtype, length), or refused with one line and exit 2, never a traceback."""

import struct

import numpy as np
import pytest
import soundfile as sf

from restore.audio.pipeline import restore_audio
from restore.cli import main


def tone(frames: int, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(frames) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    return np.stack([x * (0.5 + 0.1 * c) for c in range(channels)], axis=1).astype(np.float32)


def geometry(path) -> tuple:
    info = sf.info(str(path))
    return info.samplerate, info.channels, info.subtype, info.format, info.frames


def run_cli(src, dst, capsys) -> tuple[int, str]:
    code = main(["audio", str(src), "-o", str(dst), "--quiet"])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("frames", [1, 2, 100])
def test_very_short_files_pass_through_unchanged(tmp_path, capsys, frames):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, tone(frames, 16000) + 0.1, 16000, subtype="PCM_16")
    code, err = run_cli(src, dst, capsys)
    assert code == 0, err
    assert geometry(dst) == geometry(src)
    np.testing.assert_array_equal(sf.read(dst, dtype="int16")[0], sf.read(src, dtype="int16")[0])
    notes = restore_audio(src, dst, overwrite=True, progress=False)["metrics"]["notes"]
    assert any("too short" in n for n in notes)


@pytest.mark.parametrize("task", ["auto", "denoise", "fill"])
def test_silence_passes_through_with_a_note(tmp_path, task):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, np.zeros((8000, 2), np.float32), 16000, subtype="PCM_24")
    record = restore_audio(src, dst, task=task, progress=False)
    assert geometry(dst) == geometry(src)
    assert not sf.read(dst)[0].any()
    assert not record["params"]["denoised"] and any("silent" in n for n in record["metrics"]["notes"])


def test_short_file_with_nan_is_refused(tmp_path, capsys):
    src = tmp_path / "in.wav"
    x = tone(50, 16000)
    x[10] = np.nan
    sf.write(src, x, 16000, subtype="FLOAT")
    code, err = run_cli(src, tmp_path / "out.wav", capsys)
    assert code == 2 and "NaN" in err and "\n" not in err
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("sr,channels,subtype,seconds", [
    (48000, 6, "PCM_24", 1.0),  # 5.1
    (8000, 1, "PCM_U8", 1.5),  # 8-bit telephone-rate transfer
    (192000, 2, "PCM_24", 0.5),
])
def test_unusual_geometry_is_kept(tmp_path, capsys, sr, channels, subtype, seconds):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, tone(int(seconds * sr), sr, channels), sr, subtype=subtype)
    code, err = run_cli(src, dst, capsys)
    assert code == 0, err
    assert geometry(dst) == geometry(src)


def test_wav_whose_data_chunk_claims_more_than_the_file_holds(tmp_path, capsys):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    sf.write(src, tone(16000, 16000), 16000, subtype="PCM_16")
    data = bytearray(src.read_bytes())
    at = data.find(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 0x7FFFFF00)  # ~2 GB of samples declared, 32 kB present
    src.write_bytes(bytes(data))
    code, err = run_cli(src, dst, capsys)
    assert code == 0, err
    assert sf.info(str(dst)).frames == 16000  # the frames that exist, no padding up to the claim


def test_flac_that_declares_hours_it_does_not_hold_is_refused(tmp_path, capsys):
    src = tmp_path / "in.flac"
    sf.write(src, tone(16000, 16000), 16000, subtype="PCM_16")
    data = bytearray(src.read_bytes())
    assert data[:4] == b"fLaC"
    fields = int.from_bytes(data[18:26], "big")  # STREAMINFO: rate, channels, bits, 36-bit total samples
    fields = (fields & ~((1 << 36) - 1)) | (16000 * 3600 * 10)
    data[18:26] = fields.to_bytes(8, "big")
    src.write_bytes(bytes(data))
    code, err = run_cli(src, tmp_path / "out.flac", capsys)
    assert code == 2 and err.startswith("restore: error:") and "\n" not in err, err
    assert not (tmp_path / "out.flac").exists()


@pytest.mark.parametrize("sr,channels,what", [(500, 1, "sample rate"), (16000, 100, "channels")])
def test_hostile_geometry_is_refused_before_reading(tmp_path, capsys, sr, channels, what):
    src = tmp_path / "in.wav"
    sf.write(src, np.zeros((64, channels), np.float32) + 0.1, sr, subtype="PCM_16")
    code, err = run_cli(src, tmp_path / "out.wav", capsys)
    assert code == 2 and what in err and "\n" not in err, err
