"""Train the STFT diffusion denoiser: ``restore train audio --config configs/audio_denoise.yaml``.

Each crop is clean speech plus real (or synthetic) noise at a random SNR. The network learns
``x0_hat`` (EDM preconditioning, Karras et al. 2022) at steps drawn two ways:

- on the path from the observation (share ``observation_prob``), as at inference: ``t*`` comes from
  the reference-free estimate of sigma (jittered), ``x_t* = start_from_observation(y)``, and steps
  ``t < t*`` lie on the ideal DDIM path ``x0 + sigma_t / sigma_t* (x_t*/sqrt(ab) - x0)``;
- plain Gaussian diffusion at log-normal sigma (the rest).

Resumable: ``run_dir/checkpoint.safetensors`` (model, EMA, Adam moments) + ``checkpoint.json``
(step, elapsed seconds, RNG states). Training stops at ``max_steps`` or after ``wall_clock_minutes``
of training time in total; the EMA weights then go to ``weights`` with a model card.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from restore.audio import spectral
from restore.audio.config import TrainConfig, load_config
from restore.audio.degrade import add_noise_at_snr, augment_noise, resample_linear, synthetic_noise
from restore.audio.denoise import MODEL_NAME, AudioModel, denoise_samples
from restore.audio.estimate import estimate_degradation
from restore.audio.metrics import pesq_wb, si_sdr
from restore.device import autocast
from restore.diffusion import expand_to, start_from_observation
from restore.nets.unet import UNetConfig, UNetDenoiser, count_parameters
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
                rng: np.random.Generator, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x_t, t, cond, x0)`` for one batch (see the module docstring for how ``t`` is drawn)."""
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
            ab_star, ab_t = float(schedule.alpha_bar[t_star]), float(schedule.alpha_bar[t])
            ratio = float(schedule.sigma_at(t) / schedule.sigma_at(t_star))
            x_ve = x0[b : b + 1] + ratio * (x_star / ab_star**0.5 - x0[b : b + 1])  # ideal DDIM path
            rows.append(ab_t**0.5 * x_ve)
        else:
            sigma = math.exp(rng.normal(-1.2, 1.2))
            t = int(schedule.timestep_for_sigma(sigma).clamp(min=1))
            eps = torch.randn(x0[b : b + 1].shape, generator=gen)
            rows.append(schedule.add_noise(x0[b : b + 1], eps, t))
        ts.append(t)
    return torch.cat(rows), torch.tensor(ts), y, x0


def learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up, then a cosine from ``lr`` to ``lr * lr_final_fraction`` over the wall-clock budget.

    ``progress``: the share of ``wall_clock_minutes`` used so far (the budget, not ``max_steps``,
    ends training on this machine).
    """
    warm = min(1.0, (step + 1) / cfg.lr_warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return cfg.lr * warm * (cfg.lr_final_fraction + (1 - cfg.lr_final_fraction) * cosine)


def edm_weight(net: UNetDenoiser, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2`` (Karras et al. 2022, eq. 8 / Table 1)."""
    sigma = expand_to(net.schedule.sigma_at(t).float(), like)
    sd = net.config.sigma_data
    return (sigma**2 + sd**2) / (sigma * sd) ** 2


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


def _save_checkpoint(run: Path, net, ema, opt, state: dict) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    tensors |= {f"ema.{k}": v.detach().contiguous() for k, v in ema.state_dict().items()}
    for i, p in enumerate(net.parameters()):
        s = opt.state.get(p, {})
        for k in ("exp_avg", "exp_avg_sq", "step"):
            if k in s:
                tensors[f"opt.{i}.{k}"] = torch.as_tensor(s[k]).detach().reshape(-1).contiguous() if k == "step" else s[k].contiguous()
    tensors["torch_rng"] = torch.get_rng_state()
    tmp = run / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(run / "checkpoint.safetensors")
    (run / "checkpoint.json.tmp").write_text(json.dumps(state))
    (run / "checkpoint.json.tmp").replace(run / "checkpoint.json")


def _load_checkpoint(run: Path, net, ema, opt) -> dict | None:
    if not (run / "checkpoint.json").is_file():
        return None
    tensors = load_file(str(run / "checkpoint.safetensors"))
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    for i, p in enumerate(net.parameters()):
        if f"opt.{i}.exp_avg" in tensors:
            opt.state[p] = {"step": tensors[f"opt.{i}.step"].reshape(()),
                            "exp_avg": tensors[f"opt.{i}.exp_avg"], "exp_avg_sq": tensors[f"opt.{i}.exp_avg_sq"]}
    torch.set_rng_state(tensors["torch_rng"])
    return json.loads((run / "checkpoint.json").read_text())


@dataclass
class Run:
    """A training run's network, EMA copy, optimiser, resumable state and random generators."""

    folder: Path
    net: UNetDenoiser
    ema: UNetDenoiser
    opt: torch.optim.Optimizer
    state: dict  # step, elapsed seconds, validation history, numpy RNG state
    rng: np.random.Generator
    gen: torch.Generator


