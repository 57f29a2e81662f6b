"""``restore batch`` and ``restore serve``: called by ``restore.cli`` with the arguments after ``restore``.

Prefect is imported only after the environment defaults are set (:mod:`flows.environment`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from flows.environment import serve_record_path, set_prefect_defaults
from restore.errors import InputError


def batch_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="restore batch", description=(
        "Restore a folder (recursive), a glob pattern or a CSV manifest into OUTDIR with a Prefect flow. "
        "X_noisy.ext is restored with X_clean.ext as its reference when present; X_clean.ext itself is not "
        "restored. A DICOM series folder is one file (a mixed folder: one per series). A BIDS dataset "
        "(dataset_description.json at its root) becomes a derivatives dataset in OUTDIR (desc-denoised). "
        "Writes restored files, sidecars, batch_summary.csv/.json and report.html."))
    p.add_argument("input", help="folder, quoted glob pattern ('scans/*.nii.gz') or .csv manifest "
                                 "(columns path[,reference,task,output,<option>...])")
    p.add_argument("-o", "--outdir", required=True, help="output folder")
    p.add_argument("--runner", choices=["local", "dask"], default="local",
                   help="local: threads in this process; dask: a Dask LocalCluster of processes (default: local)")
    p.add_argument("--workers", type=int, default=None,
                   help="files restored at once (default: one per core, at most 4)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="skip files whose output and sidecar match the input, options and model (default); "
                        "--no-resume redoes every file")
    p.add_argument("--dask-config", type=Path, default=None,
                   help="YAML with cluster_class, cluster_kwargs, adapt_kwargs (see configs/dask_slurm.yaml)")
    p.add_argument("--steps", type=int, default=None, help="reverse steps (restore function default if unset)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    p.add_argument("--participant-label", nargs="+", metavar="LABEL", default=None,
                   help="BIDS input: restore only these subjects (01 or sub-01)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="show Prefect's log on the console")
    return p


def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="restore serve", description=(
        "Start a local Prefect server (unless PREFECT_API_URL points at one) and serve the watch-inbox "
        "deployment: on the cron schedule it restores new files of INBOX into OUTDIR. Scheduled runs need "
        "a running server: Prefect's temporary API never fires schedules. Stop with Ctrl-C."))
    p.add_argument("--inbox", required=True, type=Path, help="folder to watch")
    p.add_argument("-o", "--outdir", required=True, type=Path, help="output folder")
    p.add_argument("--cron", default="*/10 * * * *", help="schedule (default: every 10 minutes)")
    p.add_argument("--settle-seconds", type=float, default=60.0,
                   help="ignore files modified in the last N seconds (still being copied)")
    p.add_argument("--limit", type=int, default=1, help="files restored at once across all runs on this server")
    p.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=4200)
    return p


def restore_options(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("steps", args.steps), ("seed", args.seed), ("device", args.device)) if v is not None}


def use_running_serve() -> str | None:
    """If ``restore serve`` runs on this machine (and PREFECT_API_URL is unset), point at its API."""
    record = serve_record_path()
    if "PREFECT_API_URL" in os.environ or not record.is_file():
        return None
    try:
        url = json.loads(record.read_text())["api_url"]
        import httpx

        if httpx.get(f"{url}/health", timeout=1.0).status_code != 200:
            return None
    except Exception:  # noqa: BLE001 - a stale record only means: use the temporary API
        return None
    os.environ["PREFECT_API_URL"] = url
    return url


def run_batch(argv: list[str]) -> int:
    args = batch_parser().parse_args(argv)
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be >= 1, got {args.workers}")
    # the progress bar and the summary below replace Prefect's console log (the API still keeps it)
    set_prefect_defaults(console_level="WARNING" if args.verbose else "CRITICAL")
    use_running_serve()

    from flows import runners
    from flows.batch import restore_batch
    from restore import api, batch

    if not batch.discover(args.input, args.outdir, participant_labels=args.participant_label):  # bad input: one line, before a flow runs
        raise InputError(f"no MRI or audio files in {args.input} (looked for {', '.join(api.MRI_SUFFIXES + api.AUDIO_SUFFIXES)} and DICOM series)")
    workers = args.workers or runners.default_workers(args.runner)
    flow = restore_batch.with_options(task_runner=runners.task_runner(args.runner, workers, args.dask_config))
    run = functools.partial(flow, args.input, str(args.outdir), resume=args.resume, options=restore_options(args),
                            progress=not args.no_progress, participant_labels=args.participant_label,
                            return_state=True)
    with runners.file_threads(workers), runners.without_flow_heartbeats():
        if args.runner == "dask":
            with runners.shared_api():
                state = run()
        else:
            state = run()
    summary = state.result(raise_on_failure=False)
    if isinstance(summary, BaseException):  # the flow itself failed (not one of its files)
        raise summary
    return print_summary(summary)


def print_summary(summary: dict) -> int:
    c = summary["counts"]
    print(f"restore batch: {c['done']} done, {c['skipped']} skipped, {c['failed']} failed of {c['total']}")
    for f in summary["files"]:
        if f["status"] == "failed":
            print(f"  failed: {f['input']}: {f['error']}", file=sys.stderr)
    print(f"report: {summary['report']}")
    return 1 if c["failed"] else 0


def start_server(host: str, port: int, timeout: float = 120.0) -> subprocess.Popen:
    """``prefect server start`` as a child process; returns once /api/health answers."""
    import httpx

    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    process = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port",
                                str(port)], env=env)
    url, deadline = f"http://{host}:{port}/api/health", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {process.returncode} (is port {port} in use?)")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"prefect server did not answer on {url} within {timeout:.0f} s")


def run_serve(argv: list[str]) -> int:
    args = serve_parser().parse_args(argv)
    if not args.inbox.is_dir():
        raise InputError(f"inbox folder not found: {args.inbox}")
    set_prefect_defaults()
    server, record = None, serve_record_path()
    if "PREFECT_API_URL" not in os.environ:
        server = start_server(args.host, args.port)
        os.environ["PREFECT_API_URL"] = f"http://{args.host}:{args.port}/api"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"api_url": os.environ["PREFECT_API_URL"], "pid": os.getpid()}) + "\n")
        print(f"Prefect server and UI: http://{args.host}:{args.port}", flush=True)
    try:
        from prefect.client.orchestration import get_client

        from flows.batch import CONCURRENCY_TAG
        from flows.inbox import watch_inbox

        with get_client(sync_client=True) as client:
            client.create_concurrency_limit(tag=CONCURRENCY_TAG, concurrency_limit=args.limit)
        print(f"serving watch-inbox: {args.inbox} -> {args.outdir} on cron '{args.cron}'", flush=True)
        watch_inbox.serve(name="inbox", cron=args.cron, parameters={
            "inbox": str(args.inbox.resolve()), "outdir": str(args.outdir.resolve()),
            "settle_seconds": args.settle_seconds})
    finally:
        if server is not None:
            record.unlink(missing_ok=True)
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("batch", "serve"):
        raise InputError("flows.cli expects 'batch' or 'serve' first")
    return run_batch(argv[1:]) if argv[0] == "batch" else run_serve(argv[1:])
