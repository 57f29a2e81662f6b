"""Batch planning without Prefect: which files to restore, where to, and whether they are done already.

A batch source is a folder (recursive), a glob pattern or a CSV manifest. Each input becomes a
:class:`BatchItem`; :func:`run_item` restores it through :func:`restore.api.restore_file` unless
its output is up to date, and returns a :class:`FileResult`. ``flows/`` maps :func:`run_item` over
the items; everything here runs and is tested without Prefect.

A DICOM series folder is one item (a folder that mixes series: one item per series, named by
SeriesNumber); its output is ``<folder>_restored.nii.gz`` (a folder ``<folder>_restored`` with the
``output_format`` option ``dicom``). A BIDS dataset (``dataset_description.json`` at its root)
becomes a derivatives dataset instead (:mod:`restore.bids`).

Reference pairing: ``X_noisy.ext`` has the clean reference ``X_clean.ext`` when that file exists.
A folder or glob never restores such a reference itself. A manifest names references explicitly.

Up to date (skipped) means: the output and its sidecar exist, and the sidecar records the same
input SHA-256, the same requested options and reference, and the model version the restore function
would use now (read from its model card, see :func:`current_model_version`).
"""

from __future__ import annotations

import csv
import errno
import glob
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from restore import api
from restore.errors import InputError
from restore.outputs import sidecar_path, write_sidecar

Status = Literal["done", "skipped", "failed"]
NOISY, CLEAN, RESTORED = "_noisy", "_clean", "_restored"
MANIFEST_COLUMNS = ("path", "reference", "task", "output")


@dataclass(frozen=True)
class BatchItem:
    """One file to restore. ``options`` are keyword options of the modality's restore function."""

    input: Path
    output: Path
    kind: api.Kind
    reference: Path | None = None
    options: dict = field(default_factory=dict)
    bids_root: Path | None = None  # the raw BIDS dataset the input belongs to: a derivative output

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.output)


@dataclass
class FileResult:
    """What happened to one item. ``record`` is the sidecar record when the file is done or skipped."""

    input: str
    output: str
    kind: str
    status: Status
    seconds: float = 0.0
    reference: str | None = None
    metrics: dict = field(default_factory=dict)
    error: str | None = None
    record: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- discovery


def split_suffix(path: Path) -> tuple[str, str]:
    """``t1_noisy.nii.gz`` -> (``t1_noisy``, ``.nii.gz``); ``a.wav`` -> (``a``, ``.wav``)."""
    name = Path(path).name
    if name.lower().endswith(".nii.gz"):
        return name[:-7], name[-7:]
    stem, dot, ext = name.rpartition(".")
    return (stem, dot + ext) if dot else (name, "")


def reference_for(path: Path) -> Path | None:
    """``X_noisy.ext`` -> ``X_clean.ext`` when that file exists, else None."""
    stem, ext = split_suffix(path)
    if not stem.endswith(NOISY):
        return None
    candidate = Path(path).with_name(stem[: -len(NOISY)] + CLEAN + ext)
    return candidate if candidate.is_file() else None


def is_paired_reference(path: Path) -> bool:
    """True for ``X_clean.ext`` when ``X_noisy.ext`` sits beside it (a reference, not an input)."""
    stem, ext = split_suffix(path)
    if not stem.endswith(CLEAN):
        return False
    return Path(path).with_name(stem[: -len(CLEAN)] + NOISY + ext).is_file()


def output_for(input_path: Path, root: Path, outdir: Path, *, dicom_out: bool = False) -> Path:
    """``root/sub/t1_noisy.nii.gz`` -> ``outdir/sub/t1_noisy_restored.nii.gz``; a DICOM series folder or
    file ``root/sub/t1`` -> ``outdir/sub/t1_restored.nii.gz`` (the folder ``t1_restored`` with ``dicom_out``)."""
    input_path = Path(input_path)
    try:
        relative_parent = input_path.parent.resolve().relative_to(Path(root).resolve())
    except ValueError:
        relative_parent = Path()
    stem, ext = split_suffix(input_path)
    if input_path.is_dir() or not input_path.name.lower().endswith(api.MRI_SUFFIXES + api.AUDIO_SUFFIXES):
        stem, ext = (input_path.name if input_path.is_dir() else stem), ("" if dicom_out else ".nii.gz")
    return Path(outdir) / relative_parent / f"{stem}{RESTORED}{ext}"


