"""Training data for the MRI denoiser: real T1 volumes that install offline, augmented on the fly.

Sources (no downloads): Debian ``mricron-data`` (``/usr/share/mricron/templates``) and the MNI152
template inside the ``nilearn`` wheel (``nilearn:mni152``). Each training volume is resampled to
several voxel sizes; every batch draws slabs of ``2n + 1`` neighbouring slices in all three
orientations, with flips, an intensity gamma and Rician noise whose sigma spans the configured
range (fraction of the 99th percentile).

Three heads (two of them Colin27) are few, so :class:`Augment` can also make new anatomy and
scanners out of them: a smooth in-plane deformation, a Gaussian blur (a wider point-spread
function, or an average template such as MNI152) and a smooth multiplicative bias field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from restore.errors import InputError
from restore.mri.noise import add_rician_noise

MRICRON = Path("/usr/share/mricron/templates")


def load_source(spec: str) -> tuple[np.ndarray, tuple[float, ...]]:
    """A training/validation volume by name: ``mricron:ch2.nii.gz``, ``nilearn:mni152`` or a path.

    Returns the data (float32, scaled so its 99th percentile is 1) and its voxel size in mm.
    """
    if spec.startswith("nilearn:"):
        try:
            from nilearn.datasets import load_mni152_template
        except ImportError:
            raise InputError("nilearn is not installed: pip install nilearn (or `pip install -e .[train]`)") from None
        if spec != "nilearn:mni152":
            raise InputError(f"unknown nilearn volume {spec!r} (only nilearn:mni152)")
        img = load_mni152_template(resolution=1)
    else:
        path = MRICRON / spec.split(":", 1)[1] if spec.startswith("mricron:") else Path(spec)
        if not path.is_file():
            hint = " (apt-get install mricron-data)" if spec.startswith("mricron:") else ""
            raise InputError(f"training volume not found: {path}{hint}")
        img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float32)
    data = np.clip(data, 0, None)
    return data / np.percentile(data, 99), tuple(float(z) for z in img.header.get_zooms()[:3])


def resample(data: np.ndarray, zooms: tuple[float, ...], voxel_mm: tuple[float, float, float]) -> np.ndarray:
    """Linear resampling to ``voxel_mm``, Gaussian anti-aliasing before any downsampling."""
    factor = np.array(zooms) / np.array(voxel_mm)
    if np.allclose(factor, 1):
        return data
    smooth = np.where(factor < 1, 0.5 / factor, 0)  # ~ Nyquist of the new grid
    if np.any(smooth > 0):
        data = ndimage.gaussian_filter(data, smooth)
    return ndimage.zoom(data, factor, order=1).astype(np.float32)


@dataclass(frozen=True)
class TrainVolume:
    data: np.ndarray  # (X, Y, Z), 99th percentile ~ 1
    name: str
    slices: tuple[np.ndarray, np.ndarray, np.ndarray]  # per axis: indices of slices with foreground

    @classmethod
    def of(cls, data: np.ndarray, name: str) -> TrainVolume:
        """``data`` (p99 ~ 1) with the slices of each axis that hold more than 2% foreground."""
        fg = data > 0.1
        slices = tuple(np.flatnonzero(fg.mean(axis=tuple(a for a in range(3) if a != ax)) > 0.02) for ax in range(3))
        return cls(data, name, slices)


def build_training_set(sources: list[str], voxel_sizes: list[list[float]]) -> list[TrainVolume]:
    """Every source at every voxel size that does not upsample it by more than 1.6x."""
    volumes = []
    for spec in sources:
        data, zooms = load_source(spec)
        for voxel in voxel_sizes:
            if min(zooms) / min(voxel) > 1.6:
                continue
            name = f"{spec}@{'x'.join(f'{z:g}' for z in voxel)}mm"
            volumes.append(TrainVolume.of(resample(data, zooms, tuple(voxel)), name))
    return volumes


@dataclass(frozen=True)
class Augment:
    """Per-slab augmentation of the clean anatomy before the noise is added."""

    elastic: float = 0.0  # probability of a smooth in-plane deformation
    elastic_px: float = 3.0  # its largest displacement, in voxels
    blur: float = 0.0  # probability of an isotropic Gaussian blur
    blur_px: float = 1.2  # its largest sigma, in voxels
    bias: float = 0.0  # largest log-amplitude of a smooth multiplicative field (every slab)

    MARGIN = 8  # extra in-plane voxels cropped around a slab so that warps and blurs see real data
    MARGIN_SLICES = 4  # extra slices on either side, for the blur

    def __post_init__(self) -> None:
        if not (0 <= self.elastic <= 1 and 0 <= self.blur <= 1):
            raise ValueError(f"elastic and blur are probabilities in [0, 1], got {self.elastic} and {self.blur}")
        if min(self.elastic_px, self.blur_px, self.bias) < 0:
            raise ValueError("elastic_px, blur_px and bias must be >= 0")

    @property
    def active(self) -> bool:
        return self.elastic > 0 or self.blur > 0 or self.bias > 0


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, knots: int = 5) -> np.ndarray:
    """A smooth random field in [-1, 1]: ``knots x knots`` normal values, cubic-interpolated."""
    coarse = rng.standard_normal((knots, knots))
    field = ndimage.zoom(coarse, (shape[0] / knots, shape[1] / knots), order=3, mode="nearest")[: shape[0], : shape[1]]
    return (field / max(float(np.abs(field).max()), 1e-12)).astype(np.float32)


def _bias_field(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A random second-order polynomial in (z, y, x) over [-1, 1]^3 with largest magnitude 1."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape), indexing="ij", sparse=True)
    terms = [x, y, z, x * x, y * y, z * z, x * y, y * z, x * z]
    field = sum(float(c) * t for c, t in zip(rng.standard_normal(len(terms)), terms))
    field = np.broadcast_to(field, shape)
    return field / max(float(np.abs(field).max()), 1e-12)


def augment_slab(slab: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """``slab: (S, H, W)`` clean and >= 0, with spare voxels around it (:attr:`Augment.MARGIN`)."""
    s, h, w = slab.shape
    if rng.random() < aug.elastic:
        amp = rng.uniform(0.3, 1.0) * aug.elastic_px
        yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        coords = [yy + amp * _smooth_field((h, w), rng), xx + amp * _smooth_field((h, w), rng)]
        slab = np.stack([ndimage.map_coordinates(sl, coords, order=1, mode="reflect") for sl in slab])
    if rng.random() < aug.blur:
        slab = ndimage.gaussian_filter(slab, rng.uniform(0.3, 1.0) * aug.blur_px, mode="nearest", truncate=3.0)
    if aug.bias > 0:
        slab = slab * np.exp(rng.uniform(0, aug.bias) * _bias_field((s, h, w), rng))
    return np.clip(slab, 0, None).astype(np.float32)


@dataclass(frozen=True)
class SlabBatch:
    clean: np.ndarray  # (B, 2n+1, P, P) p99 units
    noisy: np.ndarray  # (B, 2n+1, P, P) Rician, p99 units
    sigma: np.ndarray  # (B,) noise std, p99 units


def sample_slabs(volumes: list[TrainVolume], rng: np.random.Generator, *, batch: int, patch: int,
                 neighbours: int, sigma_range: tuple[float, float], gamma_range: tuple[float, float],
                 augment: Augment | None = None) -> SlabBatch:
    """Random slabs of ``2n + 1`` slices, with flips, gamma and Rician noise (sigma log-uniform).

    With an active ``augment`` each slab is cropped with spare voxels on every side
    (:attr:`Augment.MARGIN`, :attr:`Augment.MARGIN_SLICES`), augmented (:func:`augment_slab`) and
    cut back; without one the random stream is the one the shipped weights were trained on.
    """
    width = 2 * neighbours + 1
    on = augment is not None and augment.active
    m, mz = (Augment.MARGIN, Augment.MARGIN_SLICES) if on else (0, 0)
    clean = np.zeros((batch, width, patch, patch), np.float32)
    for b in range(batch):
        vol = volumes[rng.integers(len(volumes))]
        axis = int(rng.integers(3))
        k = int(rng.choice(vol.slices[axis]))
        idx = np.clip(np.arange(k - neighbours - mz, k + neighbours + mz + 1), 0, vol.data.shape[axis] - 1)
        view = np.moveaxis(vol.data, axis, 0)  # (S, H, W), no copy
        size = patch + 2 * m
        for _ in range(8):  # prefer patches that hold some head
            h0 = int(rng.integers(0, max(view.shape[1] - size, 0) + 1))
            w0 = int(rng.integers(0, max(view.shape[2] - size, 0) + 1))
            crop = view[idx, h0 : h0 + size, w0 : w0 + size]  # (2n+1+2mz, <=P+2m, <=P+2m)
            if (crop[neighbours + mz, m : m + patch, m : m + patch] > 0.1).mean() > 0.2:
                break
        if on:
            crop = augment_slab(crop, rng, augment)[mz : mz + width, m : m + patch, m : m + patch]
        clean[b, :, : crop.shape[1], : crop.shape[2]] = crop
    flips = rng.random((batch, 3)) < 0.5
    for b in range(batch):
        if flips[b, 0]:
            clean[b] = clean[b, :, ::-1]
        if flips[b, 1]:
            clean[b] = clean[b, :, :, ::-1]
        if flips[b, 2]:
            clean[b] = clean[b, ::-1]
    gamma = rng.uniform(*gamma_range, size=(batch, 1, 1, 1)).astype(np.float32)
    clean = np.clip(clean, 0, None) ** gamma
    lo, hi = np.log(sigma_range[0]), np.log(sigma_range[1])
    sigma = np.exp(rng.uniform(lo, hi, size=batch)).astype(np.float32)
    noisy = np.stack([add_rician_noise(clean[b], float(sigma[b]), rng) for b in range(batch)])
    return SlabBatch(clean, noisy, sigma)
