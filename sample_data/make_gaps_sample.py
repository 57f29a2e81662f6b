"""Rebuild sample_data/music_gaps_{clean,noisy}.wav from installed Debian packages (see LICENSES.md).

Clean: 6 s of wesnoth's ``knolls.ogg`` (held out of training), stereo, resampled to 22.05 kHz.
"Noisy": the same with three dropouts (digital silence) of 40 ms (both channels), 120 ms (left
only) and 250 ms (both). Run: ``.venv/bin/python sample_data/make_gaps_sample.py``.
"""

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

MUSIC = "/usr/share/games/wesnoth/1.16/data/core/music/knolls.ogg"
SR = 22050
START_S, SECONDS = 62.0, 6.0
DROPOUTS = [(1.00, 0.040, (0, 1)), (2.50, 0.120, (0,)), (4.00, 0.250, (0, 1))]  # start s, length s, channels
HERE = Path(__file__).resolve().parent

music, sr = sf.read(MUSIC, dtype="float32", always_2d=True, start=int(START_S * 44100),
                    frames=int(SECONDS * 44100))
clean = soxr.resample(music, sr, SR).astype(np.float32)
clean *= 0.9 / np.abs(clean).max()
damaged = clean.copy()
for start, length, channels in DROPOUTS:
    a = int(start * SR)
    damaged[a : a + int(length * SR), list(channels)] = 0.0
sf.write(HERE / "music_gaps_clean.wav", clean, SR, subtype="PCM_16")
sf.write(HERE / "music_gaps_noisy.wav", damaged, SR, subtype="PCM_16")
print(f"wrote music_gaps_clean.wav and music_gaps_noisy.wav: {SECONDS} s stereo at {SR} Hz, {len(DROPOUTS)} dropouts")
