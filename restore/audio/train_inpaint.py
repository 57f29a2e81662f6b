"""Train the gap-filling / declipping model: ``restore train audio-inpaint --config configs/audio_inpaint.yaml``.

Each crop is speech or music (``music_prob``), sometimes with background noise under it, with one
or more gaps (log-uniform ``gap_ms``) placed in its active part, or clipped at a random share of
its peak (``clip_prob``). The condition is the AR first guess of :mod:`restore.audio.inpaint`
(exactly as at inference) plus the per-frame missing share; the target is the crop itself. Steps
are drawn on the path from the AR guess (``observation_prob``, at a log-uniform start level in
``fill_sigma_range``) or from plain Gaussian diffusion; the EDM loss weighs frames with missing
samples ``1 + gap_loss_weight``.

The loop is :func:`restore.training.train`, as for the denoiser: checkpoints in ``run_dir``, a
wall-clock budget over all resumes, EMA weights exported with a model card at every validation.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from restore.audio import config as config_module
from restore.audio import inpaint, spectral
from restore.audio.config import InpaintConfig
from restore.audio.degrade import add_noise_at_snr
from restore.audio.metrics import gap_lsd, gap_snr
from restore.device import single_threaded_blas
from restore.nets.unet import UNetDenoiser, count_parameters
from restore.training import Example, start_run, train
from restore.training.targets import edm_weight, on_ddim_path
from restore.weights import save_model

SR = spectral.MODEL_SR
VAL_GAPS_MS = (20, 50, 100, 200)


class Clips:
    """Random active crops from one prepared array (``{split}_{kind}.npy``), staying inside one clip."""

    def __init__(self, data_dir: Path, name: str, rng: np.random.Generator) -> None:
        manifest = json.loads((data_dir / "manifest.json").read_text())
        if name not in manifest["splits"]:
            raise FileNotFoundError(f"{data_dir} has no {name} split: rerun `restore data prepare --out data/`")
        self.audio = np.load(data_dir / f"{name}.npy", mmap_mode="r")
        clips = manifest["splits"][name]["clips"]
        self.starts = np.array([c["start"] for c in clips])
        self.lengths = np.array([c["length"] for c in clips])
        self.rng = rng

    def crop(self, n: int) -> np.ndarray:
        out = np.zeros(n, np.float32)
        for _ in range(20):
            i = self.rng.choice(len(self.starts), p=self.lengths / self.lengths.sum())
            start, length = int(self.starts[i]), int(self.lengths[i])
            out[:] = 0
            if length >= n:
                a = start + int(self.rng.integers(0, length - n + 1))
                out[:] = self.audio[a : a + n] / 32768.0
            else:
                at = int(self.rng.integers(0, n - length + 1))
                out[at : at + length] = self.audio[start : start + length] / 32768.0
            if out.std() > 3e-3:
                break
        return out


def place_gap(clean: np.ndarray, length: int, rng: np.random.Generator, margin: int) -> int:
    """Start of a gap of ``length`` samples in an active part of ``clean`` (the loudest of 6 tries)."""
    hi = clean.size - margin - length
    starts = rng.integers(margin, max(margin + 1, hi), size=6)
    energy = [float(np.mean(clean[s : s + length] ** 2)) for s in starts]
    return int(starts[int(np.argmax(energy))])


class Examples:
    """(target, degraded, known, clipped) rows for training or validation."""

    def __init__(self, data_dir: Path, split: str, rng: np.random.Generator, cfg: InpaintConfig) -> None:
        self.speech = Clips(data_dir, f"{split}_speech", rng)
        self.music = Clips(data_dir, f"{split}_music", rng)
        self.noise = Clips(data_dir, f"{split}_noise", rng)
        self.rng, self.cfg = rng, cfg

    def signal(self, n: int, music: bool | None = None) -> np.ndarray:
        music = self.rng.random() < self.cfg.music_prob if music is None else music
        x = (self.music if music else self.speech).crop(n)
        if self.rng.random() < self.cfg.noise_prob:
            x = add_noise_at_snr(x, self.noise.crop(n), float(self.rng.uniform(5, 30)))
        x = x / max(float(np.abs(x).max()), 1e-6) * float(10 ** self.rng.uniform(-1.5, 0))
        return x.astype(np.float32)

    def gapped(self, x: np.ndarray, lengths_ms: list[float]) -> np.ndarray:
        known = np.ones(x.size, bool)
        margin = int(0.1 * SR)
        for ms in lengths_ms:
            length = min(int(ms * SR / 1000), x.size - 3 * margin)
            start = place_gap(x, length, self.rng, margin)
            known[start : start + length] = False
        return known

    def example(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        x = self.signal(n)
        if self.rng.random() < self.cfg.clip_prob:
            level = float(self.rng.uniform(*self.cfg.clip_fraction)) * float(np.abs(x).max())
            clipped_x = np.clip(x, -level, level)
            known = np.abs(x) < level
            if not known.all():
                return x, clipped_x, known, True
        count = int(self.rng.integers(1, self.cfg.max_gaps + 1))
        lo, hi = np.log(self.cfg.gap_ms[0]), np.log(self.cfg.gap_ms[1])
        known = self.gapped(x, [float(np.exp(self.rng.uniform(lo, hi))) for _ in range(count)])
        return x, np.where(known, x, 0.0).astype(np.float32), known, False


def make_batch(examples: Examples, cfg: InpaintConfig, n: int, step: int = 0) -> dict[str, torch.Tensor]:
    rows = [examples.example(n) for _ in range(cfg.batch_size)]
    order = cfg.gap_ar_order(step)
    guesses = [inpaint.first_guess(d.astype(np.float64), k, c, train_order=order) for _, d, k, c in rows]
    return {
        "target": torch.from_numpy(np.stack([r[0] for r in rows])).float(),
        "guess": torch.from_numpy(np.stack(guesses)).float(),
        "known": torch.from_numpy(np.stack([r[2] for r in rows])),
    }


def make_inputs(net: UNetDenoiser, batch: dict, cfg: InpaintConfig, rng: np.random.Generator,
                gen: torch.Generator) -> Example:
    """The example of one batch: EDM-weighted, frames with missing samples ``1 + gap_loss_weight`` times more."""
    schedule = net.schedule
    scale = spectral.level_of(batch["guess"])
    cond = inpaint.condition(batch["guess"], batch["known"], scale)
    x0 = spectral.to_spec(batch["target"], scale=scale).values
    y = cond[:, :2]
    rows, ts = [], []
    lo, hi = np.log(cfg.fill_sigma_range[0]), np.log(cfg.fill_sigma_range[1])
    for b in range(x0.shape[0]):
        eps = torch.randn(x0[b : b + 1].shape, generator=gen)
        if rng.random() < cfg.observation_prob:
            t_star = int(schedule.timestep_for_sigma(float(np.exp(rng.uniform(lo, hi)))).clamp(min=1))
            x_star = schedule.add_noise(y[b : b + 1], eps, t_star)
            t = int(rng.integers(1, t_star + 1)) if rng.random() < 0.3 else t_star
            if t != t_star:
                x_star = on_ddim_path(x0[b : b + 1], x_star, t_star, t, schedule)
            rows.append(x_star)
        else:
            t = int(schedule.timestep_for_sigma(math.exp(rng.normal(-1.2, 1.2))).clamp(min=1))
            rows.append(schedule.add_noise(x0[b : b + 1], eps, t))
        ts.append(t)
    t_all = torch.tensor(ts)
    frame_weight = 1 + cfg.gap_loss_weight * (cond[:, 2:3] > 0).float()
    return Example(torch.cat(rows), t_all, cond, x0, edm_weight(net, t_all, x0) * frame_weight)


def validation_set(cfg: InpaintConfig) -> list[dict]:
    """Fixed held-out crops: Russian speech and held-out music, one gap of 20/50/100/200 ms each."""
    examples = Examples(Path(cfg.data_dir), "val", np.random.default_rng(4321), replace(cfg, noise_prob=0.0))
    n = (cfg.crop_frames - 1) * spectral.HOP
    out = []
    for i in range(cfg.val_clips):
        music = bool(i % 2)
        ms = VAL_GAPS_MS[(i // 2) % len(VAL_GAPS_MS)]
        x = examples.signal(n, music=music)
        known = examples.gapped(x, [ms])
        out.append({"clean": x, "known": known, "music": music, "ms": ms})
    return out


def validate(model: inpaint.InpaintModel | None, val: list[dict], steps: int | None = None) -> dict[str, float]:
    """Mean gap SNR and LSD (``model=None``: the AR baseline)."""
    gen = torch.Generator().manual_seed(0)
    snr, lsd = [], []
    for v in val:
        missing = np.flatnonzero(~v["known"])
        filled = inpaint.fill_samples(model, np.where(v["known"], v["clean"], 0), v["known"], steps=steps,
                                      generator=gen)
        snr.append(gap_snr(v["clean"], filled, missing[0], missing[-1] + 1))
        lsd.append(gap_lsd(v["clean"], filled, missing[0], missing[-1] + 1, SR))
    return {"gap_snr_db": float(np.mean(snr)), "gap_lsd_db": float(np.mean(lsd))}


def card_choices(cfg: InpaintConfig) -> dict[str, float]:
    """The inference choices (:data:`restore.audio.inpaint.CARD_CHOICES`) as configured."""
    return {name: getattr(cfg, name) for name in inpaint.CARD_CHOICES}


def inference_settings(cfg: InpaintConfig) -> inpaint.InpaintSettings:
    """The card's ``inference`` block: the defaults the pipeline reads (:func:`restore.audio.inpaint.load_inpaint_model`)."""
    return inpaint.InpaintSettings(inference_steps=cfg.inference_steps, bf16=cfg.bf16, **card_choices(cfg))