def start_run(cfg, net_cfg: UNetConfig) -> Run:
    """Build (or resume from ``cfg.run_dir``) a run; shared by the audio trainers.

    ``cfg`` needs ``threads``, ``data_dir``, ``run_dir``, ``seed`` and ``lr``.
    """
    torch.set_num_threads(cfg.threads)
    data_dir, folder = Path(cfg.data_dir), Path(cfg.run_dir)
    if not (data_dir / "manifest.json").is_file():
        raise FileNotFoundError(f"no prepared audio data in {data_dir}: run `restore data prepare --out data/` first")
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    net, ema = UNetDenoiser(net_cfg), UNetDenoiser(net_cfg)
    ema.load_state_dict(net.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    state = _load_checkpoint(folder, net, ema, opt) or {"step": 0, "elapsed": 0.0, "history": [],
                                                        "rng": np.random.default_rng(cfg.seed).bit_generator.state}
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    return Run(folder, net, ema, opt, state, rng, torch.Generator().manual_seed(cfg.seed + state["step"]))


def update(run: Run, loss: torch.Tensor, ema_decay: float) -> None:
    """One optimiser step (gradients clipped to norm 1) and the EMA update, warmed up over the first steps."""
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.net.parameters(), 1.0)
    run.opt.step()
    step = run.state["step"]
    decay = min(ema_decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for pe, p in zip(run.ema.parameters(), run.net.parameters()):
            pe.lerp_(p, 1 - decay)


def main(config_path: Path) -> Path:
    """Train (or resume) as configured; returns the path of the written weights."""
    cfg = load_config(config_path)
    run = start_run(cfg, model_config(cfg))
    net, ema, opt, state, rng, gen = run.net, run.ema, run.opt, run.state, run.rng, run.gen
    data_dir = Path(cfg.data_dir)
    train = Mixtures(data_dir, "train", rng, cfg)
    val = validation_set(cfg)
    n_samples = (cfg.crop_frames - 1) * spectral.HOP
    print(f"audio denoiser: {count_parameters(net) / 1e6:.2f} M parameters, resuming at step {state['step']}", flush=True)
    budget = cfg.wall_clock_minutes * 60
    bar = tqdm(total=cfg.max_steps, initial=state["step"], desc="train audio", mininterval=10)
    losses: list[float] = []
    while state["step"] < cfg.max_steps and state["elapsed"] < budget:
        tick = time.monotonic()
        clean, noisy = train.batch(cfg.batch_size, n_samples, cfg.noise_augment_share(state["step"]))
        x_t, t, cond, x0 = make_inputs(net, clean, noisy, cfg, rng, gen)
        for g in opt.param_groups:
            g["lr"] = learning_rate(cfg, state["step"], state["elapsed"] / budget)
        with autocast(x_t.device, cfg.bf16):
            x0_hat = net(x_t, t, cond)
        loss = (edm_weight(net, t, x0) * (x0_hat.float() - x0).pow(2)).mean()
        update(run, loss, cfg.ema_decay)
        state["step"] += 1
        state["elapsed"] += time.monotonic() - tick
        losses.append(loss.item())
        bar.update(1)
        if state["step"] % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", minutes=f"{state['elapsed'] / 60:.1f}")
        last = state["step"] >= cfg.max_steps or state["elapsed"] >= budget
        if state["step"] % cfg.val_every == 0 or last:
            model = AudioModel(ema.eval(), cfg.version, cfg.inference_steps, cfg.bf16, sigma_scale=cfg.sigma_scale,
                               clean_snr_db=cfg.clean_snr_db, shifts=cfg.shifts)
            metrics = validate(model, val, cfg.inference_steps)
            state["history"].append({"step": state["step"], "elapsed": state["elapsed"],
                                     "loss": float(np.mean(losses[-cfg.val_every:])), **metrics})
            print(json.dumps(state["history"][-1]), flush=True)
            _export(ema, cfg, state)
        if state["step"] % cfg.checkpoint_every == 0 or last:
            state["rng"] = rng.bit_generator.state
            _save_checkpoint(run.folder, net, ema, opt, state)
    bar.close()
    return Path(cfg.weights)


def model_config(cfg: TrainConfig) -> UNetConfig:
    """The network config with the inference choices the pipeline needs in ``extra``."""
    extra = {**cfg.model.extra, "inference_steps": cfg.inference_steps, "sigma_scale": cfg.sigma_scale,
             "clean_snr_db": cfg.clean_snr_db, "shifts": cfg.shifts,
             "bf16": cfg.bf16, "sr": SR,
             "n_fft": spectral.N_FFT, "hop": spectral.HOP, "alpha": spectral.ALPHA, "beta": spectral.BETA,
             "cond": "noisy compressed complex STFT (real, imag)"}
    return replace(cfg.model, extra=extra)


def _export(ema: UNetDenoiser, cfg: TrainConfig, state: dict) -> None:
    card = {
        "name": MODEL_NAME,
        "version": cfg.version,
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
