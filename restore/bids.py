"""BIDS datasets in, a BIDS derivatives dataset out (BIDS 1.10, "Derivatives" and "Common principles").

A batch input with ``dataset_description.json`` at its root is a BIDS dataset: its images
``sub-<label>/[ses-<label>/]{anat,func,dwi}/*.nii[.gz]`` are restored into OUTDIR, which becomes a
derivatives dataset with the same layout and a ``desc-denoised`` entity before the suffix::

    raw/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz -> OUTDIR/sub-01/ses-1/anat/sub-01_ses-1_desc-denoised_T1w.nii.gz

Each output's JSON sidecar holds the input's own metadata that still holds after restoration
(inherited sidecars merged, see :func:`inherited_metadata`; :data:`NO_LONGER_HOLD` dropped), the
restore summary (method, version, sigma, t*, seed), ``Sources`` as a BIDS URI, and the restore
record. DWI ``.bval``/``.bvec`` are copied beside the output. ``dataset_description.json`` names
restore in ``GeneratedBy`` and the raw dataset in ``SourceDatasets``. The raw dataset is never
written to: OUTDIR must be outside it, or inside its ``derivatives/`` folder.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from restore import __version__
from restore.errors import InputError
from restore.outputs import atomic_write, write_sidecar

DATATYPES = ("anat", "func", "dwi")
DESC = "denoised"
BIDS_VERSION = "1.10.0"
# sidecar fields that describe the raw file rather than the acquisition: wrong for a restored image
NO_LONGER_HOLD = ("ImageType", "RawImage", "ConversionSoftware", "ConversionSoftwareVersion", "SeriesInstanceUID",
                  "SOPInstanceUID")
IGNORED_OUTPUTS = ("batch_summary.csv", "batch_summary.json", "report.html", "report/")  # batch files, not BIDS
_NAME = re.compile(r"^(?P<entities>sub-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9+]+)*)_(?P<suffix>[A-Za-z0-9]+)"
                   r"(?P<ext>\.nii(?:\.gz)?)$")


def is_bids_dataset(root: Path) -> bool:
    root = Path(root)
    return root.is_dir() and (root / "dataset_description.json").is_file()


def _labels(values: list[str] | None) -> set[str] | None:
    return None if not values else {v.removeprefix("sub-") for v in values}


def bids_images(root: Path, participant_labels: list[str] | None = None) -> list[Path]:
    """The raw NIfTI images of ``root``, sorted; ``participant_labels`` (``01`` or ``sub-01``) selects subjects."""
    root = Path(root)
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
    wanted = _labels(participant_labels)
    if wanted is not None:
        missing = wanted - {p.name.removeprefix("sub-") for p in subjects}
        if missing:
            raise InputError(f"--participant-label {' '.join(sorted(missing))}: no such subject in {root} "
                             f"(found {', '.join(p.name.removeprefix('sub-') for p in subjects) or 'none'})")
        subjects = [p for p in subjects if p.name.removeprefix("sub-") in wanted]
    images = []
    for subject in subjects:
        for folder in [subject, *sorted(p for p in subject.glob("ses-*") if p.is_dir())]:
            for datatype in DATATYPES:
                images += [p for p in sorted((folder / datatype).glob(f"{subject.name}_*.nii*"))
                           if _NAME.match(p.name) and not p.name.startswith(".")]
    return images


def derivative_name(name: str) -> str:
    """``sub-01_ses-1_T1w.nii.gz`` -> ``sub-01_ses-1_desc-denoised_T1w.nii.gz`` (a raw ``desc`` is replaced)."""
    match = _NAME.match(name)
    if not match:
        raise InputError(f"not a BIDS image name: {name} (sub-<label>[_<key>-<value>...]_<suffix>.nii[.gz])")
    entities = [e for e in match["entities"].split("_") if not e.startswith("desc-")]
    return "_".join([*entities, f"desc-{DESC}", match["suffix"]]) + match["ext"]


def derivative_path(image: Path, root: Path, outdir: Path) -> Path:
    relative = Path(image).resolve().relative_to(Path(root).resolve())
    return Path(outdir) / relative.parent / derivative_name(relative.name)


def check_outdir(root: Path, outdir: Path) -> None:
    """The raw dataset is never written to: OUTDIR is outside it or under its ``derivatives/``."""
    root, out = Path(root).resolve(), Path(outdir).resolve()
    if out == root or (root in out.parents and (root / "derivatives") not in [out, *out.parents]):
        raise InputError(f"output folder {outdir} is inside the raw BIDS dataset {root} "
                         f"(use a folder outside it or under {root / 'derivatives'})")
    if out == root / "derivatives":
        raise InputError(f"give the derivatives dataset its own folder, e.g. {root / 'derivatives' / 'restore'}")


def _entities(name: str) -> tuple[dict[str, str], str]:
    stem = name.split(".")[0]
    *pairs, suffix = stem.split("_")
    return dict(p.split("-", 1) for p in pairs if "-" in p), suffix


def inherited_metadata(image: Path, root: Path) -> dict:
    """The sidecar fields that apply to ``image`` by the inheritance principle: every ``*.json`` from the
    dataset root down to the image's folder whose entities are a subset of the image's and whose suffix
    is the image's, the deeper overriding the shallower."""
    image, root = Path(image).resolve(), Path(root).resolve()
    entities, suffix = _entities(image.name)
    folders = [root, *reversed([p for p in image.parents if root in p.parents])]
    merged: dict = {}
    for folder in folders:
        for candidate in sorted(folder.glob("*.json")):
            their, their_suffix = _entities(candidate.name)
            if their_suffix == suffix and all(entities.get(k) == v for k, v in their.items()):
                try:
                    merged.update(json.loads(candidate.read_text()))
                except ValueError as e:
                    raise InputError(f"{candidate}: not valid JSON ({e})") from None
    return merged


