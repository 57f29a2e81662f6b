"""Flow ``train``: model training (data preparation, training, evaluation, model card) as Prefect tasks.

The training code is the library's ``restore.<modality>.train``. When that module exposes the stages
``prepare_data``, ``train``, ``evaluate`` and ``write_model_card`` (each taking the config path and
the previous stage's result), each stage is its own task, so the UI shows where time goes and a failed
evaluation can be rerun; otherwise its ``main(config_path)`` runs as one task.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from prefect import flow, task

STAGES = ("prepare_data", "train", "evaluate", "write_model_card")


def training_module(modality: str):
    if modality not in ("mri", "audio"):
        raise ValueError(f"modality must be mri or audio, got {modality!r}")
    return importlib.import_module(f"restore.{modality}.train")


@task(name="training-stage", task_run_name="{modality} {stage}")
def run_stage(modality: str, stage: str, config_path: str, previous: Any = None) -> Any:
    function = getattr(training_module(modality), stage)
    return function(config_path) if stage in ("main", STAGES[0]) else function(config_path, previous)


@flow(name="train")
def train(modality: Literal["mri", "audio"], config_path: str) -> Any:
    """Train the ``modality`` model from ``config_path`` (a configs/*.yaml); returns the last stage's result."""
    module = training_module(modality)
    if not all(callable(getattr(module, stage, None)) for stage in STAGES):
        return run_stage(modality, "main", config_path)
    result = None
    for stage in STAGES:
        result = run_stage(modality, stage, config_path, result)
    return result
