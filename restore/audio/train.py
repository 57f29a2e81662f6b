"""Train the STFT diffusion denoiser: ``restore train audio --config configs/audio_denoise.yaml``.

Each crop is clean speech plus real (or synthetic) noise at a random SNR. The network learns
``x0_hat`` (EDM preconditioning, Karras et al. 2022) at steps drawn two ways:

- on the path from the observation (share ``observation_prob``), as at inference: ``t*`` comes from
  the reference-free estimate of sigma (jittered), ``x_t* = start_from_observation(y)``, and steps
  ``t < t*`` lie on the ideal DDIM path ``x0 + sigma_t / sigma_t* (x_t*/sqrt(ab) - x0)``;
- plain Gaussian diffusion at log-normal sigma (the rest).

The loop (EMA, learning rate over the wall-clock budget, resumable checkpoints in ``run_dir``) is
:func:`restore.training.train`; the EMA weights go to ``weights`` with a model card at every validation.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from restore.audio import spectral
from restore.audio.config import TrainConfig, load_config
from restore.audio.degrade import add_noise_at_snr, augment_noise, resample_linear, synthetic_noise
from restore.audio.denoise import MODEL_NAME, AudioModel, DenoiseSettings, denoise_samples
from restore.audio.estimate import estimate_degradation
from restore.audio.metrics import pesq_wb, si_sdr
from restore.diffusion import start_from_observation
from restore.nets.unet import UNetDenoiser, count_parameters
from restore.training import Example, start_run, train
from restore.training.targets import edm_weight, on_ddim_path
from restore.weights import save_model

SR = spectral.MODEL_SR


class Mixtures:
    """Random (clean, noisy) crops from the prepared arrays of one split."""

    def __init__(self, data_dir: Path, split: str, rng: np.random.Generator, cfg: TrainConfig) -> None:
        manifest = json.loads((data_dir / "manifest.json").read_text())
        self.speech = np.load(data_dir / f"{split}_speech.npy", mmap_mode="r")
        self.noise = np.load(data_dir / f"{split}_noise.npy", mmap_mode="r")
        clips = manifest["splits"][f"{split}_speech"]["clips"]
        self.starts = np.array([c["start"] for c in clips])
        self.lengths = np.array([c["length"] for c in clips])
        self.rng, self.cfg = rng, cfg

    def _speech(self, n: int) -> np.ndarray:
        for _ in range(20):
            i = self.rng.choice(len(self.starts), p=self.lengths / self.lengths.sum())
            start, length = int(self.starts[i]), int(self.lengths[i])
            out = np.zeros(n, np.float32)
            if length >= n:
                a = start + int(self.rng.integers(0, length - n + 1))
                out[:] = self.speech[a : a + n] / 32768.0
            else:
                at = int(self.rng.integers(0, n - length + 1))
                out[at : at + length] = self.speech[start : start + length] / 32768.0
            if out.std() > 1e-3:
                return out
        return out

    def _real_noise(self, n: int) -> np.ndarray:
        a = int(self.rng.integers(0, self.noise.size - n))
        return self.noise[a : a + n].astype(np.float32) / 32768.0

    def _noise(self, n: int, augment: float = 0.0) -> np.ndarray:
        if self.rng.random() < self.cfg.synthetic_noise_prob:
            return synthetic_noise(n, SR, self.rng)
        augmented = self.rng.random() < augment
        if augmented:  # speed and pitch x0.7..1.4: read more or fewer samples and stretch them to n
            speed = float(np.exp(self.rng.uniform(np.log(0.7), np.log(1.4))))
            out = resample_linear(self._real_noise(min(int(n * speed) + 1, self.noise.size - 1)), n)
        else:
            out = self._real_noise(n)
        if out.std() < 1e-5:
            return synthetic_noise(n, SR, self.rng)
        if augmented:
            other = self._real_noise(n) if self.rng.random() < 0.3 else None
            out = augment_noise(out, self.rng, other=other if other is not None and other.std() >= 1e-5 else None)
        if self.rng.random() < 0.15:  # real noise with some hum or hiss under it
            out = out + out.std() * self.rng.uniform(0.1, 0.5) * synthetic_noise(n, SR, self.rng)
        return out

    def sample(self, n: int, snr_db: float | None = None, augment: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``augment``: the chance that a real noise is augmented (:func:`augment_noise`)."""
        clean = self._speech(n) * float(10 ** self.rng.uniform(-1.5, 0))
        snr = self.rng.uniform(self.cfg.snr_db_min, self.cfg.snr_db_max) if snr_db is None else snr_db
        return clean, add_noise_at_snr(clean, self._noise(n, augment), snr)

    def batch(self, size: int, n: int, augment: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self.sample(n, augment=augment) for _ in range(size)]
        return torch.from_numpy(np.stack([p[0] for p in pairs])), torch.from_numpy(np.stack([p[1] for p in pairs]))


