"""Weights as safetensors plus a JSON model card; loading never unpickles.

``name.safetensors`` holds the tensors, ``name.json`` the small machine-read card: ``name``,
``version``, ``config`` (a :class:`UNetConfig`), ``inference`` (the defaults the runtime uses, read
into a typed dataclass by :func:`read_settings`), ``training`` (steps, time, data and their hashes)
and ``metrics`` (the last in-training validation); ``name.md`` beside it is the card people read. The shipped models are package
data in ``restore/models/``, found through :func:`shipped_weights` (so an installed wheel has them).
"""

from __future__ import annotations

import json
import typing
from dataclasses import MISSING, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from restore.nets.unet import UNetConfig, UNetDenoiser
from restore.outputs import atomic_write


@dataclass(frozen=True)
class LoadedModel:
    model: UNetDenoiser
    card: dict

    @property
    def version(self) -> str:
        return str(self.card.get("version", "unknown"))

    @property
    def inference(self) -> dict[str, Any]:
        """The card's ``inference`` block (raw; :func:`read_settings` types it)."""
        return dict(self.card.get("inference", {}))


S = TypeVar("S")


def read_settings(kind: type[S], raw: dict[str, Any], where: str) -> S:
    """``raw`` (a card's ``inference`` block) as the frozen dataclass ``kind``.

    Unknown keys are an error; a missing key takes the field's default (a field without one is
    required); ``int`` fields need integers, ``bool`` fields booleans, ``float`` fields any number
    (stored as float).
    """
    hints = typing.get_type_hints(kind)
    known = {f.name: f for f in fields(kind)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown inference settings {sorted(unknown)} (allowed: {sorted(known)})")
    values = {}
    for name, f in known.items():
        if name not in raw:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{where}: inference setting {name} is missing")
            continue
        value, hint = raw[name], hints[name]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = {bool: isinstance(value, bool), int: number and isinstance(value, int), float: number}.get(hint, True)
        if not ok:
            raise ValueError(f"{where}: inference setting {name} must be {hint.__name__}, got {value!r}")
        values[name] = float(value) if hint is float else value
    return kind(**values)


SHIPPED = ("mri_denoise", "mri_fill", "audio_denoise", "audio_inpaint")


def shipped_weights(name: str) -> Path:
    """The path of a shipped model's safetensors inside the installed package (``restore/models/``)."""
    if name not in SHIPPED:
        raise ValueError(f"no shipped model {name!r} (shipped: {', '.join(SHIPPED)})")
    return Path(str(resources.files("restore").joinpath("models", f"{name}.safetensors")))


def card_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_model(model: UNetDenoiser, weights: Path, card: dict) -> None:
    """Write ``weights`` (safetensors) and its card next to it, both atomically."""
    weights = Path(weights)
    card = {**card, "config": model.config.to_dict()}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda tmp: save_file(state, str(tmp), metadata={"version": str(card.get("version", ""))}))
    atomic_write(card_path(weights), lambda tmp: tmp.write_text(json.dumps(card, indent=2) + "\n"))


def load_model(weights: Path, *, device: torch.device | str = "cpu") -> LoadedModel:
    """Rebuild the network from the card's config and load the safetensors, checking every shape."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"model weights not found: {weights}")
    if not card_path(weights).is_file():
        raise FileNotFoundError(f"model card not found next to the weights: {card_path(weights)}")
    card = json.loads(card_path(weights).read_text())
    model = UNetDenoiser(UNetConfig.from_dict(card["config"]))
    state = load_file(str(weights), device="cpu")
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    if missing or unexpected:
        raise ValueError(
            f"{weights.name} does not match its card's config: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}"
        )
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise ValueError(f"{weights.name}: {k} has shape {tuple(v.shape)}, config needs {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=True)
    return LoadedModel(model.to(device).eval(), card)
