"""The frozen config base every trainer extends, and the one YAML loader (unknown keys are an error)."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Literal, TypeVar

import yaml

from restore.errors import InputError
from restore.nets.unet import UNetConfig

# names the MRI configs used before the trainers shared one config base (still accepted)
RENAMED = {"steps": "max_steps", "ema": "ema_decay", "warmup": "lr_warmup_steps", "output": "weights",
           "checkpoint_dir": "run_dir", "validate_every": "val_every"}


@dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """What the shared loop (:func:`restore.training.train`) reads; a model's config adds its data fields.

    The learning rate warms up linearly over ``lr_warmup_steps``, then follows a cosine from ``lr``
    down to ``lr * lr_final_fraction``: over ``max_steps`` (``lr_decay: steps``) or over the
    ``wall_clock_minutes`` budget (``lr_decay: wall_clock``). The EMA decay is ``ema_decay``, or with
    ``ema_warmup`` ``min(ema_decay, (1 + step) / (10 + step))``. Training stops at ``max_steps`` or
    once ``wall_clock_minutes`` of training time (over all resumes) are spent.
    """

    run_dir: str  # checkpoint.safetensors + checkpoint.json: resumable
    weights: str  # the exported EMA weights (+ their card next to them)
    seed: int = 0
    threads: int = 1
    bf16: bool = True
    batch_size: int = 8
    lr: float = 1e-3
    lr_warmup_steps: int = 200
    lr_final_fraction: float = 0.1
    lr_decay: Literal["steps", "wall_clock"] = "wall_clock"
    ema_decay: float = 0.999
    ema_warmup: bool = True
    max_steps: int = 20_000
    wall_clock_minutes: float = math.inf  # total training time over all resumes
    checkpoint_every: int = 200
    val_every: int = 500

    def problems(self) -> list[str]:
        """What is wrong with the values (empty when valid); subclasses add their own."""
        checks = [
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.lr_warmup_steps >= 1, f"lr_warmup_steps must be >= 1, got {self.lr_warmup_steps}"),
            (0 < self.lr_final_fraction <= 1, f"lr_final_fraction must be in (0, 1], got {self.lr_final_fraction}"),
            (self.lr_decay in ("steps", "wall_clock"), f"lr_decay must be steps or wall_clock, got {self.lr_decay!r}"),
            (0 < self.ema_decay < 1, f"ema_decay must be in (0, 1), got {self.ema_decay}"),
            (self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.wall_clock_minutes > 0, f"wall_clock_minutes must be > 0, got {self.wall_clock_minutes}"),
            (self.lr_decay == "steps" or math.isfinite(self.wall_clock_minutes),
             "lr_decay wall_clock needs a finite wall_clock_minutes"),
            (self.checkpoint_every >= 1 and self.val_every >= 1, "checkpoint_every and val_every must be >= 1"),
        ]
        return [message for ok, message in checks if not ok]

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise InputError(f"{type(self).__name__}: {'; '.join(problems)}")


C = TypeVar("C", bound=TrainingConfig)


def _tuples(value):
    """YAML lists -> tuples, recursively (frozen configs hold no lists)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def load_config(path: Path | str, kind: type[C]) -> C:
    """Read the YAML at ``path`` into ``kind``; unknown or missing keys and bad values are an InputError.

    Lists become tuples; a ``model`` mapping becomes a :class:`UNetConfig`; the old MRI names
    (:data:`RENAMED`) are read as their new ones.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise InputError(f"cannot read config {path}: {e}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping at the top level")
    for old, new in RENAMED.items():
        if old in raw and new not in raw:
            raw[new] = raw.pop(old)
    known = {f.name: f for f in fields(kind)}
    unknown = set(raw) - set(known)
    if unknown:
        raise InputError(f"{path}: unknown keys {sorted(unknown)} (allowed: {sorted(known)})")
    missing = sorted(name for name, f in known.items()
                     if name not in raw and f.default is MISSING and f.default_factory is MISSING)
    if missing:
        raise InputError(f"{path}: missing {missing}")
    values = {k: v if k in ("augment",) else _tuples(v) for k, v in raw.items()}
    if isinstance(values.get("model"), dict):
        try:
            values["model"] = UNetConfig.from_dict(values["model"])
        except (TypeError, ValueError) as e:
            raise InputError(f"{path}: model: {e}") from None
    try:
        return kind(**values)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: {e}") from None