def _export(ema: UNetDenoiser, cfg: InpaintConfig, state: dict) -> None:
    card = {
        "name": inpaint.MODEL_NAME,
        "version": cfg.version,
        "card": f"{inpaint.MODEL_NAME}.md",
        "inference": asdict(inference_settings(cfg)),
        "training": {
            "data": "restore data prepare: Asterisk en/es/fr G.722 prompts + fillets-ng cs/nl voices; wesnoth-1.16 "
                    "and fillets-ng music minus VAL_MUSIC; noise under 30% of crops; gaps log-uniform "
                    f"{cfg.gap_ms[0]}-{cfg.gap_ms[1]} ms, clipping at {cfg.clip_fraction} of the peak",
            "held_out": "Asterisk ru speaker; music tracks in restore.audio.data.VAL_MUSIC",
            "steps": state["step"],
            "wall_seconds": round(state["elapsed"], 1),
            "config": {k: v for k, v in asdict(cfg).items() if k != "model"},
        },
        "metrics": state["history"][-1] if state["history"] else {},
    }
    save_model(ema, Path(cfg.weights), card)


def load_config(path: Path) -> InpaintConfig:
    return config_module.load_config(path, InpaintConfig)


def main(config_path: Path) -> Path:
    """Train (or resume) as configured; returns the path of the written weights."""
    with single_threaded_blas():
        return _train(load_config(config_path))


