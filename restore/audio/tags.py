"""Audio metadata kept from input to output: tags read before restoring, written into the output.

What is kept (``read_tags`` on the input, ``write_tags`` on the freshly written output file,
before it is renamed into place):

- WAV: the ``LIST``/``INFO`` chunk (every subchunk, bytes as they were), ``bext`` (Broadcast
  WAV, copied byte-exactly except that CodingHistory gets one line appended), ``iXML`` and
  ``axml``. Read by a bounded RIFF walker: every chunk size is checked against the file size and
  a metadata chunk larger than :data:`MAX_CHUNK_BYTES` is skipped, so a lying size never makes
  a large read.
- FLAC and OGG Vorbis: every Vorbis comment, in order (and FLAC pictures), through mutagen.
- MP3: every ID3v2 frame, through mutagen.

Across containers (``-o out.flac`` from a WAV) the common fields are mapped (title, artist,
album, date, comment, genre, copyright, track number, ...); what has no counterpart (bext, an
ID3 frame without a Vorbis name) is listed in ``TagReport.dropped``.

Every output gets the note ``restored by restore <version>``: appended as one more COMMENT
value (Vorbis), one more COMM frame (ID3), on a new line after the user's ICMT (WAV INFO), and
as a CodingHistory line in ``bext``. Only metadata is touched: the audio bytes are copied as
written (WAV, FLAC, MP3) or the pages re-framed around the new comment header (OGG), so the
decoded samples are bit-identical to an output without tags.
"""

from __future__ import annotations

import base64
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import mutagen
from mutagen.flac import FLAC, Picture
from mutagen.id3 import COMM, ID3, ID3NoHeaderError, TextFrame
from mutagen.id3 import Frames as ID3_FRAMES

from restore import __version__

MAX_CHUNK_BYTES = 4 << 20  # a metadata chunk above 4 MiB is skipped, not read
MAX_CHUNKS = 4096  # a RIFF file with more chunks than this is not walked further
RIFF_LIMIT = 0xFFFFFFFF  # a RIFF size field is 32 bits: a WAV that would pass it gets no tags
COPIED_CHUNKS = (b"bext", b"iXML", b"axml")  # byte-exact, besides LIST/INFO
BEXT_FIXED = 602  # bytes of bext before CodingHistory (EBU Tech 3285 v2)
COPY_BLOCK = 1 << 20
NOTE = f"restored by restore {__version__}"

# Vorbis comment name <-> RIFF INFO id <-> ID3v2.4 text frame (the fields all three can hold)
INFO_IDS = {"TITLE": b"INAM", "ARTIST": b"IART", "ALBUM": b"IPRD", "DATE": b"ICRD", "COMMENT": b"ICMT",
            "GENRE": b"IGNR", "COPYRIGHT": b"ICOP", "ENCODER": b"ISFT", "TRACKNUMBER": b"ITRK",
            "ENGINEER": b"IENG", "KEYWORDS": b"IKEY", "SUBJECT": b"ISBJ", "SOURCE": b"ISRC",
            "TECHNICIAN": b"ITCH", "LANGUAGE": b"ILNG", "COMMISSIONED": b"ICMS", "MEDIUM": b"IMED"}
ID3_IDS = {"TITLE": "TIT2", "ARTIST": "TPE1", "ALBUM": "TALB", "DATE": "TDRC", "GENRE": "TCON",
           "COPYRIGHT": "TCOP", "ENCODER": "TSSE", "TRACKNUMBER": "TRCK", "ALBUMARTIST": "TPE2",
           "COMPOSER": "TCOM", "ENGINEER": "TPE4", "LANGUAGE": "TLAN", "ISRC": "TSRC"}
VORBIS_OF_INFO = {v: k for k, v in INFO_IDS.items()}
VORBIS_OF_ID3 = {v: k for k, v in ID3_IDS.items()}


@dataclass(frozen=True)
class Tags:
    """Metadata of one input file. ``comments``: (NAME, value) pairs, Vorbis-comment style, in file
    order, for every container; the native parts let a same-container copy keep everything."""

    container: str  # libsndfile major format of the input: "WAV", "FLAC", "OGG", "MP3"
    comments: tuple[tuple[str, str], ...] = ()
    info: tuple[tuple[bytes, bytes], ...] = ()  # WAV: INFO subchunks (id, raw text), in order
    chunks: tuple[tuple[bytes, bytes], ...] = ()  # WAV: bext / iXML / axml (id, payload)
    pictures: tuple[bytes, ...] = ()  # FLAC picture blocks (as mutagen writes them)
    id3: ID3 | None = None  # MP3: the whole tag
    problems: tuple[str, ...] = ()  # what could not be read, one line each


