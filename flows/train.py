"""Flow ``train``: prepare data -> train (resumable, evaluates on held-out data) -> publish the model card.

Each step is a library call: ``restore.audio.data.prepare`` (audio only: MRI training reads its
volumes from installed packages itself), ``restore.training_cli.trainer(modality).main(config_path)`` (trains or
resumes, validates, writes weights + model card, returns the weights path) and the card written
beside the weights (:func:`restore.weights.card_path`), shown as a Prefect markdown artifact.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from restore.training_cli import trainer
from restore.weights import card_path


def training_module(modality: str):
    return trainer(modality)


@task(name="prepare-training-data", cache_policy=NO_CACHE)
def prepare_data(modality: str, config_path: str) -> str | None:
    """Audio: decode the installed speech and noise packages into the config's ``data_dir`` once."""
    if not modality.startswith("audio"):
        return None
    data_dir = Path(training_module(modality).load_config(Path(config_path)).data_dir)
    if (data_dir / "manifest.json").is_file():
        return str(data_dir)
    return str(importlib.import_module("restore.audio.data").prepare(data_dir.parent))


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(modality: str, config_path: str) -> str:
    return str(training_module(modality).main(Path(config_path)))


@task(name="publish-model-card", cache_policy=NO_CACHE)
def publish_card(modality: str, weights: str) -> dict:
    card = json.loads(card_path(Path(weights)).read_text())
    metrics = card.get("metrics", {})
    lines = [f"# {modality} model {card.get('name', '')} {card.get('version', '')}", "", f"Weights: `{weights}`", "",
             f"Training steps: {card.get('training', {}).get('steps', '?')}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in metrics.items() if not isinstance(v, (dict, list))]
    create_markdown_artifact(key=f"model-card-{modality}", markdown="\n".join(lines),
                             description=f"{modality} model card")
    return card


@flow(name="train")
def train(modality: Literal["mri", "audio", "audio-inpaint"], config_path: str) -> dict:
    """Train the ``modality`` model from ``config_path`` (configs/*.yaml); returns its model card."""
    prepare_data(modality, config_path)
    weights = train_model(modality, config_path)
    return publish_card(modality, weights)
