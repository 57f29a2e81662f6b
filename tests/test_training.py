"""The shared training loop (restore.training): resuming a checkpoint continues the run exactly,
the learning rate follows its warm-up and cosine, and every shipped training config loads."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from restore.errors import InputError
from restore.nets import UNetConfig
from restore.training import Example, TrainingConfig, learning_rate, load_config, start_run, train

ROOT = Path(__file__).resolve().parents[1]
TINY = UNetConfig(cond_channels=1, channels=(8, 16), attention_levels=(False, False), norm_num_groups=4,
                  num_head_channels=8)


def _run(cfg: TrainingConfig) -> tuple[list[float], dict[str, torch.Tensor]]:
    run = start_run(cfg, TINY)
    losses: list[float] = []

    def examples(step: int) -> Example:  # drawn from the run's resumed numpy stream
        x0 = torch.from_numpy(run.rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
        eps = torch.from_numpy(run.rng.standard_normal((2, 1, 8, 8)).astype(np.float32))
        t = torch.from_numpy(run.rng.integers(1, 1000, 2))
        return Example(run.net.schedule.add_noise(x0, eps, t), t, x0, x0)

    train(run, cfg, examples, validate=lambda ema: {}, export=lambda ema, state: None, desc="test",
          on_loss=losses.append)
    return losses, {k: v.clone() for k, v in run.ema.state_dict().items()}


def test_resumed_run_continues_exactly(tmp_path):
    cfg = TrainingConfig(run_dir=str(tmp_path / "whole"), weights=str(tmp_path / "w.safetensors"), bf16=False,
                         lr_warmup_steps=2, lr_decay="steps", max_steps=6, checkpoint_every=3, val_every=100)
    whole, whole_ema = _run(cfg)
    first, _ = _run(replace(cfg, run_dir=str(tmp_path / "parts"), max_steps=3))
    rest, rest_ema = _run(replace(cfg, run_dir=str(tmp_path / "parts")))
    assert len(whole) == 6 and first + rest == whole
    assert all(torch.equal(whole_ema[k], rest_ema[k]) for k in whole_ema)
    assert (tmp_path / "parts" / "checkpoint.safetensors").is_file()


def test_learning_rate_warms_up_then_follows_the_cosine():
    cfg = TrainingConfig(run_dir="r", weights="w", lr=1.0, lr_warmup_steps=10, lr_final_fraction=0.1,
                         lr_decay="steps", max_steps=110)
    assert learning_rate(cfg, 0, 0.0) == pytest.approx(0.1)
    assert learning_rate(cfg, 9, 0.0) == pytest.approx(1.0)
    assert learning_rate(cfg, 60, 0.0) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert learning_rate(cfg, 110, 0.0) == pytest.approx(0.1)
    by_clock = replace(cfg, lr_decay="wall_clock", wall_clock_minutes=1.0)
    assert learning_rate(by_clock, 50, 30.0) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2)))


@pytest.mark.parametrize("name", ["mri_denoise", "mri_fill", "audio_denoise", "audio_inpaint"])
def test_shipped_configs_load_with_the_shared_names(name):
    from restore.audio.config import InpaintConfig
    from restore.audio.config import TrainConfig as AudioConfig
    from restore.mri.train import TrainConfig as MRIConfig

    kind = {"mri_denoise": MRIConfig, "mri_fill": MRIConfig, "audio_denoise": AudioConfig,
            "audio_inpaint": InpaintConfig}[name]
    cfg = load_config(ROOT / "configs" / f"{name}.yaml", kind)
    assert cfg.weights.endswith(f"{name}.safetensors") and cfg.max_steps > 1000


def test_config_errors_name_the_key(tmp_path):
    from restore.mri.train import TrainConfig as MRIConfig

    text = (ROOT / "configs" / "mri_denoise.yaml").read_text()
    path = tmp_path / "c.yaml"
    path.write_text(text + "stepz: 3\n")
    with pytest.raises(InputError, match="unknown keys \\['stepz'\\]"):
        load_config(path, MRIConfig)
    path.write_text(text.replace("max_steps:", "steps:"))  # the MRI configs' old name is still read
    assert load_config(path, MRIConfig).max_steps == 5200
    path.write_text(text.replace("ema_decay: 0.995", "ema_decay: 1.5"))
    with pytest.raises(InputError, match="ema_decay must be in"):
        load_config(path, MRIConfig)
