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


def default_workers(runner: Runner) -> int:
    """local: one file at a time (it already uses every core); dask: one single-threaded worker per core."""
    return 1 if runner == "local" else (os.cpu_count() or 1)


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
    from prefect_dask import DaskTaskRunner

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
