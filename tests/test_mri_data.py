"""MRI training data: the augmentation that stands in for more subjects, and its config block."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import phantom

from restore.errors import InputError
from restore.mri.data import Augment, TrainVolume, augment_slab, sample_slabs
from restore.mri.train import TrainConfig


def _slabs(seed: int, augment: Augment | None):
    volume = TrainVolume.of((phantom((40, 44, 36)) / 800).astype(np.float32), "phantom")
    return sample_slabs([volume], np.random.default_rng(seed), batch=6, patch=16, neighbours=2,
                        sigma_range=(0.01, 0.1), gamma_range=(0.8, 1.2), augment=augment)


def test_inactive_augmentation_keeps_the_random_stream():
    """Steps before ``from_step`` must draw exactly the batches the shipped weights saw."""
    plain, inactive = _slabs(3, None), _slabs(3, Augment())
    np.testing.assert_array_equal(plain.noisy, inactive.noisy)
    augmented = _slabs(3, Augment(elastic=1.0, blur=1.0, bias=0.3))
    assert augmented.clean.shape == plain.clean.shape and augmented.clean.min() >= 0
    assert not np.allclose(augmented.clean, plain.clean)


def test_each_augmentation_does_what_it_says():
    rng = np.random.default_rng(0)
    slab = np.random.default_rng(1).random((9, 32, 32)).astype(np.float32) + 0.5

    warped = augment_slab(slab, rng, Augment(elastic=1.0, elastic_px=2.0))
    assert warped.shape == slab.shape and not np.allclose(warped, slab)
    assert slab.min() - 1e-5 <= warped.min() and warped.max() <= slab.max() + 1e-5  # linear interpolation

    blurred = augment_slab(slab, rng, Augment(blur=1.0, blur_px=1.2))
    assert np.abs(np.diff(blurred, axis=2)).mean() < 0.7 * np.abs(np.diff(slab, axis=2)).mean()

    biased = augment_slab(slab, rng, Augment(bias=0.3))
    log_ratio = np.log(biased / slab)
    assert np.abs(log_ratio).max() <= 0.3 + 1e-5 and log_ratio.std() > 1e-3
    assert np.abs(np.diff(log_ratio, axis=2)).max() < 0.05  # smooth: a field, not noise


def test_augment_block_is_validated(tmp_path):
    raw = yaml.safe_load((Path(__file__).parents[1] / "configs/mri_denoise.yaml").read_text())
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**raw, "augment": {"from_step": 10, "elastic": 0.5, "bias": 0.2}}))
    start, aug = TrainConfig.from_yaml(path).augmentation()
    assert start == 10 and aug == Augment(elastic=0.5, bias=0.2)
    for bad in ({"from_step": 10, "twist": 1.0}, {"elastic": 1.5}, {"from_step": -1}):
        path.write_text(yaml.safe_dump({**raw, "augment": bad}))
        with pytest.raises(InputError, match="augment"):
            TrainConfig.from_yaml(path)
