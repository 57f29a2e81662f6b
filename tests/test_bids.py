"""BIDS in, derivatives out: naming, discovery, sidecar inheritance, the raw dataset left alone."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bids_fakes import make_bids

from restore import batch, bids
from restore.errors import InputError


@pytest.mark.parametrize("raw, derived", [
    ("sub-01_ses-1_T1w.nii.gz", "sub-01_ses-1_desc-denoised_T1w.nii.gz"),
    ("sub-02_T1w.nii", "sub-02_desc-denoised_T1w.nii"),
    ("sub-02_task-rest_run-2_bold.nii.gz", "sub-02_task-rest_run-2_desc-denoised_bold.nii.gz"),
    ("sub-03_acq-hi_desc-x_dwi.nii.gz", "sub-03_acq-hi_desc-denoised_dwi.nii.gz"),
])
def test_desc_entity_goes_before_the_suffix(raw, derived):
    assert bids.derivative_name(raw) == derived


def test_not_a_bids_name_is_refused():
    with pytest.raises(InputError, match="not a BIDS image name"):
        bids.derivative_name("T1w.nii.gz")


def test_discovery_mirrors_the_raw_layout_and_selects_participants(tmp_path):
    raw, out = make_bids(tmp_path / "raw"), tmp_path / "out"
    items = batch.discover(raw, out)
    assert sorted(str(it.output.relative_to(out)) for it in items) == [
        "sub-01/ses-1/anat/sub-01_ses-1_desc-denoised_T1w.nii.gz",
        "sub-01/ses-1/dwi/sub-01_ses-1_desc-denoised_dwi.nii.gz",
        "sub-02/anat/sub-02_desc-denoised_T1w.nii.gz",
        "sub-02/func/sub-02_task-rest_desc-denoised_bold.nii.gz",
    ]
    assert all(it.bids_root == raw and it.kind == "mri" for it in items)
    only = batch.discover(raw, out, participant_labels=["sub-02"])
    assert {it.input.name for it in only} == {"sub-02_T1w.nii.gz", "sub-02_task-rest_bold.nii.gz"}
    with pytest.raises(InputError, match="--participant-label 07: no such subject"):
        batch.discover(raw, out, participant_labels=["01", "07"])


def test_participant_label_needs_a_bids_dataset(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="needs a BIDS dataset"):
        batch.discover(tmp_path / "plain", tmp_path / "out", participant_labels=["01"])


def test_outputs_never_go_into_the_raw_dataset(tmp_path):
    raw = make_bids(tmp_path / "raw")
    with pytest.raises(InputError, match="inside the raw BIDS dataset"):
        batch.discover(raw, raw / "sub-01" / "restored")
    with pytest.raises(InputError, match="its own folder"):
        batch.discover(raw, raw / "derivatives")
    items = batch.discover(raw, raw / "derivatives" / "restore")  # the usual place, allowed
    assert len(items) == 4


def test_sidecar_keeps_what_still_holds_and_records_the_restoration(tmp_path):
    raw = make_bids(tmp_path / "raw")
    image = raw / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_T1w.nii.gz"
    record = {"kind": "mri", "task": "denoise", "model": {"name": "mri_denoise", "version": "0.1.0"},
              "params": {"seed": 7}, "metrics": {"sigma_used": 4.5, "t_star": 31}, "input": {"sha256": "x"}}
    sidecar = bids.bids_sidecar(record, image, raw)
    assert sidecar["RepetitionTime"] == 2.3  # the image's own sidecar overrides the inherited 2.0
    assert sidecar["MagneticFieldStrength"] == 3 and sidecar["EchoTime"] == 0.003  # inherited / own
    assert "ImageType" not in sidecar and "ConversionSoftware" not in sidecar  # no longer true
    assert (sidecar["NoiseSigma"], sidecar["TStar"], sidecar["Seed"], sidecar["RestoreVersion"]) == (4.5, 31, 7, "0.1.0")
    assert sidecar["Sources"] == ["bids:raw:sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz"]
    assert sidecar["input"] == {"sha256": "x"}  # the restore record stays (resume compares it)
    bold = bids.inherited_metadata(raw / "sub-02" / "func" / "sub-02_task-rest_bold.nii.gz", raw)
    assert bold == {"TaskName": "rest", "RepetitionTime": 1.5}
    per_volume = {**record, "metrics": {"volumes": [{"sigma_used": 1.0, "t_star": 5}, {"sigma_used": 2.0, "t_star": 9}]}}
    assert bids.bids_sidecar(per_volume, image, raw)["TStar"] == [5, 9]