def bids_sidecar(record: dict, image: Path, root: Path) -> dict:
    """The derivative's sidecar: the input's metadata that still holds, the restore summary, Sources, the record."""
    kept = {k: v for k, v in inherited_metadata(image, root).items() if k not in NO_LONGER_HOLD}
    metrics = record.get("metrics", {})
    per_volume = metrics.get("volumes", [metrics])
    pick = (lambda key: per_volume[0].get(key)) if len(per_volume) == 1 else (lambda key: [m.get(key) for m in per_volume])
    relative = Path(image).resolve().relative_to(Path(root).resolve()).as_posix()
    summary = {
        "Description": "Denoised by restore: conditional diffusion started at t* from the noisy image, then "
                       "non-local refinement" + ("; missing slices filled" if "fill" in record.get("task", "") else ""),
        "Sources": [f"bids:raw:{relative}"],
        "RestoreMethod": record.get("task"),
        "RestoreVersion": record.get("model", {}).get("version"),
        "NoiseSigma": pick("sigma_used"),
        "TStar": pick("t_star"),
        "Seed": record.get("params", {}).get("seed"),
    }
    return {**kept, **summary, **record}


def copy_dwi_companions(image: Path, output: Path) -> list[Path]:
    """``X_dwi.bval``/``.bvec`` beside a DWI image, copied next to the output under its name."""
    name = Path(image).name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else name[: -len(".nii")]
    out_name = Path(output).name
    out_stem = out_name[: -len(".nii.gz")] if out_name.endswith(".nii.gz") else out_name[: -len(".nii")]
    copied = []
    for ext in (".bval", ".bvec"):
        source = Path(image).with_name(stem + ext)
        if source.is_file():
            target = Path(output).with_name(out_stem + ext)
            atomic_write(target, lambda tmp, source=source: shutil.copyfile(source, tmp))
            copied.append(target)
    return copied


def write_description(root: Path, outdir: Path) -> Path:
    """``OUTDIR/dataset_description.json`` of the derivatives dataset (and a ``.bidsignore`` for the
    batch's own summary and report files)."""
    root, outdir = Path(root), Path(outdir)
    try:
        raw = json.loads((root / "dataset_description.json").read_text())
    except ValueError as e:
        raise InputError(f"{root / 'dataset_description.json'}: not valid JSON ({e})") from None
    uri = root.resolve().as_uri()
    source = {"URL": uri, **({"DOI": raw["DatasetDOI"]} if raw.get("DatasetDOI") else {})}
    description = {
        "Name": f"{raw.get('Name', root.name)}: denoised by restore",
        "BIDSVersion": str(raw.get("BIDSVersion", BIDS_VERSION)),
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "restore", "Version": __version__,
                         "Description": "denoising and slice filling with conditional diffusion"}],
        "SourceDatasets": [source],
        "DatasetLinks": {"raw": uri},
    }
    path = outdir / "dataset_description.json"
    write_sidecar(path, description)
    atomic_write(outdir / ".bidsignore", lambda tmp: tmp.write_text("\n".join(IGNORED_OUTPUTS) + "\n"))
    return path
