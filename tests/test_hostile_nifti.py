"""Hostile and odd NIfTI files: fail fast in one line without large allocations; complex data as magnitude."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from restore.cli import main
from restore.errors import InputError
from restore.mri import io
from restore.mri.io import load_nifti

MIB = 1 << 20


def header_bytes(shape: tuple[int, ...], dtype=np.int16) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    return bytes(header.binaryblock) + b"\0" * 4  # 348-byte header, empty extension flag


def peak_while_refused(path: Path, match: str) -> int:
    """Peak bytes traced by Python and numpy while load_nifti refuses ``path``."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=match):
            load_nifti(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_huge_declared_volume_over_a_tiny_nii_is_refused_without_allocating(tmp_path, capsys):
    path = tmp_path / "huge.nii"
    path.write_bytes(header_bytes((2000, 2000, 2000)) + b"\1" * 100)  # declares 16 GB in 452 bytes
    assert peak_while_refused(path, r"declares 2000x2000x2000 int16.*needs 16000000352 bytes, the file has 452") < 2 * MIB
    assert main(["mri", str(path), "-o", str(tmp_path / "out.nii.gz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "truncated or hostile header" in err
    assert not (tmp_path / "out.nii.gz").exists()


def test_huge_declared_volume_in_a_small_gzip_is_refused_without_decompressing(tmp_path):
    path = tmp_path / "bomb.nii.gz"
    # 4 GiB of zeros declared; the file holds a few MB of real zeros, more than the header's gzip ISIZE admits
    path.write_bytes(gzip.compress(header_bytes((1024, 1024, 1024), np.float32) + bytes(4 * MIB)))
    assert path.stat().st_size < 64 * 1024
    assert peak_while_refused(path, "more than a .*-byte gzip file can hold") < 2 * MIB


def test_truncated_gzip_within_the_ratio_bound_is_a_clean_error(tmp_path):
    path = tmp_path / "short.nii.gz"
    noise = np.random.default_rng(0).integers(0, 255, 200_000, dtype=np.uint8).tobytes()  # incompressible
    path.write_bytes(gzip.compress(header_bytes((100, 100, 40), np.int16) + noise))  # declares 800 kB, has 200
    assert peak_while_refused(path, "cannot read short.nii.gz") < 4 * MIB


def test_declared_volume_larger_than_free_memory_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "fits.nii"
    nib.save(nib.Nifti1Image(np.ones((32, 32, 32), np.int16), np.eye(4)), str(path))
    monkeypatch.setattr(io, "_available_bytes", lambda: 64 * 1024)
    with pytest.raises(InputError, match=r"as float32 that needs 128 KiB|as float32 that needs 0.125 MiB"):
        load_nifti(path)
    monkeypatch.setattr(io, "_available_bytes", lambda: None)  # no /proc/meminfo: no memory check
    assert load_nifti(path).data.shape == (32, 32, 32)


def test_complex_data_is_taken_as_magnitude_and_said_so(tmp_path, tiny_mri_model):
    rng = np.random.default_rng(0)
    magnitude = rng.normal(100, 10, (16, 16, 8)).astype(np.float32)
    phase = rng.uniform(-np.pi, np.pi, magnitude.shape)
    path = tmp_path / "complex.nii.gz"
    nib.save(nib.Nifti1Image((magnitude * np.exp(1j * phase)).astype(np.complex64), np.eye(4)), str(path))
    volume = load_nifti(path)
    assert volume.complex_taken_as_magnitude and volume.on_disk_dtype == np.float32
    np.testing.assert_allclose(volume.data, magnitude, rtol=1e-5)
    out = tmp_path / "out.nii.gz"
    assert main(["mri", str(path), "-o", str(out), "--model", str(tiny_mri_model), "--quiet", "--no-refine"]) == 0
    record = json.loads(out.with_name("out.json").read_text())
    assert record["input"]["complex_taken_as_magnitude"] is True
    assert nib.load(str(out)).get_data_dtype() == np.float32