@dataclass
class TagReport:
    """What ``write_tags`` did, for the sidecar: names of what was copied and what was dropped."""

    copied: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    note: str = NOTE

    def record(self) -> dict:
        return {"copied": self.copied, "dropped": self.dropped, "problems": self.problems, "note": self.note}


# ---------------------------------------------------------------- RIFF (bounded)


@dataclass(frozen=True)
class Chunk:
    id: bytes
    offset: int  # of the payload, in bytes from the start of the file
    size: int  # payload bytes (without the pad byte)


def riff_chunks(f, file_size: int) -> tuple[list[Chunk], list[str]]:
    """The top-level chunks of a RIFF/WAVE file open in ``f`` (``file_size`` bytes), and problems.

    Walks headers only. A chunk whose size runs past the end of the file ends the walk (a ``data``
    chunk is kept, clipped to the file: truncated recordings are common); nothing is read here."""
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return [], ["not a RIFF/WAVE file: no chunks read"]
    chunks, problems, pos = [], [], 12
    while pos + 8 <= file_size and len(chunks) < MAX_CHUNKS:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            break
        cid, size = header[:4], struct.unpack("<I", header[4:])[0]
        end = pos + 8 + size
        if end > file_size:
            if cid == b"data":
                chunks.append(Chunk(cid, pos + 8, file_size - pos - 8))
            else:
                problems.append(f"{cid.decode('latin-1')!r} chunk at byte {pos} claims {size} bytes but the file "
                                f"has {file_size - pos - 8} left: stopped reading chunks there")
            break
        chunks.append(Chunk(cid, pos + 8, size))
        pos = end + (size & 1)
    return chunks, problems


def _read_wav(path: Path) -> Tags:
    size = path.stat().st_size
    info, copied = [], []
    with open(path, "rb") as f:
        chunks, problems = riff_chunks(f, size)
        for chunk in chunks:
            wanted = chunk.id in COPIED_CHUNKS or chunk.id == b"LIST"
            if not wanted:
                continue
            if chunk.size > MAX_CHUNK_BYTES:
                problems.append(f"{chunk.id.decode('latin-1')!r} chunk of {chunk.size} bytes is over the "
                                f"{MAX_CHUNK_BYTES} byte limit: not copied")
                continue
            f.seek(chunk.offset)
            payload = f.read(chunk.size)
            if chunk.id == b"LIST":
                if payload[:4] == b"INFO":
                    items, bad = _info_items(payload[4:])
                    info.extend(items)
                    problems.extend(bad)
            else:
                copied.append((chunk.id, payload))
    comments = tuple((VORBIS_OF_INFO.get(cid, cid.decode("latin-1")), _text(raw)) for cid, raw in info)
    return Tags("WAV", comments, tuple(info), tuple(copied), problems=tuple(problems))


def _info_items(body: bytes) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    """INFO subchunks ``(id, text without the terminating NULs)``; a size past the LIST ends the list."""
    items, pos = [], 0
    while pos + 8 <= len(body):
        cid, size = body[pos:pos + 4], struct.unpack("<I", body[pos + 4:pos + 8])[0]
        if pos + 8 + size > len(body):
            name = cid.decode("latin-1")
            return items, [f"INFO item {name!r} claims {size} bytes past its LIST chunk: later INFO items dropped"]
        items.append((cid, body[pos + 8:pos + 8 + size].rstrip(b"\0")))
        pos += 8 + size + (size & 1)
    return items, []


