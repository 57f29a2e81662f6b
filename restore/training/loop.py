"""The one training loop: Adam with clipped gradients, EMA weights, warm-up + cosine learning rate,
a time budget, and resumable checkpoints in one safetensors format (nothing is pickled).

A checkpoint is ``run_dir/checkpoint.safetensors`` (``model.*``, ``ema.*``, the Adam moments
``opt.{i}.{exp_avg,exp_avg_sq,step}`` by parameter index, ``torch_rng``) plus ``run_dir/checkpoint.json``
(``step``, ``elapsed`` training seconds, validation ``history``, the numpy ``rng`` state), each written
atomically. A resumed run continues with the same weights, optimiser moments, numpy random stream
and time budget; its ``torch.Generator`` restarts from ``seed + step``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from restore.device import autocast
from restore.nets.unet import UNetConfig, UNetDenoiser
from restore.outputs import atomic_write
from restore.training.config import TrainingConfig


@dataclass(frozen=True)
class Example:
    """One batch for the denoiser: the loss is ``mean(weight * (net(x_t, t, cond) - x0)^2)``.

    ``x_t``, ``x0``: ``(B, C, *spatial)``; ``t``: ``(B,)`` integer steps; ``cond``: ``(B, C_cond, *spatial)``;
    ``weight``: broadcastable to ``x0`` (``None``: 1).
    """

    x_t: torch.Tensor
    t: torch.Tensor
    cond: torch.Tensor
    x0: torch.Tensor
    weight: torch.Tensor | None = None


@dataclass
class Run:
    """A training run's network, EMA copy, optimiser, resumable state and random generators."""

    folder: Path
    net: UNetDenoiser
    ema: UNetDenoiser
    opt: torch.optim.Optimizer
    state: dict  # step, elapsed seconds, validation history, numpy RNG state
    rng: np.random.Generator  # resumed with the run (checkpoint.json)
    gen: torch.Generator  # seeded with seed + the step the run (re)started at