def make_inputs(net: UNetDenoiser, clean: torch.Tensor, noisy: torch.Tensor, cfg: TrainConfig,
                rng: np.random.Generator, gen: torch.Generator) -> Example:
    """The example of one batch, EDM-weighted (see the module docstring for how ``t`` is drawn)."""
    schedule = net.schedule
    scale = spectral.level_of(noisy)
    x0 = spectral.to_spec(clean, scale=scale).values
    y = spectral.to_spec(noisy, scale=scale).values
    sigma_est = estimate_degradation(noisy, scale).sigma
    rows, ts = [], []
    for b in range(x0.shape[0]):
        if rng.random() < cfg.observation_prob:
            t_star = int(schedule.timestep_for_sigma(float(sigma_est[b]) * rng.uniform(*cfg.sigma_jitter)).clamp(min=1))
            x_star = start_from_observation(y[b : b + 1], sigma_est[b], t_star, schedule, generator=gen)
            t = int(rng.integers(1, t_star + 1)) if rng.random() < 0.5 else t_star
            rows.append(on_ddim_path(x0[b : b + 1], x_star, t_star, t, schedule))
        else:
            sigma = math.exp(rng.normal(-1.2, 1.2))
            t = int(schedule.timestep_for_sigma(sigma).clamp(min=1))
            eps = torch.randn(x0[b : b + 1].shape, generator=gen)
            rows.append(schedule.add_noise(x0[b : b + 1], eps, t))
        ts.append(t)
    t_all = torch.tensor(ts)
    return Example(torch.cat(rows), t_all, y, x0, edm_weight(net, t_all, x0))


def validation_set(cfg: TrainConfig) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Fixed held-out crops: Russian speech + held-out real noises (as in bench/audio_denoise.py) at 0/5/10/15 dB.

    Until step 4016 of the shipped run a quarter of these crops had synthetic noise, which every
    model denoises well and which hid a model's loss on unseen real noise."""
    mix = Mixtures(Path(cfg.data_dir), "val", np.random.default_rng(1234), replace(cfg, synthetic_noise_prob=0.0))
    n = int(cfg.val_seconds * SR)
    out = []
    for i in range(cfg.val_clips):
        snr = (0.0, 5.0, 10.0, 15.0)[i % 4]
        clean, noisy = mix.sample(n, snr)
        out.append((clean, noisy, snr))
    return out


def validate(model: AudioModel, val: list, steps: int) -> dict[str, float]:
    gen = torch.Generator().manual_seed(0)
    sdr_in, sdr_out, pesq_in, pesq_out = [], [], [], []
    for clean, noisy, _ in val:
        out = denoise_samples(model, torch.from_numpy(noisy)[None], steps=steps, generator=gen).samples[0].numpy()
        sdr_in.append(si_sdr(clean, noisy))
        sdr_out.append(si_sdr(clean, out))
        pesq_in.append(pesq_wb(clean, noisy, SR))
        pesq_out.append(pesq_wb(clean, out, SR))
    return {"si_sdr_noisy": float(np.mean(sdr_in)), "si_sdr": float(np.mean(sdr_out)),
            "pesq_wb_noisy": float(np.nanmean(pesq_in)), "pesq_wb": float(np.nanmean(pesq_out))}


def main(config_path: Path) -> Path:
    """Train (or resume) as configured; returns the path of the written weights."""
    cfg = load_config(config_path)
    if not (Path(cfg.data_dir) / "manifest.json").is_file():
        raise FileNotFoundError(f"no prepared audio data in {cfg.data_dir}: run `restore data prepare --out data/` first")
    run = start_run(cfg, cfg.model)
    train_mix = Mixtures(Path(cfg.data_dir), "train", run.rng, cfg)
    val = validation_set(cfg)
    n_samples = (cfg.crop_frames - 1) * spectral.HOP
    print(f"audio denoiser: {count_parameters(run.net) / 1e6:.2f} M parameters, resuming at step {run.state['step']}",
          flush=True)

    def examples(step: int) -> Example:
        clean, noisy = train_mix.batch(cfg.batch_size, n_samples, cfg.noise_augment_share(step))
        return make_inputs(run.net, clean, noisy, cfg, run.rng, run.gen)

    def validate_ema(ema: UNetDenoiser) -> dict:
        model = AudioModel(ema, cfg.version, cfg.inference_steps, cfg.bf16, sigma_scale=cfg.sigma_scale,
                           clean_snr_db=cfg.clean_snr_db, shifts=cfg.shifts)
        return validate(model, val, cfg.inference_steps)

    train(run, cfg, examples, validate=validate_ema, export=lambda ema, state: _export(ema, cfg, state),
          desc="train audio")
    return Path(cfg.weights)


def inference_settings(cfg: TrainConfig) -> DenoiseSettings:
    """The card's ``inference`` block: the defaults the pipeline reads (:func:`restore.audio.denoise.load_audio_model`)."""
    return DenoiseSettings(inference_steps=cfg.inference_steps, bf16=cfg.bf16, sigma_scale=cfg.sigma_scale,
                           clean_snr_db=cfg.clean_snr_db, shifts=cfg.shifts)


def _export(ema: UNetDenoiser, cfg: TrainConfig, state: dict) -> None:
    card = {
        "name": MODEL_NAME,
        "version": cfg.version,
        "card": f"{MODEL_NAME}.md",
        "inference": asdict(inference_settings(cfg)),
        "training": {
            "data": "restore data prepare: Asterisk en/es/fr G.722 prompts + fillets-ng cs/nl voices; "
                    "megaglest, lincity-ng, fillets-ng noises + synthetic coloured noise, hum, hiss; SNR "
                    f"{cfg.snr_db_min}..{cfg.snr_db_max} dB; real noises augmented (speed, EQ, envelope, pairs) "
                    f"by step: {[list(pair) for pair in cfg.noise_augment]}",
            "held_out": "Asterisk ru speaker; noises in restore.audio.data.VAL_NOISES",
            "steps": state["step"],
            "wall_seconds": round(state["elapsed"], 1),
            "config": {k: v for k, v in asdict(cfg).items() if k != "model"},
        },
        "metrics": state["history"][-1] if state["history"] else {},
    }
    save_model(ema, Path(cfg.weights), card)
