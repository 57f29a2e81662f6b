"""restore.batch without Prefect: discovery, reference pairing, manifests, skip/resume, retries, inbox ledger."""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import flow_fakes

from restore import batch
from restore.errors import InputError


@pytest.fixture
def fake_restore(monkeypatch):
    """The fake restore function, with the model version its sidecars record, and a call log."""
    return flow_fakes.patch_fake(monkeypatch)


@pytest.fixture
def study(tmp_path) -> Path:
    """t1_noisy + t1_clean, speech_noisy + speech_clean, a lone clean file, a note, hidden files."""
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    flow_fakes.make_mri(src / "t1_noisy.nii.gz")
    flow_fakes.make_mri(src / "t1_clean.nii.gz", seed=1)
    flow_fakes.make_wav(src / "sub" / "speech_noisy.wav")
    flow_fakes.make_wav(src / "sub" / "speech_clean.wav", seed=1)
    flow_fakes.make_wav(src / "lone_clean.wav", seed=2)
    (src / "notes.txt").write_text("not an input")
    (src / ".t1_noisy.nii.gz.abc.nii.gz").write_bytes(b"partial")
    (src / ".ipynb_checkpoints").mkdir()
    flow_fakes.make_wav(src / ".ipynb_checkpoints" / "speech_noisy-checkpoint.wav")
    return src


def names(items):
    return sorted(it.input.name for it in items)


def test_folder_restores_noisy_inputs_with_their_clean_references(study, tmp_path):
    items = {it.input.name: it for it in batch.discover(study, tmp_path / "out")}
    # paired clean files are references, not inputs; a clean file without a noisy partner is an input
    assert sorted(items) == ["lone_clean.wav", "speech_noisy.wav", "t1_noisy.nii.gz"]
    assert items["t1_noisy.nii.gz"].reference == study / "t1_clean.nii.gz"
    assert items["speech_noisy.wav"].reference == study / "sub" / "speech_clean.wav"
    assert items["lone_clean.wav"].reference is None
    assert items["speech_noisy.wav"].output == tmp_path / "out" / "sub" / "speech_noisy_restored.wav"
    assert items["t1_noisy.nii.gz"].sidecar == tmp_path / "out" / "t1_noisy_restored.json"
    assert (items["t1_noisy.nii.gz"].kind, items["speech_noisy.wav"].kind) == ("mri", "audio")


def test_outdir_inside_the_input_folder_is_not_read_back(study):
    (study / "out").mkdir()
    flow_fakes.make_wav(study / "out" / "old_restored.wav")
    assert "old_restored.wav" not in names(batch.discover(study, study / "out"))


def test_output_folder_equal_to_the_input_folder_is_refused(study):
    with pytest.raises(InputError, match="output folder is the input folder"):
        batch.discover(study, study)


def test_glob_and_single_file(study, tmp_path):
    assert names(batch.discover(str(study / "**" / "*_noisy.*"), tmp_path / "o")) == ["speech_noisy.wav",
                                                                                      "t1_noisy.nii.gz"]
    (item,) = batch.discover(study / "t1_noisy.nii.gz", tmp_path / "o")
    assert item.reference == study / "t1_clean.nii.gz"


def test_manifest_rows_name_references_tasks_and_options(study, tmp_path):
    manifest = study / "study.csv"
    manifest.write_text("path,reference,task,steps,device\n"
                        "t1_noisy.nii.gz,t1_clean.nii.gz,mri,4,\n"
                        "sub/speech_noisy.wav,,audio,,cpu\n")
    a, b = batch.discover(manifest, tmp_path / "o", {"seed": 3})
    assert (a.input, a.reference, a.options) == (study / "sub/speech_noisy.wav", study / "sub/speech_clean.wav",
                                                 {"seed": 3, "device": "cpu"})
    assert (b.reference, b.options) == (study / "t1_clean.nii.gz", {"seed": 3, "steps": 4})
    manifest.write_text("path,task\nsub/speech_noisy.wav,declip\nt1_noisy.nii.gz,fill\n")
    a, b = batch.discover(manifest, tmp_path / "o")
    assert (a.options, b.options) == ({"task": "declip"}, {"task": "fill"})


def test_manifest_errors_say_what_is_wrong(study, tmp_path):
    bad_task = study / "bad.csv"
    bad_task.write_text("path,task\nt1_noisy.nii.gz,audio\n")
    with pytest.raises(InputError, match="task is 'audio' but the file is mri"):
        batch.discover(bad_task, tmp_path / "o")
    bad_task.write_text("path,task\nt1_noisy.nii.gz,declip\n")  # an audio-only task
    with pytest.raises(InputError, match="task is 'declip' but the file is mri"):
        batch.discover(bad_task, tmp_path / "o")
    no_path = study / "nopath.csv"
    no_path.write_text("file\nx.wav\n")
    with pytest.raises(InputError, match="'path' column"):
        batch.discover(no_path, tmp_path / "o")
    with pytest.raises(InputError, match="not found"):
        batch.discover(study / "missing", tmp_path / "o")


