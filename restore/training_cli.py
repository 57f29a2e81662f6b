"""``restore train {mri,audio} --config FILE`` and ``restore data prepare --out DIR``."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

TRAINERS = {"mri": "restore.mri.train", "audio": "restore.audio.train"}
DEFAULT_CONFIGS = {"mri": "configs/mri_denoise.yaml", "audio": "configs/audio_denoise.yaml"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (reproduces the shipped weights; resumable)")
    p.add_argument("modality", choices=sorted(TRAINERS))
    p.add_argument("--config", type=Path, help="training config (default: configs/<modality>_denoise.yaml)")
    p.set_defaults(func=_train)
    d = sub.add_parser("data", help="prepare training data from installed packages")
    d.add_argument("action", choices=["prepare"])
    d.add_argument("--out", type=Path, default=Path("data"), help="output folder (default: data/)")
    d.set_defaults(func=_prepare)


def _train(args: argparse.Namespace) -> int:
    config = args.config or Path(DEFAULT_CONFIGS[args.modality])
    importlib.import_module(TRAINERS[args.modality]).main(config)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from restore.audio.data import prepare

    prepare(args.out)
    return 0
