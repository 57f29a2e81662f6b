"""How the batch flow scales with workers: 20 small files with 1 and with 2 workers.

    .venv/bin/python bench/batch_scaling.py [--kind mri|audio] [--files 20] [--runs 1x2 1x1 2x1] [--runner dask|local]

A run ``WxT`` uses W workers (files at once) with T torch threads each: ``1x2`` is one file at a
time using both cores, ``1x1`` one single-threaded worker, ``2x1`` two single-threaded workers.

The files are crops of sample_data (MRI: 64x64x16 voxels of t1_noisy; audio: 2 s clips of
speech_noisy, each from a different offset). One Prefect API server is started for the whole
benchmark (as `restore serve` would provide), so the times below are the batch flow itself:
Dask cluster start, one task per file, summary and report. Every run uses --no-resume, so every
file is restored. Prints a markdown table; the machine should be otherwise idle for a fair number.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_inputs(kind: str, n: int, folder: Path) -> list[Path]:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    if kind == "mri":
        from restore.mri.io import load_nifti, save_nifti

        volume = load_nifti(ROOT / "sample_data" / "t1_noisy.nii.gz")
        x, y, z = (s // 2 for s in volume.data.shape[:3])
        paths = []
        for i in range(n):
            dz = (i % 5) - 2
            crop = np.ascontiguousarray(volume.data[x - 32:x + 32, y - 32:y + 32, z - 8 + dz:z + 8 + dz])
            path = folder / f"crop{i:02d}.nii.gz"
            save_nifti(path, crop, volume)
            paths.append(path)
        return paths
    import soundfile as sf

    samples, sr = sf.read(ROOT / "sample_data" / "speech_noisy.wav", dtype="float32", always_2d=True)
    clip = 2 * sr
    paths = []
    for i in range(n):
        start = (i * sr // 3) % max(1, len(samples) - clip)
        path = folder / f"clip{i:02d}.wav"
        sf.write(path, samples[start:start + clip], sr)
        paths.append(path)
    return paths


def run(folder: Path, outdir: Path, runner: str, workers: int, threads: int) -> dict:
    from flows import runners
    from flows.batch import restore_batch

    flow = restore_batch.with_options(task_runner=runners.task_runner(runner, workers))
    os.environ["RESTORE_THREADS"] = str(threads)
    start = time.perf_counter()
    summary = flow(str(folder), str(outdir), resume=False)
    wall = time.perf_counter() - start
    seconds = [f["seconds"] for f in summary["files"] if f["status"] == "done"]
    return {"wall": wall, "counts": summary["counts"], "file_seconds": sum(seconds) / max(1, len(seconds))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["mri", "audio"], default="mri")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--runs", nargs="+", default=["1x2", "1x1", "2x1"], help="WORKERSxTHREADS each")
    parser.add_argument("--runner", choices=["dask", "local"], default="dask")
    args = parser.parse_args()

    import flows  # noqa: F401 - Prefect defaults before Prefect is imported
    from flows.runners import shared_api

    work = Path(tempfile.mkdtemp(prefix="batch-scaling-"))
    folder = work / "in"
    make_inputs(args.kind, args.files, folder)
    warmup = work / "warmup"
    make_inputs(args.kind, 1, warmup)
    rows = []
    with shared_api() as url:
        print(f"Prefect API {url}; {args.files} {args.kind} files in {folder}; runner {args.runner}", flush=True)
        run(warmup, work / "warmup-out", args.runner, 1, 1)  # untimed: page cache, first imports, DB tables
        for spec in args.runs:
            workers, threads = (int(v) for v in spec.split("x"))
            result = run(folder, work / f"out{spec}", args.runner, workers, threads)
            rows.append((workers, threads, result))
            print(f"  {spec}: {result['wall']:.1f} s {result['counts']}", flush=True)
    load = os.getloadavg()[0]
    print(f"\n| workers x threads | batch wall (s) | mean s per file (in task) | speed-up vs {args.runs[0]} |")
    print("|---|---|---|---|")
    for workers, threads, result in rows:
        print(f"| {workers} x {threads} | {result['wall']:.1f} | {result['file_seconds']:.2f} "
              f"| {rows[0][2]['wall'] / result['wall']:.2f}x |")
    print(f"\n{os.cpu_count()} cores; 1-min load average at the end: {load:.1f}")
    failed = sum(r["counts"]["failed"] for _, _, r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