def test_two_inputs_writing_one_output_are_refused(tmp_path):
    manifest = tmp_path / "m.csv"
    flow_fakes.make_wav(tmp_path / "a.wav")
    flow_fakes.make_wav(tmp_path / "b.wav")
    manifest.write_text("path,output\na.wav,same.wav\nb.wav,same.wav\n")
    with pytest.raises(InputError, match="same output"):
        batch.discover(manifest, tmp_path / "o")


def test_run_item_skips_only_when_input_options_and_model_match(study, tmp_path, fake_restore, monkeypatch):
    (item,) = batch.discover(study / "t1_noisy.nii.gz", tmp_path / "o")
    assert batch.run_item(item).status == "done"
    record = json.loads(item.sidecar.read_text())
    assert record["batch"]["reference"] == str(study / "t1_clean.nii.gz")
    assert batch.run_item(item).status == "skipped"
    assert fake_restore == ["t1_noisy.nii.gz"]

    assert batch.run_item(item, resume=False).status == "done"  # --no-resume redoes it
    changed = batch.BatchItem(item.input, item.output, item.kind, item.reference, {"steps": 5})
    assert batch.up_to_date(changed) == (False, "options or reference changed")
    monkeypatch.setattr(batch, "current_model_version", lambda kind, options: "2")
    assert batch.up_to_date(item) == (False, "model version changed")
    monkeypatch.setattr(batch, "current_model_version", lambda kind, options: "1")
    flow_fakes.make_mri(item.input, seed=9)
    assert batch.up_to_date(item) == (False, "input changed")
    assert batch.run_item(item).status == "done"
    assert len(fake_restore) == 3


def test_interrupted_file_is_redone_and_its_partials_removed(study, tmp_path, fake_restore):
    (item,) = batch.discover(study / "t1_noisy.nii.gz", tmp_path / "o")
    item.output.parent.mkdir(parents=True)
    item.output.write_bytes(b"old output, killed before its sidecar was written")
    partial = item.output.with_name(f".{item.output.name}.x1y2.nii.gz")
    partial.write_bytes(b"half")
    assert batch.up_to_date(item) == (False, "output without sidecar (interrupted)")
    assert batch.run_item(item).status == "done"
    assert not partial.exists()
    assert batch.up_to_date(item) == (True, "up to date")


def test_current_model_version_reads_the_model_card(tmp_path):
    weights = tmp_path / "m.safetensors"
    assert batch.current_model_version("mri", {"model_path": str(weights)}) is None  # no card
    weights.with_suffix(".json").write_text(json.dumps({"version": "0.3"}))
    assert batch.current_model_version("mri", {"model_path": str(weights)}) == "0.3"
    assert batch.current_model_version("audio", {"weights": str(weights)}) == "0.3"


@pytest.mark.parametrize("error, transient", [
    (InputError("bad file"), False), (ValueError("bad"), False), (FileNotFoundError("x"), False),
    (TimeoutError("slow"), True), (ConnectionResetError("reset"), True), (MemoryError(), True),
    (OSError(errno.EIO, "I/O error"), True), (OSError(errno.ENOENT, "no"), False),
    (RuntimeError("CUDA out of memory"), True), (RuntimeError("shape mismatch"), False),
])
def test_only_transient_errors_are_retried(error, transient):
    assert batch.is_transient(error) is transient


def test_settled_waits_for_copies_to_finish(tmp_path):
    path = tmp_path / "a.wav"
    path.write_bytes(b"x")
    now = path.stat().st_mtime
    assert not batch.settled(path, min_age_seconds=60, now=now + 10)
    assert batch.settled(path, min_age_seconds=60, now=now + 61)


def test_ledger_marks_files_in_their_current_state(study, tmp_path):
    items = batch.discover(study, tmp_path / "o")
    results = [batch.failed_result(it, "boom") for it in items]
    ledger = tmp_path / "o" / batch.INBOX_LEDGER
    batch.append_ledger(ledger, items, results)
    with open(ledger, "a") as f:
        f.write('{"key": "trunc')  # killed mid-append
    entries = batch.read_ledger(ledger)
    assert {batch.ledger_key(it.input) for it in items} == set(entries)
    os.utime(items[0].input, ns=(1, 1))  # the file changed: no longer marked
    assert batch.ledger_key(items[0].input) not in entries


def test_a_dicom_series_folder_settles_when_all_its_files_do(tmp_path):
    import time

    from dicom_fakes import make_series

    folder = tmp_path / "series"
    make_series(folder)
    old = time.time() - 3600
    for p in [*folder.iterdir(), folder]:
        os.utime(p, (old, old))
    assert batch.settled(folder, min_age_seconds=60)
    key = batch.ledger_key(folder)
    last = max(folder.iterdir())
    last.write_bytes(last.read_bytes())  # still being copied: the folder's own mtime does not change
    os.utime(folder, (old, old))
    assert not batch.settled(folder, min_age_seconds=60)
    assert batch.ledger_key(folder) != key