def _is_dicom(path: Path) -> bool:
    """A DICOM file (by name or content), not a NIfTI or audio file."""
    if path.name.lower().endswith(api.MRI_SUFFIXES + api.AUDIO_SUFFIXES):
        return False
    from restore.mri.dicom import is_dicom_file

    return is_dicom_file(path)


def _dicom_items(files: list[Path], root: Path, outdir: Path, options: dict) -> list[BatchItem]:
    """One item per DICOM series: its folder, with a ``series_uid`` option when the folder holds several."""
    from restore.mri.dicom import series_in

    items = []
    for folder in sorted({f.parent for f in files}):
        series = series_in(folder)
        for uid, tag in _series_tags(series).items():
            opts = dict(options) if len(series) == 1 else {**options, "series_uid": uid}
            output = output_for(folder.parent / f"{folder.name}{tag}.nii.gz", root, outdir)
            if opts.get("output_format") == "dicom":
                output = output.with_name(output.name[: -len(".nii.gz")])
            items.append(BatchItem(input=folder, output=output, kind="mri", options=opts))
    return items


def _series_tags(series: dict[str, list[Path]]) -> dict[str, str]:
    """UID -> name tag: none for a lone series, else ``_series-<SeriesNumber>`` (the UID when numbers clash)."""
    if len(series) == 1:
        return {uid: "" for uid in series}
    import pydicom

    numbers = {}
    for uid, paths in series.items():
        try:
            numbers[uid] = str(pydicom.dcmread(str(paths[0]), stop_before_pixels=True,
                                               specific_tags=["SeriesNumber"]).get("SeriesNumber", "") or "")
        except Exception:  # noqa: BLE001 - unreadable: the item fails later with its own message
            numbers[uid] = ""
    unique = [n for n in numbers.values() if n and list(numbers.values()).count(n) == 1]
    return {uid: f"_series-{numbers[uid] if numbers[uid] in unique else uid or 'unreadable'}"
            for uid in sorted(series, key=lambda u: (numbers[u].zfill(8), u))}


def _supported(path: Path) -> bool:
    try:
        api.kind_of(path)
    except InputError:
        return False
    return True


def _candidates(paths: list[Path], outdir: Path) -> list[Path]:
    """Supported, visible files that are not paired references and not inside ``outdir``."""
    outdir = Path(outdir).resolve()
    keep = []
    for p in sorted(set(paths)):
        if not p.is_file() or p.name.startswith(".") or _is_dicom(p) or not _supported(p) or is_paired_reference(p):
            continue
        if outdir == p.resolve().parent or outdir in p.resolve().parents:
            continue
        keep.append(p)
    return keep


def _dicom_candidates(paths: list[Path], outdir: Path) -> list[Path]:
    outdir = Path(outdir).resolve()
    return [p for p in sorted(set(paths)) if p.is_file() and not p.name.startswith(".") and _is_dicom(p)
            and not (outdir == p.resolve().parent or outdir in p.resolve().parents)]


