"""How the batch flow scales with workers: 20 small files with 1 and with 2 workers.

    .venv/bin/python bench/batch_scaling.py [--kind mri|audio] [--files 20] [--whole] [--seconds S]
        [--runs 1x2 1x1 2x1] [--runner local dask] [--repeat R]

A run ``WxT`` uses W workers (files at once) with T torch threads each: ``1x2`` is one file at a
time using both cores, ``1x1`` one single-threaded worker, ``2x1`` two single-threaded workers.
``2x1`` against ``1x1`` is the scaling of the flow itself (what orchestration leaves of a second
worker); ``2x1`` against ``1x2`` is what `restore batch --workers 2` gains over `--workers 1`, whose
one file already runs torch on both cores. Both speed-ups are printed when those runs are asked for.
Each run is repeated ``--repeat`` times (interleaved) and the median wall time is reported. Flows
run without heartbeats, as `restore batch` runs them (:func:`flows.runners.without_flow_heartbeats`).

The files are crops of sample_data (MRI: 64x64x16 voxels of t1_noisy; audio: ``--seconds`` long
clips of speech_noisy, default 2 s, each from a different offset; longer clips repeat the sample),
or with ``--whole`` copies of the sample files themselves (MRI 80x96x72, audio 4.5 s). One Prefect
API server is started for the whole benchmark (as `restore serve` would provide), so the times
below are the batch flow itself: Dask cluster start, one task per file, summary and report. Every
run uses --no-resume, so every file is restored. Prints a markdown table; the machine should be otherwise idle for a fair number.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_inputs(kind: str, n: int, folder: Path, whole: bool = False, seconds: float = 2.0) -> list[Path]:
    import shutil

    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    if whole:  # copies of the sample file itself (MRI 80x96x72 at 2 mm, audio 4.5 s at 16 kHz)
        source = ROOT / "sample_data" / ("t1_noisy.nii.gz" if kind == "mri" else "speech_noisy.wav")
        suffix = ".nii.gz" if kind == "mri" else ".wav"
        paths = [folder / f"file{i:02d}{suffix}" for i in range(n)]
        for path in paths:
            shutil.copyfile(source, path)
        return paths
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
    clip = int(seconds * sr)
    samples = np.concatenate([samples] * (clip // len(samples) + 2))
    paths = []
    for i in range(n):
        start = (i * sr // 3) % max(1, len(samples) - clip - sr)
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
    with runners.without_flow_heartbeats():  # as `restore batch` runs it
        summary = flow(str(folder), str(outdir), resume=False)
    wall = time.perf_counter() - start
    seconds = [f["seconds"] for f in summary["files"] if f["status"] == "done"]
    return {"wall": wall, "counts": summary["counts"], "file_seconds": sum(seconds) / max(1, len(seconds))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=["mri", "audio"], default="mri")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--whole", action="store_true", help="copies of the whole sample file instead of crops")
    parser.add_argument("--seconds", type=float, default=2.0, help="audio clip length (without --whole)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each setting; the median wall is reported")
    parser.add_argument("--runs", nargs="+", default=["1x2", "1x1", "2x1"], help="WORKERSxTHREADS each")
    parser.add_argument("--runner", nargs="+", choices=["local", "dask"], default=["local", "dask"],
                        help="runners to compare, each with every --runs entry")
    args = parser.parse_args()

    import flows  # noqa: F401 - Prefect defaults before Prefect is imported
    from flows.runners import shared_api

    work = Path(tempfile.mkdtemp(prefix="batch-scaling-"))
    folder = work / "in"
    make_inputs(args.kind, args.files, folder, args.whole, args.seconds)
    warmup = work / "warmup"
    make_inputs(args.kind, 1, warmup)
    walls: dict[tuple[str, str], list[float]] = {}
    per_file: dict[tuple[str, str], list[float]] = {}
    failed = 0
    with shared_api() as url:
        print(f"Prefect API {url}; {args.files} {args.kind} files in {folder}", flush=True)
        for runner in args.runner:
            run(warmup, work / f"warmup-{runner}", runner, 1, 1)  # untimed: page cache, first imports, DB tables
            for rep in range(args.repeat):
                for spec in args.runs:
                    workers, threads = (int(v) for v in spec.split("x"))
                    result = run(folder, work / f"out-{runner}-{spec}-{rep}", runner, workers, threads)
                    walls.setdefault((runner, spec), []).append(result["wall"])
                    per_file.setdefault((runner, spec), []).append(result["file_seconds"])
                    failed += result["counts"]["failed"]
                    print(f"  {runner} {spec} #{rep + 1}: {result['wall']:.1f} s {result['counts']}", flush=True)
    load = os.getloadavg()[0]
    median = {key: statistics.median(v) for key, v in walls.items()}
    print(f"\n{args.files} {args.kind} files; median of {args.repeat} run(s)\n")
    print("| runner | workers x threads | batch wall (s), median | all runs (s) | mean s per file (in task) |")
    print("|---|---|---|---|---|")
    for (runner, spec), values in walls.items():
        workers, threads = spec.split("x")
        print(f"| {runner} | {workers} x {threads} | {median[runner, spec]:.2f} | "
              f"{' '.join(f'{v:.1f}' for v in values)} | {statistics.mean(per_file[runner, spec]):.2f} |")
    for runner in args.runner:
        for base, label in (("1x1", "one single-threaded worker"), ("1x2", "one worker on all cores")):
            if (runner, base) in median and (runner, "2x1") in median:
                print(f"{runner}: 2 workers vs {label} ({base}): "
                      f"{median[runner, base] / median[runner, '2x1']:.2f}x")
    print(f"\n{os.cpu_count()} cores; 1-min load average at the end: {load:.1f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
