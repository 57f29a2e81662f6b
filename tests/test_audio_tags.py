"""Audio metadata survives `restore audio`: WAV INFO and bext, FLAC and OGG Vorbis comments, MP3 ID3.

Each test makes its own tagged file (tags written with mutagen or RIFF chunks packed here, not with
the code under test), restores it with ``--task fill`` (a clean short file: nothing to fill, fast)
and reads the tags back.
"""

from __future__ import annotations

import io
import struct
import tracemalloc

import mutagen
import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC, Picture
from mutagen.id3 import COMM, ID3, TIT2, TPE1, TXXX

from restore import __version__, cli
from restore.audio import tags
from restore.audio.pipeline import restore_audio

SR = 16000
NOTE = f"restored by restore {__version__}"


def _samples(seconds: float = 0.5, channels: int = 2) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] + 0.01 * rng.standard_normal((len(t), channels))
    return tone.astype(np.float32)


def _chunk(cid: bytes, payload: bytes) -> bytes:
    return cid + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)


def _wav_with(path, *before_data: bytes, after_data: bytes = b"") -> None:
    """A PCM_16 WAV whose chunks are fmt, ``before_data``..., data, ``after_data``."""
    buf = io.BytesIO()
    sf.write(buf, _samples(), SR, format="WAV", subtype="PCM_16")
    raw = buf.getvalue()
    fmt_end = 12 + 8 + struct.unpack("<I", raw[16:20])[0]
    body = b"WAVE" + raw[12:fmt_end] + b"".join(before_data) + raw[fmt_end:] + after_data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def _info(**items: str) -> bytes:
    return _chunk(b"LIST", b"INFO" + b"".join(_chunk(k.encode(), v.encode() + b"\0") for k, v in items.items()))


def _bext(history: bytes) -> bytes:
    fixed = (b"Interview, reel 4".ljust(256, b"\0") + b"Archive A".ljust(32, b"\0") + b"REF-0042".ljust(32, b"\0")
             + b"1987-05-04" + b"12:30:00" + struct.pack("<QH", 123456789, 2) + bytes(range(64))
             + struct.pack("<5h", -2300, 800, -100, -1500, -1800) + b"\0" * 180)
    assert len(fixed) == 602
    return fixed + history


def _restore(src, dst) -> dict:
    return restore_audio(src, dst, task="fill", progress=False)


def _riff_payloads(path) -> dict[bytes, bytes]:
    raw = path.read_bytes()
    out, pos = {}, 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        out[cid] = raw[pos + 8:pos + 8 + size]
        pos += 8 + size + (size & 1)
    return out


def test_wav_info_is_copied_with_the_note_after_the_users_comment(tmp_path):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    _wav_with(src, _info(INAM="Reel 4", IART="Ann Example", ICRD="1987", ICMT="side A", IENG="J. Doe"))
    record = _restore(src, dst)
    with sf.SoundFile(str(dst)) as f:  # what libsndfile (and so most players) reads back
        assert (f.title, f.artist, f.date) == ("Reel 4", "Ann Example", "1987")
        assert f.comment == f"side A\n{NOTE}"
    info = _riff_payloads(dst)[b"LIST"]
    assert b"IENGJ. Doe" not in info and b"IENG\x07\x00\x00\x00J. Doe\x00" in info  # libsndfile cannot carry IENG
    assert record["tags"]["copied"] == ["INAM", "IART", "ICRD", "ICMT", "IENG"] and not record["tags"]["problems"]
    assert np.array_equal(sf.read(str(dst), dtype="int16")[0], sf.read(str(src), dtype="int16")[0])


