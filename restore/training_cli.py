"""``restore train {mri,audio} --config FILE`` and ``restore data prepare --out DIR``."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

TRAINERS = {"mri": "restore.mri.train", "audio": "restore.audio.train", "audio-inpaint": "restore.audio.train_inpaint"}
DEFAULT_CONFIGS = {"mri": "configs/mri_denoise.yaml", "audio": "configs/audio_denoise.yaml",
                   "audio-inpaint": "configs/audio_inpaint.yaml"}


def trainer(modality: str):
    """The training module of ``modality`` (it has ``main(config_path)`` and ``load_config(path)``)."""
    if modality not in TRAINERS:
        raise ValueError(f"modality must be one of {sorted(TRAINERS)}, got {modality!r}")
    return importlib.import_module(TRAINERS[modality])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (reproduces the shipped weights; resumable)")
    p.add_argument("modality", choices=sorted(TRAINERS))
    p.add_argument("--config", type=Path, help=f"training config (default: {DEFAULT_CONFIGS})")
    p.set_defaults(func=_train)
    d = sub.add_parser("data", help="prepare training data from installed packages")
    d.add_argument("action", choices=["prepare"])
    d.add_argument("--out", type=Path, default=Path("data"), help="output folder (default: data/)")
    d.set_defaults(func=_prepare)


def _train(args: argparse.Namespace) -> int:
    config = args.config or Path(DEFAULT_CONFIGS[args.modality])
    trainer(args.modality).main(config)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from restore.audio.data import prepare

    prepare(args.out)
    return 0