def _hidden(path: Path, root: Path) -> bool:
    """True for ``.name`` files and anything inside a ``.folder`` below ``root`` (.git, checkpoints)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


RESTORE_TASKS = {"mri": ("auto", "denoise", "fill"), "audio": ("auto", "denoise", "fill", "declip")}


def _make_item(path: Path, output: Path, *, reference: Path | None, options: dict, task: str | None = None) -> BatchItem:
    """``task``: the modality the row expects (mri|audio, checked) or the restore task for the file
    (mri: auto|denoise|fill; audio: auto|denoise|fill|declip), passed on as the ``task`` option."""
    kind = api.kind_of(path)
    options = dict(options)
    if task in RESTORE_TASKS[kind]:
        options["task"] = task
    elif task and task != kind:
        raise InputError(f"{path.name}: manifest task is {task!r} but the file is {kind} (task must be {kind} "
                         f"or one of {', '.join(RESTORE_TASKS[kind])})")
    return BatchItem(input=Path(path), output=Path(output), kind=kind, reference=reference, options=options)


def _parse_option(value: str):
    """Manifest cells are JSON when they parse (``50``, ``0.5``, ``true``), else plain strings."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def items_from_manifest(manifest: Path, outdir: Path, options: dict | None = None) -> list[BatchItem]:
    """CSV with a ``path`` column, optional ``reference``, ``task`` (mri|audio, or the restore task such
    as fill or declip) and ``output``;
    any other column is a per-row option for the restore function (empty cells are left out).
    Relative paths are relative to the manifest's folder."""
    manifest = Path(manifest)
    base = manifest.parent
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise InputError(f"{manifest}: a manifest needs a 'path' column, got {reader.fieldnames}")
        rows = list(reader)
    items = []
    for line, row in enumerate(rows, start=2):
        if not (row.get("path") or "").strip():
            raise InputError(f"{manifest}:{line}: empty path")
        path = base / row["path"].strip()
        ref = (row.get("reference") or "").strip()
        out = (row.get("output") or "").strip()
        row_options = {k: _parse_option(v) for k, v in row.items() if k not in MANIFEST_COLUMNS and v not in (None, "")}
        dicom_out = {**(options or {}), **row_options}.get("output_format") == "dicom"
        items.append(_make_item(
            path,
            Path(outdir) / out if out else output_for(path, base, outdir, dicom_out=dicom_out),
            reference=base / ref if ref else reference_for(path),
            options={**(options or {}), **row_options},
            task=(row.get("task") or "").strip() or None,
        ))
    return items


def bids_items(root: Path, outdir: Path, options: dict | None = None,
               participant_labels: list[str] | None = None) -> list[BatchItem]:
    """The images of a raw BIDS dataset, each to its place in the derivatives dataset OUTDIR."""
    from restore import bids

    bids.check_outdir(root, outdir)
    return [BatchItem(input=p, output=bids.derivative_path(p, root, outdir), kind="mri", options=dict(options or {}),
                      bids_root=Path(root)) for p in bids.bids_images(root, participant_labels)]


def discover(source: str | Path, outdir: str | Path, options: dict | None = None, *,
             participant_labels: list[str] | None = None) -> list[BatchItem]:
    """Items for a folder (recursive; a BIDS dataset: :func:`bids_items`), a glob pattern or a ``.csv``
    manifest; sorted by input path. ``participant_labels`` selects subjects of a BIDS dataset."""
    from restore.bids import is_bids_dataset

    source_text, outdir = str(source), Path(outdir)
    source = Path(source_text)
    if participant_labels and not is_bids_dataset(source):
        raise InputError(f"--participant-label needs a BIDS dataset (dataset_description.json at the root of {source})")
    if source.is_file() and source.suffix.lower() == ".csv":
        items = items_from_manifest(source, outdir, options)
    elif source.is_dir() and is_bids_dataset(source):
        items = bids_items(source, outdir, options, participant_labels)
    elif source.is_dir():
        if source.resolve() == outdir.resolve():
            raise InputError(f"the output folder is the input folder: {outdir} (choose another -o)")
        paths = [p for p in source.rglob("*") if not _hidden(p, source)]
        items = [_make_item(p, output_for(p, source, outdir), reference=reference_for(p), options=options or {})
                 for p in _candidates(paths, outdir)]
        items += _dicom_items(_dicom_candidates(paths, outdir), source, outdir, options or {})
    elif source.is_file():
        items = [_make_item(source, output_for(source, source.parent, outdir), reference=reference_for(source),
                            options=options or {})]
    elif glob.has_magic(source_text):
        paths = [Path(p) for p in glob.glob(source_text, recursive=True)]
        root = Path(os.path.commonpath([p.parent for p in paths])) if paths else Path(".")
        items = [_make_item(p, output_for(p, root, outdir), reference=reference_for(p), options=options or {})
                 for p in _candidates(paths, outdir)]
        items += _dicom_items(_dicom_candidates(paths, outdir), root, outdir, options or {})
    else:
        raise InputError(f"batch input not found: {source_text} (give a folder, a glob pattern or a .csv manifest)")
    outputs = [it.output for it in items]
    duplicates = {str(o) for o in outputs if outputs.count(o) > 1}
    if duplicates:
        raise InputError(f"two inputs would write the same output: {sorted(duplicates)[:3]} (give explicit outputs)")
    return sorted(items, key=lambda it: str(it.input))