def test_wav_bext_is_copied_byte_exactly_and_coding_history_gets_one_line(tmp_path):
    src, dst = tmp_path / "in.wav", tmp_path / "out.wav"
    history = b"A=ANALOGUE,M=stereo,T=Studer A807\r\nA=PCM,F=16000,W=16,M=stereo,T=capture\r\n"
    payload = _bext(history)
    _wav_with(src, _chunk(b"bext", payload), _chunk(b"iXML", b"<BWFXML><NOTE>x</NOTE></BWFXML>"))
    _restore(src, dst)
    out = _riff_payloads(dst)
    assert out[b"bext"][:602 + len(history)] == payload  # fixed fields and old history, byte for byte
    added = out[b"bext"][602 + len(history):]
    assert added == f"A=PCM,F=16000,W=16,M=stereo,T={NOTE}\r\n".encode()
    assert out[b"iXML"] == b"<BWFXML><NOTE>x</NOTE></BWFXML>"
    assert next(iter(out)) == b"bext"  # before fmt, where broadcast tools look first
    assert np.array_equal(sf.read(str(dst), dtype="int16")[0], sf.read(str(src), dtype="int16")[0])


def test_flac_vorbis_comments_and_picture_are_copied(tmp_path):
    src, dst = tmp_path / "in.flac", tmp_path / "out.flac"
    sf.write(str(src), _samples(), SR, subtype="PCM_16")
    audio = FLAC(str(src))
    audio["TITLE"], audio["ARTIST"] = "Reel 4", ["Ann Example", "Bo Example"]
    audio["COMMENT"], audio["ARCHIVE_ID"] = "side A", "A-1987-04"
    picture = Picture()
    picture.type, picture.mime, picture.data = 3, "image/png", b"\x89PNG fake cover"
    audio.add_picture(picture)
    audio.save()
    _restore(src, dst)
    out = FLAC(str(dst))
    assert out["ARTIST"] == ["Ann Example", "Bo Example"] and out["ARCHIVE_ID"] == ["A-1987-04"]
    assert out["COMMENT"] == ["side A", NOTE]  # the user's comment kept, the note appended
    assert [p.data for p in out.pictures] == [b"\x89PNG fake cover"]
    assert np.array_equal(sf.read(str(dst), dtype="int16")[0], sf.read(str(src), dtype="int16")[0])


def test_ogg_vorbis_comments_are_copied_and_samples_match_an_untagged_run(tmp_path):
    plain, tagged = tmp_path / "plain.ogg", tmp_path / "tagged.ogg"
    sf.write(str(plain), _samples(), SR, format="OGG", subtype="VORBIS")
    tagged.write_bytes(plain.read_bytes())
    audio = mutagen.File(str(tagged))
    audio["TITLE"], audio["DATE"], audio["ORGANIZATION"] = "Reel 4", "1987-05-04", "Archive A"
    audio.save()
    _restore(plain, tmp_path / "plain_out.ogg")
    record = _restore(tagged, tmp_path / "tagged_out.ogg")
    out = mutagen.File(str(tmp_path / "tagged_out.ogg"))
    assert out["TITLE"] == ["Reel 4"] and out["ORGANIZATION"] == ["Archive A"] and out["COMMENT"] == [NOTE]
    assert "ORGANIZATION" in [name.upper() for name in record["tags"]["copied"]]
    a, b = (sf.read(str(tmp_path / f"{n}_out.ogg"))[0] for n in ("plain", "tagged"))
    assert np.array_equal(a, b)  # tags change no decoded sample


def test_mp3_id3_frames_are_copied(tmp_path):
    plain, tagged = tmp_path / "plain.mp3", tmp_path / "tagged.mp3"
    sf.write(str(plain), _samples(1.0), SR, format="MP3")
    tagged.write_bytes(plain.read_bytes())
    id3 = ID3()
    id3.add(TIT2(encoding=3, text=["Reel 4"]))
    id3.add(TPE1(encoding=3, text=["Ann Example"]))
    id3.add(TXXX(encoding=3, desc="archive id", text=["A-1987-04"]))
    id3.add(COMM(encoding=3, lang="eng", desc="", text=["side A"]))
    id3.save(str(tagged))
    _restore(plain, tmp_path / "plain_out.mp3")
    _restore(tagged, tmp_path / "tagged_out.mp3")
    out = ID3(str(tmp_path / "tagged_out.mp3"))
    assert str(out["TIT2"]) == "Reel 4" and str(out["TXXX:archive id"]) == "A-1987-04"
    assert str(out["COMM::eng"]) == "side A" and str(out["COMM:restore:XXX"]) == NOTE
    a, b = (sf.read(str(tmp_path / f"{n}_out.mp3"))[0] for n in ("plain", "tagged"))
    assert np.array_equal(a, b)


