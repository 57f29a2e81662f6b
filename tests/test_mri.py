"""MRI: noise estimate against known sigma, I/O geometry, bad input, sidecar and pipeline mechanics."""

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import phantom, write_nifti

from restore.cli import main
from restore.metrics.image import psnr, ssim
from restore.mri.io import load_nifti, save_nifti
from restore.mri.noise import add_rician_noise, estimate_gaussian_sigma, estimate_rician_sigma
from restore.mri.pipeline import restore_nifti
from restore.mri.quality import residual_structure


@pytest.mark.parametrize("percent", [1, 3, 5, 10, 15])
def test_rician_sigma_within_5_percent(percent):
    clean = phantom((96, 96, 64))  # small volumes have too few blocks for a 5% bound at every seed
    sigma = percent / 100 * float(np.percentile(clean, 99))
    noisy = add_rician_noise(clean, sigma, np.random.default_rng(percent))
    est = estimate_rician_sigma(noisy)
    assert abs(est.sigma / sigma - 1) < 0.05, (est, sigma)


def test_rician_sigma_with_no_background():
    g = np.meshgrid(*[np.linspace(-1, 1, 48)] * 3, indexing="ij")
    clean = (500 + 100 * np.sin(2 * g[0]) + 50 * g[1]).astype(np.float32)  # signal everywhere
    noisy = add_rician_noise(clean, 20.0, np.random.default_rng(1))
    assert abs(estimate_rician_sigma(noisy).sigma / 20.0 - 1) < 0.05


@pytest.mark.parametrize("case", ["dark-15pct", "no-background-15pct", "slice-8bit", "anisotropic"])
def test_rician_sigma_stable_over_draws(case):
    """Within 10% on every one of 10 noise draws where the old two-branch estimate switched
    branches or picked biased background blocks (it gave 0.7x on dark volumes)."""
    g = np.meshgrid(*[np.linspace(-1, 1, n) for n in (64, 64, 24)], indexing="ij")
    texture = 1 + 0.2 * np.sin(5 * g[0]) * np.cos(4 * g[1])
    head = (g[0] ** 2 / 0.7 + g[1] ** 2 / 0.8 + g[2] ** 2 < 1).astype(np.float32)
    if case == "dark-15pct":  # T2-like: tissue at ~2 sigma (bright CSF sets p99.9) on a large empty background
        clean, pct = 300 * head * texture + 700 * (g[0] ** 2 + g[1] ** 2 < 0.02), 15
    elif case == "no-background-15pct":
        clean, pct = 900 + 300 * texture, 15
    elif case == "slice-8bit":  # one 128x128 slice on an 8-bit grid
        gy = np.meshgrid(np.linspace(-1, 1, 128), np.linspace(-1, 1, 128), indexing="ij")
        clean, pct = ((gy[0] ** 2 + gy[1] ** 2 < 0.8) * (150 + 60 * np.sin(6 * gy[0])))[:, :, None], 6
    else:  # thick slices: 6 of them
        clean, pct = (600 * head * texture)[:, :, ::4], 9
    clean = clean.astype(np.float32)
    sigma = pct / 100 * float(np.percentile(clean, 99.9))
    for draw in range(10):
        noisy = add_rician_noise(clean, sigma, np.random.default_rng(draw))
        if case == "slice-8bit":
            noisy = np.round(noisy)
        ratio = estimate_rician_sigma(noisy).sigma / sigma
        assert abs(ratio - 1) < 0.1, (case, draw, ratio)


def test_gaussian_sigma_of_white_noise():
    noise = np.random.default_rng(2).normal(0, 3.0, (40, 40, 40))
    assert abs(estimate_gaussian_sigma(noise) / 3.0 - 1) < 0.03


def test_residual_structure_separates_noise_from_anatomy():
    clean = phantom((48, 48, 32))
    rng = np.random.default_rng(3)
    noisy = clean + rng.normal(0, 20, clean.shape).astype(np.float32)
    mask = clean > 0
    assert residual_structure(noisy, clean, mask) < 0.1  # removed exactly the noise
    assert residual_structure(noisy, clean * 0.7, mask) > 0.5  # removed anatomy too


