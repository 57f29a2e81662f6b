"""Device choice and optional bf16 autocast; code elsewhere follows the input tensor's device."""

from __future__ import annotations

import contextlib
import os
from typing import Literal

import torch

DeviceName = Literal["auto", "cpu", "cuda"]


def resolve_device(name: DeviceName | str = "auto") -> torch.device:
    """``auto`` is CUDA when present, else CPU. Asking for CUDA without it is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but no CUDA device is available (use cpu)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``bf16`` is set, else a no-op context."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def set_threads(n: int | None = None) -> None:
    """Use ``n`` threads (default: ``RESTORE_THREADS``, else all cores) in torch's intra-op pool and in
    numpy/scipy's BLAS and OpenMP pools, so files restored side by side each keep to their share.

    Measured with 20 sample MRI volumes (bench/batch_scaling.py --whole): a "single-threaded" worker
    whose BLAS still ran a thread per core took 49-51 s against 57 s with every pool at 1 thread.
    """
    from threadpoolctl import threadpool_limits

    n = n or int(os.environ.get("RESTORE_THREADS", "0")) or os.cpu_count() or 1
    torch.set_num_threads(n)
    threadpool_limits(limits=n)


def single_threaded_blas() -> contextlib.AbstractContextManager:
    """Limit numpy/scipy BLAS and LAPACK to one thread inside the block.

    The AR solves (:mod:`restore.audio.ar`) are many small banded systems: OpenBLAS threads only
    spin there, and next to torch's threads they slowed a training step 10x on this 2-core machine.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
