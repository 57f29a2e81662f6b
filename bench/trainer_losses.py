"""Per-step losses and the exported EMA weights' hash of 5 seeded steps of each trainer on tiny synthetic data.

    python bench/trainer_losses.py OUT.json

Run it before and after a change to the training code and compare the two files: a refactoring
must leave them equal. The trainers' data and validation are replaced by tiny synthetic stand-ins
and the wall clock (which drives the audio learning rate) by a fake one, so runs are repeatable.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file

import restore.audio.train as audio_train
import restore.audio.train_inpaint as inpaint_train
import restore.mri.train as mri_train
from restore.mri.data import TrainVolume

TINY = {"spatial_dims": 2, "channels": [8, 16], "attention_levels": [False, False], "num_res_blocks": 1,
        "norm_num_groups": 4, "num_head_channels": 8, "prediction": "edm", "sigma_data": 0.5,
        "schedule": "linear", "schedule_steps": 1000}
LOOP = {"seed": 0, "threads": 1, "bf16": False, "batch_size": 2, "max_steps": 5, "lr_warmup_steps": 2,
        "checkpoint_every": 2, "val_every": 100}


def weights_hash(path: Path) -> str:
    """SHA-256 of the exported (EMA) tensors, in name order."""
    h = hashlib.sha256()
    for k, v in sorted(load_file(str(path)).items()):
        h.update(k.encode() + v.numpy().tobytes())
    return h.hexdigest()


def record(losses: list[float]):
    """Make ``Tensor.backward`` append each loss (the trainers call it once per step) to ``losses``."""
    backward = torch.Tensor.backward

    def recording(self, *args, **kwargs):
        losses.append(float(self.detach()))
        return backward(self, *args, **kwargs)

    torch.Tensor.backward = recording


def mri_runs(tmp: Path, losses: list[float]) -> dict:
    rng = np.random.default_rng(0)
    vol = np.zeros((40, 40, 40), np.float32)
    vol[8:32, 8:32, 8:32] = 1.0
    vol += 0.2 * rng.random(vol.shape).astype(np.float32)
    mri_train.build_training_set = lambda sources, sizes: [TrainVolume.of(vol, "syn")]
    mri_train.validation_set = lambda cfg: []
    mri_train.validate = lambda *args, **kwargs: {}
    out = {}
    for task, cond, extra in (("denoise", 4, {"neighbours": 1}), ("fill", 7, {"neighbours": 1, "start_sigma": 0.5})):
        raw = {**LOOP, "task": task, "patch": 32, "lr": 4e-4, "ema_decay": 0.9, "lr_final_fraction": 0.05,
               "lr_decay": "steps", "ema_warmup": False, "neighbours": 1, "sigma_range": [0.01, 0.1],
               "gamma_range": [0.7, 1.5], "train_sources": ["syn"], "voxel_sizes": [[1, 1, 1]],
               "validation_source": "syn", "validation_sigmas": [0.03], "run_dir": str(tmp / f"run_mri_{task}"),
               "weights": str(tmp / f"mri_{task}.safetensors"),
               "model": {**TINY, "data_channels": 1, "cond_channels": cond, "extra": extra}}
        path = tmp / f"mri_{task}.yaml"
        path.write_text(yaml.safe_dump(raw))
        losses.clear()
        mri_train.main(path)
        out[f"mri_{task}"] = {"losses": list(losses), "weights": weights_hash(tmp / f"mri_{task}.safetensors")}
    return out


def audio_data(folder: Path) -> None:
    """Prepared-data stand-in: sines with an envelope and white noise, two 3 s clips per split."""
    folder.mkdir()
    splits = {}
    t = np.arange(16000 * 6) / 16000
    for split in ("train", "val"):
        for kind in ("speech", "music", "noise"):
            r = np.random.default_rng(len(split) * 10 + len(kind))
            x = np.sin(2 * np.pi * (200 + 300 * r.random()) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
            x = x + 0.05 * r.standard_normal(t.size) if kind != "noise" else r.standard_normal(t.size) * 0.3
            np.save(folder / f"{split}_{kind}.npy", (np.clip(x, -1, 1) * 20000).astype(np.int16))
            splits[f"{split}_{kind}"] = {"clips": [{"start": 0, "length": 48000}, {"start": 48000, "length": 48000}]}
    (folder / "manifest.json").write_text(json.dumps({"splits": splits}))


def audio_runs(tmp: Path, losses: list[float]) -> dict:
    audio_data(tmp / "audio")
    audio_train.validate = lambda *args, **kwargs: {}
    inpaint_train.validate = lambda *args, **kwargs: {}
    out = {}
    for name, module, extra in (("audio_denoise", audio_train, {"val_seconds": 0.5, "cond_channels": 2}),
                                ("audio_inpaint", inpaint_train, {"cond_channels": 3})):
        cond = extra.pop("cond_channels")
        raw = {**LOOP, **extra, "data_dir": str(tmp / "audio"), "crop_frames": 16, "val_clips": 2,
               "run_dir": str(tmp / f"run_{name}"), "weights": str(tmp / f"{name}.safetensors"),
               "model": {**TINY, "data_channels": 2, "cond_channels": cond}}
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        losses.clear()
        module.main(path)
        out[name] = {"losses": list(losses), "weights": weights_hash(tmp / f"{name}.safetensors")}
    return out


def main(out: Path) -> None:
    losses: list[float] = []
    record(losses)
    ticks = itertools.count()
    time.monotonic = lambda: 0.5 * next(ticks)  # the audio learning rate follows the (now fake) clock
    tmp = Path(tempfile.mkdtemp())
    results = {**mri_runs(tmp, losses), **audio_runs(tmp, losses)}
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
