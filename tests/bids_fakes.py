"""A tiny two-subject raw BIDS dataset (anat with sessions, func, dwi; inherited sidecars), made by the tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np


def _image(path: Path, shape, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 2.0, 1.0])), str(path))


def _json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))


def make_bids(root: Path) -> Path:
    """sub-01 (ses-1: T1w + dwi with .bval/.bvec), sub-02 (no session: T1w + task-rest bold, 4D)."""
    root = Path(root)
    _json(root / "dataset_description.json", {"Name": "tiny", "BIDSVersion": "1.9.0", "DatasetType": "raw"})
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    _json(root / "T1w.json", {"MagneticFieldStrength": 3, "RepetitionTime": 2.0})  # inherited by every T1w
    _json(root / "task-rest_bold.json", {"TaskName": "rest", "RepetitionTime": 1.5})
    anat = root / "sub-01" / "ses-1" / "anat"
    _image(anat / "sub-01_ses-1_T1w.nii.gz", (12, 14, 10), 0)
    _json(anat / "sub-01_ses-1_T1w.json", {"RepetitionTime": 2.3, "EchoTime": 0.003, "ImageType": ["ORIGINAL"],
                                           "ConversionSoftware": "dcm2niix"})
    dwi = root / "sub-01" / "ses-1" / "dwi"
    _image(dwi / "sub-01_ses-1_dwi.nii.gz", (12, 14, 10, 3), 1)
    (dwi / "sub-01_ses-1_dwi.bval").write_text("0 1000 1000\n")
    (dwi / "sub-01_ses-1_dwi.bvec").write_text("0 1 0\n0 0 1\n0 0 0\n")
    _json(dwi / "sub-01_ses-1_dwi.json", {"EchoTime": 0.08})
    _image(root / "sub-02" / "anat" / "sub-02_T1w.nii.gz", (12, 14, 10), 2)
    _image(root / "sub-02" / "func" / "sub-02_task-rest_bold.nii.gz", (12, 14, 10, 2), 3)
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``root`` (to prove nothing was written there)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}