def _stats(path: Path) -> list[os.stat_result]:
    """A file's stat; for a DICOM series folder, the folder's and each file's in it (copies change those)."""
    path = Path(path)
    return [path.stat()] + ([p.stat() for p in sorted(path.iterdir()) if p.is_file()] if path.is_dir() else [])


def settled(path: Path, *, min_age_seconds: float, now: float | None = None) -> bool:
    """True when ``path`` (or any file of a series folder) has not been modified for ``min_age_seconds``
    (a copy into an inbox is over)."""
    newest = max(st.st_mtime for st in _stats(path))
    return ((now if now is not None else time.time()) - newest) >= min_age_seconds


# ---------------------------------------------------------------- skip / resume


def _request(item: BatchItem) -> dict:
    """What the batch asked for, stored in the sidecar under ``batch`` so a rerun can compare it."""
    return {
        "options": json.loads(json.dumps(item.options, sort_keys=True, default=str)),
        "reference": str(item.reference) if item.reference else None,
        "reference_sha256": api.sha256_of(item.reference) if item.reference else None,
    }


# modality -> (restore option naming the weights, module holding the default, its attribute)
MODEL_WEIGHTS = {"mri": ("model_path", "restore.mri.pipeline", "DEFAULT_MODEL"),
                 "audio": ("weights", "restore.audio.denoise", "DEFAULT_WEIGHTS"),
                 "audio-inpaint": ("inpaint_weights", "restore.audio.inpaint", "DEFAULT_WEIGHTS")}


def current_model_version(kind: str, options: dict) -> str | None:
    """``version`` from the model card of the weights the restore function would load now
    (the ``model_path``/``weights`` option, else the modality's default); None without a card."""
    import importlib

    from restore.weights import card_path

    option, module, attribute = MODEL_WEIGHTS[kind]
    weights = options.get(option)
    if weights is None:
        try:
            weights = getattr(importlib.import_module(module), attribute)
        except (ModuleNotFoundError, AttributeError):
            return None
    try:
        return str(json.loads(card_path(Path(weights)).read_text()).get("version", "unknown"))
    except (OSError, ValueError):
        return None


def up_to_date(item: BatchItem) -> tuple[bool, str]:
    """(True, record-path) when the output is done with the same input, request and model; else (False, why)."""
    if not item.output.exists():  # a file, or a DICOM series folder
        return False, "no output"
    if not item.sidecar.is_file():
        return False, "output without sidecar (interrupted)"
    try:
        record = json.loads(item.sidecar.read_text())
    except ValueError:
        return False, "unreadable sidecar"
    if record.get("input", {}).get("sha256") != api.input_digest(item.input, item.options.get("series_uid")):
        return False, "input changed"
    if record.get("batch") != _request(item):
        return False, "options or reference changed"
    version = current_model_version(item.kind, item.options)
    if version is not None and str(record.get("model", {}).get("version")) != version:
        return False, "model version changed"
    inpaint = record.get("inpaint_model") or {}
    if inpaint.get("name") == "audio_inpaint":
        now = current_model_version("audio-inpaint", item.options)
        if now is not None and str(inpaint.get("version")) != now:
            return False, "inpainting model version changed"
    return True, "up to date"