def test_metrics_identity_and_order():
    ref = phantom()
    assert psnr(ref, ref) == float("inf")
    assert ssim(ref, ref) == pytest.approx(1.0)
    worse = ref + np.random.default_rng(4).normal(0, 50, ref.shape)
    better = ref + np.random.default_rng(5).normal(0, 10, ref.shape)
    assert psnr(ref, better) > psnr(ref, worse)
    assert ssim(ref, better) > ssim(ref, worse)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_io_round_trip_keeps_geometry_and_dtype(tmp_path, dtype):
    data = phantom() / (4 if dtype == np.uint8 else 1)
    src = write_nifti(tmp_path / "in.nii.gz", data, dtype=dtype)
    vol = load_nifti(src)
    save_nifti(tmp_path / "out.nii", vol.data, vol)
    a, b = nib.load(src), nib.load(tmp_path / "out.nii")
    assert b.get_data_dtype() == a.get_data_dtype()
    np.testing.assert_array_equal(a.affine, b.affine)
    assert int(b.header["qform_code"]) == 1 and int(b.header["sform_code"]) == 2
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_pipeline_writes_output_sidecar_and_keeps_geometry(tmp_path, noisy_volume, tiny_mri_model):
    noisy, clean = noisy_volume
    before = noisy.read_bytes()
    out = tmp_path / "out" / "restored.nii.gz"
    record = restore_nifti(noisy, out, reference=clean, model_path=tiny_mri_model, progress=False, samples=2)
    assert noisy.read_bytes() == before
    img, src = nib.load(out), nib.load(noisy)
    assert img.shape == src.shape and img.get_data_dtype() == src.get_data_dtype()
    np.testing.assert_array_equal(img.affine, src.affine)
    side = json.loads((tmp_path / "out" / "restored.json").read_text())
    assert side["metrics"]["t_star"] > 0 and side["params"]["samples"] == 2
    assert "psnr_head" in side["metrics"]["reference"]["output"]
    assert (tmp_path / "out" / "restored_std.nii.gz").is_file()
    assert record["input"]["sha256"] == side["input"]["sha256"]
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_four_d_and_single_slice(tmp_path, tiny_mri_model):
    clean = phantom((20, 24, 6))
    four_d = np.stack([clean, clean * 0.8], axis=-1)
    noisy = add_rician_noise(four_d, 25.0, np.random.default_rng(6))
    src = write_nifti(tmp_path / "dwi.nii.gz", noisy)
    restore_nifti(src, tmp_path / "dwi_out.nii.gz", model_path=tiny_mri_model, progress=False)
    assert nib.load(tmp_path / "dwi_out.nii.gz").shape == noisy.shape
    one = write_nifti(tmp_path / "one.nii.gz", noisy[:, :, 3:4, 0])
    restore_nifti(one, tmp_path / "one_out.nii.gz", model_path=tiny_mri_model, progress=False)
    assert nib.load(tmp_path / "one_out.nii.gz").shape == (20, 24, 1)


def test_seeded_runs_are_identical(tmp_path, noisy_volume, tiny_mri_model):
    noisy, _ = noisy_volume
    for name in ("a", "b"):
        restore_nifti(noisy, tmp_path / f"{name}.nii", model_path=tiny_mri_model, progress=False, samples=2, seed=7)
    assert (tmp_path / "a.nii").read_bytes()[352:] == (tmp_path / "b.nii").read_bytes()[352:]


