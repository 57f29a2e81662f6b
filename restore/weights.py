"""Weights as safetensors plus a JSON model card; loading never unpickles.

``name.safetensors`` holds the tensors, ``name.json`` the card: ``config`` (a :class:`UNetConfig`),
``version``, ``training`` (data, steps, wall time) and ``metrics``. The shipped models are package
data in ``restore/models/``, found through :func:`shipped_weights` (so an installed wheel has them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

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
