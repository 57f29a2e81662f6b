"""A stand-in for the modality restore functions, used by the flow tests (and their subprocesses).

It honours the contract of :mod:`restore.api`: bad input raises InputError before anything is
written; the output and its sidecar are written atomically; the sidecar record is returned.
``RESTORE_FAKE_DELAY`` (seconds) slows each file down so a test can kill a batch half-way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from restore import api
from restore.errors import InputError
from restore.outputs import atomic_write, check_output_path, sidecar_path, write_sidecar

MODEL = {"name": "fake", "version": "1"}


def make_mri(path: Path, seed: int = 0, shape=(12, 14, 10)) -> None:
    import nibabel as nib

    rng = np.random.default_rng(seed)
    data = (rng.normal(100, 20, shape)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


def make_wav(path: Path, seed: int = 0, sr: int = 8000, seconds: float = 0.25) -> None:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=t.size)).astype(np.float32), sr)


def fake_restore_file(input_path, output_path, *, reference=None, overwrite=False, progress=True, **params) -> dict:
    input_path, output_path = Path(input_path), Path(output_path)
    kind = api.kind_of(input_path)
    check_output_path(input_path, output_path, overwrite=overwrite)
    start = time.perf_counter()
    if kind == "mri":
        import nibabel as nib

        try:
            image = nib.load(str(input_path))
            data = np.asarray(image.dataobj, dtype=np.float32)
        except Exception as e:
            raise InputError(f"not a readable NIfTI file: {input_path.name} ({e})") from e
        out = nib.Nifti1Image(data * 0.5 + 50, image.affine)
        write = lambda tmp: nib.save(out, str(tmp))
    else:
        import soundfile as sf

        try:
            samples, sr = sf.read(str(input_path), dtype="float32")
        except Exception as e:
            raise InputError(f"not a readable audio file: {input_path.name} ({e})") from e
        write = lambda tmp: sf.write(str(tmp), samples * 0.5, sr, format="WAV")
    time.sleep(float(os.environ.get("RESTORE_FAKE_DELAY", "0")))
    atomic_write(output_path, write)
    record = {"kind": kind, "input": {"path": str(input_path), "sha256": api.sha256_of(input_path)},
              "output": str(output_path), "model": MODEL, "params": {"reference": str(reference), **params},
              "metrics": {"psnr_db": 30.0 + len(input_path.name) % 5, "noise_sigma": 0.1},
              "timing": {"seconds": time.perf_counter() - start}}
    write_sidecar(sidecar_path(output_path), record)
    return record


def use_fake() -> None:
    """Route restore.api.restore_file to the fake, and report the fake's model version as current."""
    from restore import batch

    api.restore_file = fake_restore_file
    batch.current_model_version = lambda kind, options: MODEL["version"]


def patch_fake(monkeypatch) -> list[str]:
    """``use_fake`` for one test (undone by pytest's monkeypatch); returns the names of the files the
    fake is called with, in order."""
    from restore import batch

    calls: list[str] = []

    def restore(input_path, output_path, **kw):
        calls.append(Path(input_path).name)
        return fake_restore_file(input_path, output_path, **kw)

    monkeypatch.setattr(api, "restore_file", restore)
    monkeypatch.setattr(batch, "current_model_version", lambda kind, options: MODEL["version"])
    return calls


if __name__ == "__main__":  # `python tests/flow_fakes.py batch IN -o OUT ...`: the CLI on the fake
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    use_fake()
    from flows.cli import main

    sys.exit(main(sys.argv[1:]))