def _text(raw: bytes) -> str:
    """INFO text has no declared encoding: UTF-8 when it decodes, else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _subchunk(cid: bytes, payload: bytes) -> bytes:
    return cid + struct.pack("<I", len(payload)) + payload + (b"\0" if len(payload) & 1 else b"")


def bext_with_history(payload: bytes, line: str) -> bytes:
    """``bext`` payload with ``line`` (+ CR LF) appended to CodingHistory; the fixed 602 bytes and
    the history already there are kept byte for byte (only trailing NUL padding is moved after it)."""
    if len(payload) < BEXT_FIXED:  # shorter than the standard: copy as it is, adding nothing
        return payload
    history = payload[BEXT_FIXED:]
    kept = history.rstrip(b"\0")
    if kept and not kept.endswith(b"\r\n"):
        kept += b"\r\n"
    return payload[:BEXT_FIXED] + kept + line.encode("ascii", "replace") + b"\r\n"


def _coding_history_line(sr: int, channels: int, bits: int | None) -> str:
    """One EBU R98 CodingHistory line for the restored output."""
    mode = {1: "mono", 2: "stereo"}.get(channels, f"{channels}ch")
    return f"A=PCM,F={sr},{f'W={bits},' if bits else ''}M={mode},T={NOTE}"


def _wav_metadata(tags: Tags, fmt: bytes, report: TagReport) -> tuple[list[bytes], list[bytes]]:
    """Chunks to write before ``fmt `` (bext) and before ``data`` (INFO, iXML, axml), note included."""
    channels, sr, bits = struct.unpack("<HI6xH", fmt[2:16]) if len(fmt) >= 16 else (0, 0, 0)
    front, back, info = [], [], []
    if tags.container == "WAV":
        for cid, payload in tags.chunks:
            if cid == b"bext":
                front.append(_subchunk(cid, bext_with_history(payload, _coding_history_line(sr, channels, bits))))
            else:
                back.append(_subchunk(cid, payload))
            report.copied.append(cid.decode("latin-1"))
        info = list(tags.info)
    else:
        for name, value in tags.comments:
            cid = INFO_IDS.get(name.upper())
            if cid is None:
                report.dropped.append(name)
            else:
                info.append((cid, value.encode("utf-8")))
    report.copied.extend(cid.decode("latin-1") for cid, _ in info)
    at = next((i for i, (cid, _) in enumerate(info) if cid == b"ICMT"), None)
    if at is None:
        info.append((b"ICMT", NOTE.encode()))
    else:  # the user's comment stays; the note goes on a new line after it
        info[at] = (b"ICMT", info[at][1] + b"\n" + NOTE.encode())
    back.insert(0, _subchunk(b"LIST", b"INFO" + b"".join(_subchunk(cid, text + b"\0") for cid, text in info)))
    return front, back


def _write_wav(path: Path, tags: Tags, report: TagReport) -> None:
    """Rewrite the WAV at ``path`` (as soundfile wrote it) with bext first and INFO/iXML/axml before
    ``data``; the chunks soundfile wrote are copied unchanged, the data chunk in 1 MiB blocks."""
    size = path.stat().st_size
    with open(path, "rb") as src:
        chunks, problems = riff_chunks(src, size)
        fmt = next((c for c in chunks if c.id == b"fmt "), None)
        if problems or fmt is None or not any(c.id == b"data" for c in chunks):
            report.problems.append("output is not a plain RIFF/WAVE file: no tags written")
            return
        src.seek(fmt.offset)
        front, back = _wav_metadata(tags, src.read(min(fmt.size, 64)), report)
        kept = [c for c in chunks if c.id not in (b"LIST", *COPIED_CHUNKS)]
        total = 4 + sum(len(b) for b in front + back) + sum(8 + c.size + (c.size & 1) for c in kept)
        if total > RIFF_LIMIT:
            report.problems.append("output too large for a RIFF size field with tags: no tags written")
            report.copied.clear()
            return
        tmp = path.with_name(path.name + ".tags")
        try:
            with open(tmp, "wb") as dst:
                dst.write(b"RIFF" + struct.pack("<I", total) + b"WAVE")
                dst.writelines(front)
                for c in kept:
                    if c.id == b"data":
                        dst.writelines(back)
                    src.seek(c.offset - 8)
                    _copy(src, dst, 8 + c.size + (c.size & 1))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


def _copy(src, dst, n: int) -> None:
    while n > 0:
        block = src.read(min(COPY_BLOCK, n))
        if not block:
            dst.write(b"\0" * n)  # a pad byte soundfile left out at the very end
            return
        dst.write(block)
        n -= len(block)


# ---------------------------------------------------------------- Vorbis comments and ID3 (mutagen)


def _read_mutagen(path: Path, container: str) -> Tags:
    if container == "MP3":
        try:
            id3 = ID3(str(path))
        except ID3NoHeaderError:
            return Tags("MP3")
        comments = []
        for frame in id3.values():
            if isinstance(frame, COMM):
                comments.extend(("COMMENT", str(t)) for t in frame.text)
            elif frame.FrameID in VORBIS_OF_ID3 and isinstance(frame, TextFrame):
                comments.extend((VORBIS_OF_ID3[frame.FrameID], str(t)) for t in frame.text)
        return Tags("MP3", tuple(comments), id3=id3)
    audio = _vorbis_file(path)
    comments = tuple((str(k), str(v)) for k, v in (audio.tags or []))
    pictures = tuple(p.write() for p in getattr(audio, "pictures", []))
    return Tags(container, comments, pictures=pictures)


def _vorbis_file(path: Path):
    """mutagen's FLAC, OggVorbis, OggOpus, ... for ``path`` (Vorbis comments in every case)."""
    audio = mutagen.File(str(path))
    if audio is None:
        raise ValueError("not a FLAC or Ogg file mutagen knows")
    return audio


