"""Checks and atomic writes for output files: inputs are never overwritten or modified."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from restore.errors import InputError


def check_output_path(input_path: Path, output_path: Path, *, overwrite: bool) -> None:
    """Refuse an output equal to the input, an existing output without ``overwrite``, or an unwritable folder."""
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.resolve() == input_path.resolve():
        raise InputError(f"output path is the input file: {output_path} (choose another -o)")
    if output_path.exists() and not overwrite:
        raise InputError(f"output exists: {output_path} (pass --overwrite to replace it)")
    folder = output_path.parent if str(output_path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"output folder is not a directory: {folder}")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    try:  # a real write probe: os.access says yes to root even on read-only places
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        raise InputError(f"output folder is not writable: {folder} ({e.strerror})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None], *, suffix: str | None = None) -> None:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it to ``path``.

    ``suffix`` keeps the temporary name's extension (writers that pick a format from it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or "".join(path.suffixes))
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_dir(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a new temporary folder beside ``path``, then rename it to ``path``.

    An existing ``path`` (the caller decided it may be replaced) is moved aside only once the new
    folder is complete, and deleted after the rename; a failed ``write`` leaves it untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~_umask())
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _jsonable(value):
    """numpy scalars -> Python, non-finite floats -> strings JSON accepts."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_sidecar(path: Path, record: dict) -> None:
    """JSON sidecar, written atomically; numpy values and infinities are converted."""
    text = json.dumps(_jsonable(record), indent=2) + "\n"
    atomic_write(Path(path), lambda tmp: tmp.write_text(text))


def sidecar_path(output: Path) -> Path:
    """``out.nii.gz`` -> ``out.json``; ``out.wav`` -> ``out.json``."""
    output = Path(output)
    name = output.name
    for ext in (".nii.gz", ".nii", *[output.suffix]):
        if name.endswith(ext) and ext:
            return output.with_name(name[: -len(ext)] + ".json")
    return output.with_name(name + ".json")