def _bad_inputs(tmp_path):
    good = write_nifti(tmp_path / "good.nii.gz", phantom())
    text = tmp_path / "notes.nii.gz"
    text.write_text("not an image")
    raw = (tmp_path / "good.nii.gz").read_bytes()
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(raw[: len(raw) // 2])
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(raw[:40] + bytes(200) + raw[240:])
    zeros = write_nifti(tmp_path / "zeros.nii.gz", np.zeros((8, 8, 8)))
    nan = phantom()
    nan[3, 3, 3] = np.nan
    nans = write_nifti(tmp_path / "nan.nii.gz", nan, dtype=np.float32)
    wav = tmp_path / "x.txt"
    wav.write_text("hello")
    existing = tmp_path / "exists.nii.gz"
    existing.write_bytes(b"keep me")
    return {
        "not nifti": ([str(text)], "cannot read"),
        "truncated": ([str(truncated)], "truncated|cannot read"),
        "corrupt gzip": ([str(corrupt)], "corrupt|cannot read"),
        "all zero": ([str(zeros)], "all zeros"),
        "nan": ([str(nans)], "NaN"),
        "wrong type": ([str(wav)], "NIfTI"),
        "output is input": ([str(good), "-o", str(good)], "is the input"),
        "existing output": ([str(good), "-o", str(existing)], "--overwrite"),
        "unwritable folder": ([str(good), "-o", "/sys/restore_test/out.nii.gz"], "not writable"),
        "missing input": ([str(tmp_path / "nope.nii.gz")], "not found"),
    }


@pytest.mark.parametrize("case", ["not nifti", "truncated", "corrupt gzip", "all zero", "nan", "wrong type",
                                  "output is input", "existing output", "unwritable folder", "missing input"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, case, tiny_mri_model):
    args, message = _bad_inputs(tmp_path)[case]
    if "-o" not in args:
        args = [*args, "-o", str(tmp_path / "result.nii.gz")]
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    code = main(["mri", *args, "--model", str(tiny_mri_model), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("restore: error:")
    import re

    assert re.search(message, err), err
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_io_keeps_intensity_scaling(tmp_path):
    raw = (phantom() / 2).astype(np.int16)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(0.25, 10.0)
    nib.save(img, tmp_path / "scaled.nii")
    vol = load_nifti(tmp_path / "scaled.nii")
    save_nifti(tmp_path / "copy.nii", vol.data, vol)
    out = nib.load(tmp_path / "copy.nii")
    assert (out.dataobj.slope, out.dataobj.inter) == (0.25, 10.0)
    np.testing.assert_array_equal(out.dataobj.get_unscaled(), raw)


def test_three_orientations_average_over_axes(tmp_path, noisy_volume, tiny_mri_model):
    from restore.mri.denoise import denoise_orientations, denoise_volume
    from restore.weights import load_model

    noisy, _ = noisy_volume
    data = load_nifti(noisy).data
    model = load_model(tiny_mri_model).model
    per_axis = [denoise_volume(data, 30.0, model, axis=a, seed=i, bf16=False).data for i, a in enumerate([2, 0, 1])]
    averaged = denoise_orientations(data, 30.0, model, axes=[2, 0, 1], bf16=False).data
    np.testing.assert_allclose(averaged, np.mean(per_axis, axis=0), rtol=1e-6, atol=1e-3)
    record = restore_nifti(noisy, tmp_path / "o3.nii.gz", orientations=3, model_path=tiny_mri_model, progress=False)
    assert record["params"]["orientations"] == 3
    assert record["metrics"]["refine"]["pilot_shift_sigma2"] == 0.0  # the flat-top kernel is for one orientation


def test_channels_last_weights_restore_the_same_volume(noisy_volume, tiny_mri_model):
    """The pipeline loads MRI nets channels-last for speed; the restored volume must not change."""
    import torch

    from restore.mri.denoise import denoise_volume
    from restore.mri.pipeline import cached_model
    from restore.weights import load_model

    fast = cached_model(str(tiny_mri_model), "cpu").model
    plain = load_model(tiny_mri_model).model
    assert next(p for p in fast.parameters() if p.ndim == 4).is_contiguous(memory_format=torch.channels_last)
    data = np.asarray(nib.load(noisy_volume[0]).dataobj, dtype=np.float32)
    a = denoise_volume(data, 30.0, fast, steps=1, bf16=False).data
    b = denoise_volume(data, 30.0, plain, steps=1, bf16=False).data
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3 * float(np.abs(b).max()))


def test_refine_stage_is_on_by_default_and_can_be_skipped(tmp_path, noisy_volume, tiny_mri_model):
    from restore.mri.refine import H_CANDIDATES, PILOT_SHIFT

    noisy, _ = noisy_volume
    on = restore_nifti(noisy, tmp_path / "on.nii.gz", model_path=tiny_mri_model, progress=False)
    off = restore_nifti(noisy, tmp_path / "off.nii.gz", model_path=tiny_mri_model, progress=False, refine=False)
    assert on["params"]["refine"] and not off["params"]["refine"]
    chosen = on["metrics"]["refine"]["h_over_sigma"]
    assert set(chosen) <= {0.0, *H_CANDIDATES} and len(chosen) == len(on["metrics"]["refine"]["class_edges_std_over_sigma"]) + 1
    assert on["metrics"]["refine"]["search_window"] in (5, 7) and "refine" not in off["metrics"]
    assert on["metrics"]["refine"]["pilot_shift_sigma2"] == PILOT_SHIFT > 0
    assert set(on["metrics"]["refine"]["estimated_mse"]) == {str(h) for h in (0.0, *H_CANDIDATES)}
    a, b = (np.asarray(nib.load(tmp_path / f"{n}.nii.gz").dataobj) for n in ("on", "off"))
    assert a.shape == b.shape and not np.array_equal(a, b)
    assert main(["mri", str(noisy), "-o", str(tmp_path / "cli.nii.gz"), "--no-refine", "--quiet",
                 "--model", str(tiny_mri_model)]) == 0
    assert json.loads((tmp_path / "cli.json").read_text())["params"]["refine"] is False