def _write_vorbis(path: Path, container: str, tags: Tags, report: TagReport) -> None:
    audio = _vorbis_file(path)
    if audio.tags is None:
        audio.add_tags()
    audio.tags.clear()
    if tags.id3 is not None:  # frames with no Vorbis name
        report.dropped.extend(sorted({f.FrameID for f in tags.id3.values()
                                      if not isinstance(f, COMM) and f.FrameID not in VORBIS_OF_ID3}))
    report.dropped.extend(cid.decode("latin-1") for cid, _ in tags.chunks)
    comments = [(name, value) for name, value in tags.comments if _vorbis_name(name, report)]
    for name, value in comments:
        audio.tags.append((name, value))
    audio.tags.append(("COMMENT", NOTE))
    report.copied.extend(name for name, _ in comments)
    for block in tags.pictures:
        if isinstance(audio, FLAC):
            audio.add_picture(Picture(block))
        else:
            audio.tags.append(("METADATA_BLOCK_PICTURE", base64.b64encode(block).decode("ascii")))
        report.copied.append("picture")
    audio.save()


def _vorbis_name(name: str, report: TagReport) -> bool:
    """Vorbis field names are ASCII 0x20-0x7D without '='."""
    if name and all(0x20 <= ord(ch) <= 0x7D and ch != "=" for ch in name):
        return True
    report.dropped.append(name)
    return False


def _write_id3(path: Path, tags: Tags, report: TagReport) -> None:
    id3 = ID3()
    if tags.id3 is not None:
        for frame in tags.id3.values():
            id3.add(frame)
        report.copied.extend(f.FrameID for f in tags.id3.values())
    else:
        for name, value in tags.comments:
            if name.upper() == "COMMENT":
                _add_text(id3, COMM, "COMM::XXX", value, lang="XXX", desc="")
            elif name.upper() in ID3_IDS:
                frame_id = ID3_IDS[name.upper()]
                _add_text(id3, ID3_FRAMES[frame_id], frame_id, value)
            else:
                report.dropped.append(name)
                continue
            report.copied.append(name)
        report.dropped.extend(cid.decode("latin-1") for cid, _ in tags.chunks)
    _add_text(id3, COMM, "COMM:restore:XXX", NOTE, lang="XXX", desc="restore")
    id3.save(str(path), v2_version=4)


def _add_text(id3: ID3, frame_type, key: str, value: str, **fields) -> None:
    """Add ``value`` to the frame ``key`` (one more text of a repeated field), making the frame if needed."""
    old = id3.get(key)
    id3.add(frame_type(encoding=3, text=(list(old.text) if old else []) + [value], **fields))


# ---------------------------------------------------------------- entry points


def read_tags(path: Path, container: str) -> Tags:
    """Tags of the input ``path`` (libsndfile major format ``container``). Never raises for bad
    metadata: what cannot be read is skipped and named in ``Tags.problems``."""
    path = Path(path)
    try:
        if container == "WAV":
            return _read_wav(path)
        if container in ("FLAC", "OGG", "MP3"):
            return _read_mutagen(path, container)
    except (mutagen.MutagenError, OSError, ValueError, EOFError, struct.error) as e:
        return Tags(container, problems=(f"tags not readable ({type(e).__name__}: {e}): none copied",))
    return Tags(container, problems=(f"tags of {container} files are not copied",))


def write_tags(path: Path, container: str, tags: Tags) -> TagReport:
    """Write ``tags`` and the restore note into the output ``path`` (libsndfile major format
    ``container``), in place: call it on the temporary file before it is renamed to the output."""
    report = TagReport(problems=list(tags.problems))
    if container == "WAV":
        _write_wav(Path(path), tags, report)
    elif container in ("FLAC", "OGG"):
        _write_vorbis(Path(path), container, tags, report)
    elif container == "MP3":
        _write_id3(Path(path), tags, report)
    else:
        report.problems.append(f"tags are not written into {container} files")
    return report
