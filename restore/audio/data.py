"""Build the speech-denoising training and validation sets from Debian packages that install offline.

``prepare(out_dir)`` writes ``out_dir/audio/``:

- ``{train,val}_{speech,noise}.npy``: int16 mono at 16 kHz (the model rate), all clips of a split
  concatenated; ``manifest.json`` lists every clip's source file, start and length, so training
  crops stay inside one clip.

Sources (see ``sample_data/LICENSES.md`` for licences):

- speech: ``asterisk-core-sounds-{en,es,fr,ru}-g722`` (16 kHz G.722 prompts, decoded with ffmpeg) and
  ``fillets-ng-data-{cs,nl}`` voice acting (22.05 kHz Vorbis, resampled with soxr);
- noise: ``megaglest-data`` ambiences, ``lincity-ng-data`` city/industry sounds, fillets-ng effects;
- music (for the gap-filling model, :mod:`restore.audio.inpaint`): ``wesnoth-1.16-music`` and the
  fillets-ng soundtrack (``fillets-ng-data``), written as ``{train,val}_music.npy``.

Held out for validation and the benchmark: the Russian Asterisk speaker (one speaker and language)
and the noises in :data:`VAL_NOISES` (two forest tilesets, industry and traffic, two bubble effects),
and the music tracks in :data:`VAL_MUSIC`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SR = 16_000
ASTERISK = Path("/usr/share/asterisk/sounds")
FILLETS = Path("/usr/share/games/fillets-ng/sound")
MEGAGLEST = Path("/usr/share/games/megaglest/tilesets")
LINCITY = Path("/usr/share/games/lincity-ng/sounds")
WESNOTH_MUSIC = Path("/usr/share/games/wesnoth/1.16/data/core/music")
FILLETS_MUSIC = Path("/usr/share/games/fillets-ng/music")

TRAIN_LANGS = ("en", "es", "fr")
VAL_LANG = "ru"
# substrings of a noise file's path that put it in the validation split
VAL_NOISES = ("tilesets/autumn/", "tilesets/dark_forest/", "/Industry", "/Trafic", "sp-bubles_04", "sp-bubles_05")
# music tracks held out for validation and bench/audio_gaps.py (file names)
VAL_MUSIC = ("battle-epic.ogg", "elvish-theme.ogg", "heroes_rite.ogg", "knolls.ogg", "revelation.ogg",
             "the_city_falls.ogg", "kufrik.ogg", "rybky05.ogg")


@dataclass(frozen=True)
class Source:
    package: str
    files: list[Path]


def _require(package: str, files: list[Path], where: Path) -> Source:
    if not files:
        raise FileNotFoundError(
            f"no audio from Debian package {package} under {where}: install it with `apt-get install {package}`"
        )
    return Source(package, sorted(files))


def find_sources() -> dict[str, list[Source]]:
    """All source files by role (``speech_train``, ``speech_val``, ``noise``); fails if a package is missing."""
    speech_train = []
    for lang in TRAIN_LANGS:
        root = ASTERISK / lang
        files = [p for p in root.rglob("*.g722") if "silence" not in p.parts] if root.exists() else []
        speech_train.append(_require(f"asterisk-core-sounds-{lang}-g722", files, root))
    for lang in ("cs", "nl"):
        files = list(FILLETS.glob(f"*/{lang}/*.ogg")) + list(FILLETS.glob(f"*/*/{lang}/*.ogg"))
        speech_train.append(_require(f"fillets-ng-data-{lang}", files, FILLETS))
    root = ASTERISK / VAL_LANG
    files = [p for p in root.rglob("*.g722") if "silence" not in p.parts] if root.exists() else []
    speech_val = [_require(f"asterisk-core-sounds-{VAL_LANG}-g722", files, root)]
    noise = [
        _require("megaglest-data", [p for p in MEGAGLEST.glob("*/sounds/*") if p.suffix in (".ogg", ".wav")], MEGAGLEST),
        _require("lincity-ng-data", list(LINCITY.glob("*.wav")), LINCITY),
        _require("fillets-ng-data", list(FILLETS.glob("share/sp-*.ogg")), FILLETS / "share"),
    ]
    music = [
        _require("wesnoth-1.16-music", list(WESNOTH_MUSIC.glob("*.ogg")), WESNOTH_MUSIC),
        _require("fillets-ng-data", list(FILLETS_MUSIC.glob("*.ogg")), FILLETS_MUSIC),
    ]
    return {"speech_train": speech_train, "speech_val": speech_val, "noise": noise, "music": music}


def _decode(path: Path, tmp: Path) -> np.ndarray:
    """Mono float32 at 16 kHz; G.722 goes through ffmpeg, everything else through soundfile + soxr."""
    if path.suffix == ".g722":
        wav = tmp / (path.stem + f"-{abs(hash(str(path)))}.wav")
        subprocess.run(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "g722", "-i", str(path), str(wav)], check=True
        )
        samples, sr = sf.read(wav, dtype="float32", always_2d=True)
        wav.unlink()
    else:
        samples, sr = sf.read(path, dtype="float32", always_2d=True)
    samples = samples.mean(axis=1)
    if sr != SR:
        samples = soxr.resample(samples, sr, SR, quality="HQ").astype(np.float32)
    return samples


def _collect(sources: list[Source], tmp: Path, *, min_seconds: float) -> tuple[np.ndarray, list[dict]]:
    files = [(s.package, f) for s in sources for f in s.files]
    with ThreadPoolExecutor(max_workers=2) as pool:
        decoded = list(pool.map(lambda pf: _decode(pf[1], tmp), files))
    clips, index, start = [], [], 0
    for (package, path), samples in zip(files, decoded):
        peak = float(np.abs(samples).max()) if samples.size else 0.0
        if samples.size < min_seconds * SR or peak < 1e-3:
            continue
        clips.append(samples / max(peak, 1.0))
        index.append({"package": package, "file": str(path), "start": start, "length": int(samples.size)})
        start += samples.size
    audio = np.concatenate(clips) if clips else np.zeros(0, np.float32)
    return (np.clip(audio, -1, 1) * 32767).round().astype(np.int16), index


def prepare(out_dir: Path) -> Path:
    """Decode every source into ``out_dir/audio/`` and return that folder (see the module docstring)."""
    if shutil.which("ffmpeg") is None:
        raise FileNotFoundError("ffmpeg is needed to decode G.722 speech: install it with `apt-get install ffmpeg`")
    sources = find_sources()
    noise_train = [Source(s.package, [f for f in s.files if not any(k in str(f) for k in VAL_NOISES)]) for s in sources["noise"]]
    noise_val = [Source(s.package, [f for f in s.files if any(k in str(f) for k in VAL_NOISES)]) for s in sources["noise"]]
    music_train = [Source(s.package, [f for f in s.files if f.name not in VAL_MUSIC]) for s in sources["music"]]
    music_val = [Source(s.package, [f for f in s.files if f.name in VAL_MUSIC]) for s in sources["music"]]
    folder = Path(out_dir) / "audio"
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"sr": SR, "val_language": VAL_LANG, "val_noises": list(VAL_NOISES), "splits": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, srcs, min_s in [
            ("train_speech", sources["speech_train"], 0.5),
            ("val_speech", sources["speech_val"], 0.5),
            ("train_noise", noise_train, 0.2),
            ("val_noise", noise_val, 0.2),
            ("train_music", music_train, 2.0),
            ("val_music", music_val, 2.0),
        ]:
            audio, index = _collect(srcs, Path(tmp), min_seconds=min_s)
            np.save(folder / f"{name}.npy", audio, allow_pickle=False)
            manifest["splits"][name] = {"seconds": audio.size / SR, "clips": index}
            print(f"{name}: {len(index)} clips, {audio.size / SR / 60:.1f} min")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return folder
