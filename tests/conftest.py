"""Shared fixtures: a tiny untrained MRI model (pipeline mechanics) and small NIfTI volumes."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from restore.mri.noise import add_rician_noise
from restore.nets import UNetConfig, UNetDenoiser
from restore.weights import save_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_mri_model(tmp_path_factory) -> Path:
    """Random weights with the shipped model's interface (2 neighbours + sigma channel)."""
    torch.manual_seed(0)
    cfg = UNetConfig(cond_channels=6, channels=(8, 8), attention_levels=(False, False), norm_num_groups=4,
                     num_head_channels=8, extra={"neighbours": 2})
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(UNetDenoiser(cfg).eval(), path, {"name": "tiny", "version": "test"})
    return path


@pytest.fixture(scope="session")
def tiny_fill_model(tmp_path_factory) -> Path:
    """Random weights with the shipped fill model's interface (3 neighbours, masks, sigma)."""
    torch.manual_seed(1)
    cfg = UNetConfig(cond_channels=15, channels=(8, 8), attention_levels=(False, False), norm_num_groups=4,
                     num_head_channels=8, extra={"neighbours": 3, "start_sigma": 0.5})
    path = tmp_path_factory.mktemp("model") / "tiny_fill.safetensors"
    save_model(UNetDenoiser(cfg).eval(), path, {"name": "tiny_fill", "version": "test"})
    return path


def phantom(shape=(24, 28, 10)) -> np.ndarray:
    """A head-like ellipsoid with smooth intensity variation on a zero background."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r = sum(g**2 / a for g, a in zip(grids, (0.7, 0.8, 1.0)))
    return ((r < 1) * (600 + 200 * np.sin(3 * grids[0]) * np.cos(2 * grids[1]))).astype(np.float32)


def write_nifti(path: Path, data: np.ndarray, dtype=np.int16, zooms=(1.2, 1.0, 2.5)) -> Path:
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = [-10.0, 20.0, 5.0]
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    nib.save(img, path)
    return path


@pytest.fixture
def noisy_volume(tmp_path) -> tuple[Path, Path]:
    clean = phantom()
    noisy = add_rician_noise(clean, 30.0, np.random.default_rng(0))
    return write_nifti(tmp_path / "noisy.nii.gz", noisy), write_nifti(tmp_path / "clean.nii.gz", clean)


@pytest.fixture(scope="session")
def tiny_inpaint_model(tmp_path_factory) -> Path:
    """Random weights with the shipped audio inpainting model's interface (AR guess + missing share)."""
    torch.manual_seed(2)
    cfg = UNetConfig(data_channels=2, cond_channels=3, channels=(8, 8), attention_levels=(False, False),
                     norm_num_groups=4, num_head_channels=8)
    path = tmp_path_factory.mktemp("model") / "tiny_inpaint.safetensors"
    save_model(UNetDenoiser(cfg).eval(), path, {"name": "audio_inpaint", "version": "test",
                                                "inference": {"fill_sigma": 0.3, "inference_steps": 1}})
    return path