def test_wav_tags_map_to_flac_and_what_has_no_place_is_listed(tmp_path):
    src, dst = tmp_path / "in.wav", tmp_path / "out.flac"
    _wav_with(src, _chunk(b"bext", _bext(b"")), _info(INAM="Reel 4", ICMT="side A"))
    record = _restore(src, dst)
    out = FLAC(str(dst))
    assert out["TITLE"] == ["Reel 4"] and out["COMMENT"] == ["side A", NOTE]
    assert record["tags"]["dropped"] == ["bext"]


def test_cli_restore_keeps_tags(tmp_path):
    src, dst = tmp_path / "in.flac", tmp_path / "out.flac"
    sf.write(str(src), _samples(), SR)
    audio = FLAC(str(src))
    audio["TITLE"] = "Reel 4"
    audio.save()
    assert cli.main(["audio", str(src), "-o", str(dst), "--task", "fill", "--quiet"]) == 0
    assert FLAC(str(dst))["TITLE"] == ["Reel 4"]


def test_a_lying_chunk_size_is_reported_without_a_large_read(tmp_path):
    src = tmp_path / "in.wav"
    hostile = b"LIST" + struct.pack("<I", 0xFFFFFFF0) + b"INFO"  # claims 4 GiB in a ~32 kB file
    _wav_with(src, _info(INAM="Reel 4"), after_data=hostile)
    tracemalloc.start()
    found = tags.read_tags(src, "WAV")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20
    assert found.info == ((b"INAM", b"Reel 4"),)  # what came before the lie is kept
    assert "claims 4294967280 bytes" in found.problems[0]
    record = _restore(src, tmp_path / "out.wav")  # libsndfile reads the audio; the tags after the lie are gone
    assert "claims 4294967280 bytes" in record["tags"]["problems"][0]
    with sf.SoundFile(str(tmp_path / "out.wav")) as f:
        assert f.title == "Reel 4"


def test_a_lying_info_item_and_an_oversized_chunk_are_skipped(tmp_path, monkeypatch):
    src = tmp_path / "in.wav"
    items = _chunk(b"INAM", b"Reel 4\0") + b"IART" + struct.pack("<I", 1 << 30) + b"Ann"
    _wav_with(src, _chunk(b"LIST", b"INFO" + items), _chunk(b"iXML", b"x" * 300))
    monkeypatch.setattr(tags, "MAX_CHUNK_BYTES", 200)
    found = tags.read_tags(src, "WAV")
    assert found.info == ((b"INAM", b"Reel 4"),) and found.chunks == ()
    assert any("'IART' claims 1073741824 bytes" in p for p in found.problems)
    assert any("'iXML' chunk of 300 bytes is over" in p for p in found.problems)


@pytest.mark.parametrize("history, expected", [
    (b"", b"A=PCM\r\n"), (b"A=X\r\n\0\0\0\0", b"A=X\r\nA=PCM\r\n"), (b"A=X", b"A=X\r\nA=PCM\r\n")])
def test_coding_history_line_goes_after_the_old_history_and_before_padding(history, expected):
    payload = _bext(history)
    out = tags.bext_with_history(payload, "A=PCM")
    assert out[:602] == payload[:602] and out[602:] == expected


def test_flac_tags_map_to_mp3_frames(tmp_path):
    src, dst = tmp_path / "in.flac", tmp_path / "out.mp3"
    sf.write(str(src), _samples(1.0), SR)
    audio = FLAC(str(src))
    audio["title"], audio["comment"], audio["ARCHIVE_ID"] = "Reel 4", ["side A", "take 2"], "A-1"
    audio.save()
    record = _restore(src, dst)
    out = ID3(str(dst))
    assert str(out["TIT2"]) == "Reel 4" and out["COMM::XXX"].text == ["side A", "take 2"]
    assert str(out["COMM:restore:XXX"]) == NOTE and record["tags"]["dropped"] == ["ARCHIVE_ID"]