def _train(cfg: InpaintConfig) -> Path:
    if not (Path(cfg.data_dir) / "manifest.json").is_file():
        raise FileNotFoundError(f"no prepared audio data in {cfg.data_dir}: run `restore data prepare --out data/` first")
    run = start_run(cfg, cfg.model)
    examples_of = Examples(Path(cfg.data_dir), "train", run.rng, cfg)
    val = validation_set(cfg)
    baseline = validate(None, val)
    print(f"audio inpainter: {count_parameters(run.net) / 1e6:.2f} M parameters, resuming at step "
          f"{run.state['step']}; AR baseline on validation {json.dumps(baseline)}", flush=True)
    n = (cfg.crop_frames - 1) * spectral.HOP

    def examples(step: int) -> Example:
        return make_inputs(run.net, make_batch(examples_of, cfg, n, step), cfg, run.rng, run.gen)

    def validate_ema(ema: UNetDenoiser) -> dict:
        model = inpaint.InpaintModel(ema, cfg.version, cfg.inference_steps, cfg.bf16, **card_choices(cfg))
        return {**validate(model, val), **{f"ar_{k}": v for k, v in baseline.items()}}

    train(run, cfg, examples, validate=validate_ema, export=lambda ema, state: _export(ema, cfg, state),
          desc="train audio-inpaint")
    return Path(cfg.weights)