def start_run(cfg: TrainingConfig, net_cfg: UNetConfig) -> Run:
    """Build the network, its EMA copy and Adam, or resume all of them from ``cfg.run_dir``."""
    torch.set_num_threads(cfg.threads)
    folder = Path(cfg.run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    net = UNetDenoiser(net_cfg)
    ema = copy.deepcopy(net).eval()
    ema.requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    state = load_checkpoint(folder, net, ema, opt) or {
        "step": 0, "elapsed": 0.0, "history": [], "rng": np.random.default_rng(cfg.seed).bit_generator.state}
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    return Run(folder, net, ema, opt, state, rng, torch.Generator().manual_seed(cfg.seed + state["step"]))


def learning_rate(cfg: TrainingConfig, step: int, elapsed: float) -> float:
    """Linear warm-up, then a cosine from ``lr`` to ``lr * lr_final_fraction`` (:class:`TrainingConfig`).

    ``elapsed``: training seconds so far (the progress of ``lr_decay: wall_clock``).
    """
    warm = min(1.0, (step + 1) / cfg.lr_warmup_steps)
    if cfg.lr_decay == "wall_clock":
        progress = elapsed / (cfg.wall_clock_minutes * 60)
    else:
        progress = max(step - cfg.lr_warmup_steps, 0) / max(cfg.max_steps - cfg.lr_warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return cfg.lr * warm * (cfg.lr_final_fraction + (1 - cfg.lr_final_fraction) * cosine)


def ema_decay(cfg: TrainingConfig, step: int) -> float:
    return min(cfg.ema_decay, (1 + step) / (10 + step)) if cfg.ema_warmup else cfg.ema_decay


def _step(run: Run, cfg: TrainingConfig, ex: Example) -> float:
    """One optimiser step on ``ex`` (gradients clipped to norm 1) and the EMA update; returns the loss."""
    for g in run.opt.param_groups:
        g["lr"] = learning_rate(cfg, run.state["step"], run.state["elapsed"])
    with autocast(ex.x_t.device, cfg.bf16):
        x0_hat = run.net(ex.x_t, ex.t, ex.cond)
    error = (x0_hat.float() - ex.x0).pow(2)
    loss = (error if ex.weight is None else ex.weight * error).mean()
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.net.parameters(), 1.0)
    run.opt.step()
    decay = ema_decay(cfg, run.state["step"])
    with torch.no_grad():
        for pe, p in zip(run.ema.parameters(), run.net.parameters()):
            pe.lerp_(p, 1 - decay)
    return loss.item()


def train(run: Run, cfg: TrainingConfig, examples: Callable[[int], Example], *,
          validate: Callable[[UNetDenoiser], dict], export: Callable[[UNetDenoiser, dict], None],
          desc: str, on_loss: Callable[[float], None] | None = None) -> dict:
    """Train from ``run.state["step"]`` until ``max_steps`` or the time budget; returns the final state.

    ``examples(step)`` makes a batch; every ``val_every`` steps (and at the end) ``validate(ema)``
    adds to ``state["history"]`` and ``export(ema, state)`` writes the weights; every
    ``checkpoint_every`` steps (and at the end) the run is checkpointed. ``on_loss`` sees each loss.
    """
    state = run.state
    budget = cfg.wall_clock_minutes * 60
    bar = tqdm(total=cfg.max_steps, initial=state["step"], desc=desc, mininterval=10)
    losses: list[float] = []
    while state["step"] < cfg.max_steps and state["elapsed"] < budget:
        tick = time.monotonic()
        loss = _step(run, cfg, examples(state["step"]))
        state["step"] += 1
        state["elapsed"] += time.monotonic() - tick
        losses.append(loss)
        if on_loss is not None:
            on_loss(loss)
        bar.update(1)
        if state["step"] % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", minutes=f"{state['elapsed'] / 60:.1f}")
        last = state["step"] >= cfg.max_steps or state["elapsed"] >= budget
        if state["step"] % cfg.val_every == 0 or last:
            metrics = validate(run.ema.eval())
            state["history"].append({"step": state["step"], "elapsed": state["elapsed"],
                                     "loss": float(np.mean(losses[-cfg.val_every:])), **metrics})
            tqdm.write(json.dumps(state["history"][-1]))
            export(run.ema, state)
        if state["step"] % cfg.checkpoint_every == 0 or last:
            state["rng"] = run.rng.bit_generator.state
            save_checkpoint(run.folder, run.net, run.ema, run.opt, state)
    bar.close()
    return state


def save_checkpoint(folder: Path, net: UNetDenoiser, ema: UNetDenoiser, opt: torch.optim.Optimizer,
                    state: dict) -> None:
    """Write ``folder/checkpoint.{safetensors,json}`` atomically (module docstring)."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in net.state_dict().items()}
    tensors |= {f"ema.{k}": v.detach().contiguous() for k, v in ema.state_dict().items()}
    for i, p in enumerate(net.parameters()):
        s = opt.state.get(p, {})
        for k in ("exp_avg", "exp_avg_sq", "step"):
            if k in s:
                value = torch.as_tensor(s[k]).detach()
                tensors[f"opt.{i}.{k}"] = (value.reshape(-1) if k == "step" else value).contiguous()
    tensors["torch_rng"] = torch.get_rng_state()
    atomic_write(folder / "checkpoint.safetensors", lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(folder / "checkpoint.json", lambda tmp: tmp.write_text(json.dumps(state)))


def load_checkpoint(folder: Path, net: UNetDenoiser, ema: UNetDenoiser, opt: torch.optim.Optimizer) -> dict | None:
    """Restore a run written by :func:`save_checkpoint`; ``None`` when ``folder`` holds none."""
    if not (folder / "checkpoint.json").is_file():
        return None
    tensors = load_file(str(folder / "checkpoint.safetensors"))
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    for i, p in enumerate(net.parameters()):
        if f"opt.{i}.exp_avg" in tensors:
            opt.state[p] = {"step": tensors[f"opt.{i}.step"].reshape(()),
                            "exp_avg": tensors[f"opt.{i}.exp_avg"], "exp_avg_sq": tensors[f"opt.{i}.exp_avg_sq"]}
    torch.set_rng_state(tensors["torch_rng"])
    return json.loads((folder / "checkpoint.json").read_text())
