"""Task runners for ``--runner local|dask`` and the one API server a Dask run shares.

Measured here: with only Prefect's temporary API, every Dask worker process starts its own temporary
server (20-25 s per run); with one server for the run, ~5 s. :func:`shared_api` starts that one
server (or reuses the configured one) and exports its URL, so worker processes inherit it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import yaml
from prefect.settings import PREFECT_API_URL
from prefect.task_runners import ThreadPoolTaskRunner

Runner = Literal["local", "dask"]


@contextlib.contextmanager
def without_flow_heartbeats() -> Iterator[None]:
    """Run flows in this block without flow-run heartbeats, unless the user configured them.

    For a batch a person waits on (``restore batch``). Prefect joins its heartbeat thread when a
    flow ends, and that thread sleeps in 1 s steps, so every run ended on the next whole second after
    its start: 1.2 s for an empty flow, 0.5 s added to a batch on average, a quarter of a 20-clip
    batch's time. Heartbeats serve only a server-side automation that marks silent runs as crashed;
    scheduled runs under ``restore serve`` (their own processes) keep them.
    """
    if {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "PREFECT_RUNNER_HEARTBEAT_FREQUENCY"} & set(os.environ):
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


MAX_DEFAULT_WORKERS = 4  # files held in memory at once unless --workers says otherwise


def default_workers(runner: Runner, cores: int | None = None) -> int:
    """Files restored at once: one per core, up to MAX_DEFAULT_WORKERS (each then gets the remaining
    cores as torch threads). Measured here (bench/batch_scaling.py, 20 files, idle 2-core machine):
    two single-threaded files at once beat one file on two threads for every file kind, 28.1 vs 36.1 s
    for 80x96x72 MRI volumes and 3.1 vs 6.1 s for 2 s audio clips: one file's torch threads leave the
    second core idle in its Python, I/O and metrics."""
    del runner  # the same rule for threads (local) and processes (dask)
    return max(1, min(cores or os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def threads_per_file(workers: int, *, cores: int | None = None, load: float | None = None) -> int:
    """Torch threads for each of ``workers`` files restored at once: the idle cores (cores minus the
    1-minute load average) shared out, at least 1. On a busy machine extra intra-op threads only wait
    for each other: measured here under load 7 on 2 cores, one audio file took 8.4 s with 2 threads
    and 1.2 s with 1 (bench/batch_scaling.py)."""
    cores = cores or os.cpu_count() or 1
    load = os.getloadavg()[0] if load is None else load
    idle = max(1, cores - int(load))
    return max(1, idle // max(1, workers))


def task_runner(runner: Runner, workers: int, dask_config: Path | None = None):
    """ThreadPoolTaskRunner(max_workers=workers), or a DaskTaskRunner on a LocalCluster of ``workers``
    single-threaded processes, or the cluster described by ``dask_config`` (see configs/dask_slurm.yaml)."""
    if runner not in ("local", "dask"):
        raise ValueError(f"runner must be local or dask, got {runner!r}")
    if runner == "local":
        return ThreadPoolTaskRunner(max_workers=workers)
    import dask
    from prefect_dask import DaskTaskRunner

    # Dask's nanny exports MALLOC_TRIM_THRESHOLD_=65536 to its workers, which fixes glibc's mmap
    # threshold at 128 KiB: every large tensor is then mmap'd and unmapped again. Measured here, it
    # doubled torch's time per MRI volume in a worker (4.4-6.6 s vs 2.2-2.7 s). Unset it (None), so
    # workers run like a local process; a value exported in the shell still wins.
    dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})

    if os.environ.get("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL") in ("ERROR", "CRITICAL"):
        # quiet the nanny's "worker still alive after 4 s, killing" when the cluster closes
        logging.getLogger("distributed").setLevel(logging.ERROR)
    if dask_config is not None:
        config = yaml.safe_load(Path(dask_config).read_text()) or {}
        unknown = set(config) - {"cluster_class", "cluster_kwargs", "adapt_kwargs"}
        if unknown:
            raise ValueError(f"{dask_config}: unknown keys {sorted(unknown)} (allowed: cluster_class, cluster_kwargs, adapt_kwargs)")
        return DaskTaskRunner(**config)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
        "n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"})


@contextlib.contextmanager
def shared_api() -> Iterator[str]:
    """Make one Prefect API serve this process and every process it starts; yield its URL.

    With ``PREFECT_API_URL`` configured (a running server, or the test harness) that URL is exported;
    otherwise Prefect's temporary server is started once, here. It is stopped at process exit, as
    Prefect does, after its log and event workers have drained: stopping it earlier leaves them
    retrying a closed port for a minute.
    """
    url = PREFECT_API_URL.value()
    if not url:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # the instance Prefect's own ephemeral mode reuses
        server.start()  # registers its own stop at exit
        url = server.api_url
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        yield url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


@contextlib.contextmanager
def file_threads(workers: int) -> Iterator[None]:
    """Export RESTORE_THREADS (unless set) so files restored at once share the idle cores instead of fighting."""
    if "RESTORE_THREADS" in os.environ:
        yield
        return
    os.environ["RESTORE_THREADS"] = str(threads_per_file(workers))
    try:
        yield
    finally:
        os.environ.pop("RESTORE_THREADS", None)