def remove_partials(path: Path) -> list[Path]:
    """Delete temporary files :func:`restore.outputs.atomic_write` leaves when killed mid-write."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = list(path.parent.glob(f".{path.name}.*"))
    for p in stale:
        if p.is_dir():  # a DICOM series folder's temporary copy
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    return stale


def run_item(item: BatchItem, *, resume: bool = True) -> FileResult:
    """Restore one item, or skip it when ``resume`` and its output is up to date.

    A stale or partial output of an earlier run is replaced (outputs are written atomically, so a
    kill leaves the old file or the new one, never half of one). Exceptions propagate: the caller
    decides on retries with :func:`is_transient`.
    """
    result = FileResult(input=str(item.input), output=str(item.output), kind=item.kind, status="skipped",
                        reference=str(item.reference) if item.reference else None)
    if resume and up_to_date(item)[0]:
        result.record = json.loads(item.sidecar.read_text())
        result.metrics = result.record.get("metrics", {})
        result.seconds = float(result.record.get("timing", {}).get("seconds", 0.0))
        return result
    for path in (item.output, item.sidecar):
        remove_partials(path)
    start = time.perf_counter()
    record = api.restore_file(item.input, item.output, reference=item.reference, overwrite=True, progress=False,
                              **item.options)
    record = {**record, "batch": _request(item)}
    if item.bids_root is not None:
        from restore import bids

        bids.copy_dwi_companions(item.input, item.output)
        write_sidecar(item.sidecar, bids.bids_sidecar(record, item.input, item.bids_root))
    else:
        write_sidecar(item.sidecar, record)
    result.status, result.record = "done", record
    result.metrics = record.get("metrics", {})
    result.seconds = float(record.get("timing", {}).get("seconds", time.perf_counter() - start))
    return result


def failed_result(item: BatchItem, error: BaseException | str) -> FileResult:
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return FileResult(input=str(item.input), output=str(item.output), kind=item.kind, status="failed",
                      reference=str(item.reference) if item.reference else None, error=message)


TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.EIO, errno.ETIMEDOUT, errno.ESTALE,
                    errno.ECONNRESET, errno.ECONNREFUSED}


def is_transient(error: BaseException) -> bool:
    """Worth a retry: timeouts, lost connections, busy or flaky file systems, out of memory.

    Never bad input (:class:`InputError`, ``ValueError``, missing files): a retry would fail the same way.
    """
    if isinstance(error, (InputError, ValueError, TypeError, KeyError, FileNotFoundError, PermissionError,
                          IsADirectoryError, NotImplementedError)):
        return False
    if isinstance(error, (TimeoutError, ConnectionError, MemoryError, BlockingIOError, InterruptedError)):
        return True
    if isinstance(error, OSError):
        return error.errno in TRANSIENT_ERRNOS
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


# ---------------------------------------------------------------- inbox ledger

INBOX_LEDGER = "inbox_ledger.jsonl"


def ledger_key(path: Path) -> str:
    """Identity of an inbox file (or series folder) as it is now: path, total size and newest modification
    time (no hashing)."""
    stats = _stats(path)
    return f"{Path(path).resolve()}|{sum(st.st_size for st in stats)}|{max(st.st_mtime_ns for st in stats)}"


def read_ledger(path: Path) -> dict[str, dict]:
    """Key -> last entry. A truncated last line (killed mid-append) is ignored."""
    entries: dict[str, dict] = {}
    if Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            entries[entry["key"]] = entry
    return entries


def append_ledger(path: Path, items: list[BatchItem], results: list[FileResult]) -> None:
    """Mark what an inbox run has done: one line per file that was restored, skipped or failed."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"key": ledger_key(item.input), "input": str(item.input), "status": result.status,
                         "output": result.output, "error": result.error, "time": time.time()}) + "\n"
             for item, result in zip(items, results)]
    with open(path, "a") as f:
        f.writelines(lines)
