"""The Prefect flows end to end under one session-scoped ``prefect_test_harness``.

The restore function is the fake of ``flow_fakes`` (same contract as restore.api), so these tests
check the flows' own work: mapping, failures, retries, skip/resume after a kill, reports, artifacts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# Before Prefect is imported: its home, database and settings live in a temporary folder.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="restore-test-prefect-")
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

sys.path.insert(0, str(Path(__file__).parent))
import flow_fakes

from restore import api, batch
from restore.weights import shipped_weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def prefect_api() -> str:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """The fake restore function in this process; returns the names it was called with, in order."""
    return flow_fakes.patch_fake(monkeypatch)


@pytest.fixture
def mixed(tmp_path) -> Path:
    """MRI with its clean reference, another MRI, audio with its reference, and one corrupt NIfTI."""
    src = tmp_path / "in"
    src.mkdir()
    flow_fakes.make_mri(src / "t1_noisy.nii.gz")
    flow_fakes.make_mri(src / "t1_clean.nii.gz", seed=1)
    flow_fakes.make_mri(src / "t2.nii.gz", seed=2)
    flow_fakes.make_wav(src / "speech_noisy.wav")
    flow_fakes.make_wav(src / "speech_clean.wav", seed=1)
    (src / "corrupt.nii.gz").write_bytes(b"this is not a NIfTI file")
    return src


def run_cli(*argv: str) -> tuple[int, dict]:
    from flows.cli import main

    code = main(["batch", *argv, "--no-progress"])
    outdir = Path(argv[argv.index("-o") + 1])
    return code, json.loads((outdir / "batch_summary.json").read_text())


def by_name(summary: dict) -> dict[str, dict]:
    return {Path(f["input"]).name: f for f in summary["files"]}


def test_mixed_folder_done_corrupt_reported_rerun_skips(prefect_api, mixed, tmp_path, calls):
    out = tmp_path / "out"
    code, summary = run_cli(str(mixed), "-o", str(out))
    assert code == 1  # one file failed
    assert summary["counts"] == {"total": 4, "done": 3, "skipped": 0, "failed": 1}
    files = by_name(summary)
    assert "corrupt.nii.gz" in files["corrupt.nii.gz"]["error"] and "InputError" in files["corrupt.nii.gz"]["error"]
    assert calls.count("corrupt.nii.gz") == 1  # bad input is not retried
    for name in ("t1_noisy_restored.nii.gz", "t2_restored.nii.gz", "speech_noisy_restored.wav"):
        assert (out / name).is_file()
        stem = name.split(".")[0]
        assert json.loads((out / f"{stem}.json").read_text())["input"]["sha256"]
        assert (out / "report" / f"{stem}.png").is_file()
    assert not (out / "corrupt_restored.nii.gz").exists()
    assert files["t1_noisy.nii.gz"]["reference"] == str(mixed / "t1_clean.nii.gz")
    page = (out / "report.html").read_text()
    assert "<h2>Failed</h2>" in page and "<b>corrupt.nii.gz</b>" in page
    assert (out / "batch_summary.csv").read_text().count("\n") == 5

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["restore-batch-summary", "restore-batch-files"])))
        (last_run,) = client.read_flow_runs(sort="START_TIME_DESC", limit=1)
    assert (last_run.state.type.value, last_run.state.message) == ("FAILED", "1 of 4 files failed")
    assert {a.type for a in artifacts} >= {"markdown", "table"}
    assert any("1 failed" in str(a.data) for a in artifacts if a.type == "markdown")

    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*_restored.*")}
    del calls[:]
    code, summary = run_cli(str(mixed), "-o", str(out))
    assert summary["counts"] == {"total": 4, "done": 0, "skipped": 3, "failed": 1}
    assert calls == ["corrupt.nii.gz"]  # nothing finished was redone
    assert {p: p.stat().st_mtime_ns for p in out.glob("*_restored.*")} == mtimes


def test_files_are_tagged_for_the_concurrency_limit_only_when_one_exists(prefect_api):
    from prefect.client.orchestration import get_client

    from flows.batch import CONCURRENCY_TAG, limited, restore_one

    assert CONCURRENCY_TAG not in limited(restore_one).tags  # no limit: no slot request per file
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=CONCURRENCY_TAG, concurrency_limit=4)
        try:
            assert CONCURRENCY_TAG in limited(restore_one).tags  # `restore serve --limit 4` caps every batch
        finally:
            client.delete_concurrency_limit_by_tag(CONCURRENCY_TAG)


def test_transient_errors_are_retried(prefect_api, mixed, tmp_path, calls, monkeypatch):
    import flows.batch

    fake = api.restore_file
    failures = {"speech_noisy.wav": 1}

    def flaky(input_path, output_path, **kw):
        if failures.get(Path(input_path).name):
            failures[Path(input_path).name] -= 1
            calls.append(Path(input_path).name)
            raise TimeoutError("file server did not answer")
        return fake(input_path, output_path, **kw)

    monkeypatch.setattr(api, "restore_file", flaky)
    monkeypatch.setattr(flows.batch, "restore_one", flows.batch.restore_one.with_options(retry_delay_seconds=0))
    summary = flows.batch.restore_batch(str(mixed / "*.wav"), str(tmp_path / "out"))
    assert by_name(summary)["speech_noisy.wav"]["status"] == "done"
    assert calls == ["speech_noisy.wav", "speech_noisy.wav"]


def test_killed_batch_resumes_and_redoes_no_finished_file(prefect_api, tmp_path, calls):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(5):
        flow_fakes.make_wav(src / f"take{i}.wav", seed=i)
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "RESTORE_FAKE_DELAY": "0.4", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, str(Path(__file__).parent / "flow_fakes.py"), "batch", str(src),
                                "-o", str(out), "--no-progress"], env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    finished: list[Path] = []
    while time.monotonic() < deadline and len(finished) < 2 and process.poll() is None:
        time.sleep(0.05)
        # skip hidden temp files of atomic writes: they are renamed away between glob and read
        finished = [p for p in out.glob("*.json") if not p.name.startswith(".") and '"batch"' in p.read_text()]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 2 <= len(finished) < 5, "the batch was not killed half-way"
    kept = {p.name: p.stat().st_mtime_ns for p in finished}

    code, summary = run_cli(str(src), "-o", str(out))
    assert code == 0
    statuses = {Path(f["output"]).name.replace(".wav", ".json"): f["status"] for f in summary["files"]}
    assert {name for name, s in statuses.items() if s == "skipped"} >= set(kept)
    assert summary["counts"]["done"] + summary["counts"]["skipped"] == 5
    assert len(calls) == summary["counts"]["done"] <= 3
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept
    assert sorted(p.name for p in out.glob("*_restored.wav")) == [f"take{i}_restored.wav" for i in range(5)]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no partial files left


def test_watch_inbox_restores_settled_files_once(prefect_api, tmp_path, calls):
    from flows.inbox import watch_inbox

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    flow_fakes.make_wav(inbox / "old.wav")
    flow_fakes.make_wav(inbox / "copying.wav", seed=1)
    os.utime(inbox / "old.wav", (time.time() - 600, time.time() - 600))
    first = watch_inbox(str(inbox), str(out), settle_seconds=60)
    assert [Path(f["input"]).name for f in first["files"]] == ["old.wav"]  # copying.wav is still too new
    assert (out / "old_restored.wav").is_file()
    second = watch_inbox(str(inbox), str(out), settle_seconds=60)
    assert second["counts"]["total"] == 0 and calls == ["old.wav"]
    assert len(batch.read_ledger(out / batch.INBOX_LEDGER)) == 1


def test_restore_file_flow_dispatches_on_file_type(prefect_api, mixed, tmp_path, calls):
    from flows.batch import restore_file

    result = restore_file(str(mixed / "t1_noisy.nii.gz"), str(tmp_path / "one.nii.gz"))
    assert (result["status"], result["kind"]) == ("done", "mri")
    assert result["reference"] == str(mixed / "t1_clean.nii.gz")
    assert json.loads((tmp_path / "one.json").read_text())["kind"] == "mri"


def test_train_flow_prepares_data_trains_and_publishes_the_card(prefect_api, monkeypatch, tmp_path):
    import types

    from flows.train import train

    done = []
    data_dir, weights = tmp_path / "data" / "audio", tmp_path / "models" / "audio_denoise.safetensors"
    trainer = types.ModuleType("restore.audio.train")
    trainer.load_config = lambda path: types.SimpleNamespace(data_dir=str(data_dir))

    def main(config_path):
        done.append(f"train {Path(config_path).name}")
        weights.parent.mkdir()
        weights.with_suffix(".json").write_text(json.dumps({"name": "audio_denoise", "version": "9",
                                                            "metrics": {"si_sdr_db": 11.5}}))
        return weights

    def prepare(out_dir):
        done.append(f"prepare {Path(out_dir).name}")
        data_dir.mkdir(parents=True)
        (data_dir / "manifest.json").write_text("{}")
        return data_dir

    trainer.main = main
    monkeypatch.setitem(sys.modules, "restore.audio.train", trainer)
    monkeypatch.setitem(sys.modules, "restore.audio.data", types.SimpleNamespace(prepare=prepare))
    card = train("audio", "configs/audio_denoise.yaml")
    assert card["version"] == "9" and done == ["prepare data", "train audio_denoise.yaml"]

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_latest_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["model-card-audio"])))
    assert "| si_sdr_db | 11.5 |" in artifact.data


SAMPLES = ROOT / "sample_data"
MODELS = {"mri": shipped_weights("mri_denoise"), "audio": shipped_weights("audio_denoise")}


def real_inputs(folder: Path, monkeypatch, untrained_mri: Path) -> dict[str, Path]:
    """Short crops of sample_data, each with its clean reference; kind -> the weights that restore it.
    Until the MRI model is trained, the MRI pipeline runs on untrained weights (conftest's tiny model)."""
    import numpy as np
    import soundfile as sf

    from restore.mri import pipeline
    from restore.mri.io import load_nifti, save_nifti

    folder.mkdir()
    weights = {}
    if MODELS["audio"].is_file():
        for name in ("speech_noisy", "speech_clean"):
            samples, sr = sf.read(SAMPLES / f"{name}.wav", always_2d=True, dtype="float32")
            sf.write(folder / f"{name}.wav", samples[: sr * 3 // 2], sr, subtype="PCM_16")
        weights["audio"] = MODELS["audio"]
    weights["mri"] = MODELS["mri"] if MODELS["mri"].is_file() else untrained_mri
    monkeypatch.setattr(pipeline, "DEFAULT_MODEL", weights["mri"])
    for name in ("t1_noisy", "t1_clean"):
        volume = load_nifti(SAMPLES / f"{name}.nii.gz")
        x, y, z = (s // 2 for s in volume.data.shape[:3])
        save_nifti(folder / f"{name}.nii.gz", np.ascontiguousarray(
            volume.data[x - 24:x + 24, y - 24:y + 24, z - 4:z + 4]), volume)
    return weights


def test_real_restore_functions_on_sample_data_crops(prefect_api, tmp_path, monkeypatch, tiny_mri_model):
    """The flows on the real MRI/audio restore functions: references paired, corrupt file reported."""
    src, out = tmp_path / "in", tmp_path / "out"
    kinds = real_inputs(src, monkeypatch, tiny_mri_model)
    (src / "corrupt.wav").write_bytes(b"RIFF but not really a wave file")
    code, summary = run_cli(str(src), "-o", str(out))
    files = by_name(summary)
    assert code == 1 and files["corrupt.wav"]["status"] == "failed"
    assert summary["counts"] == {"total": len(kinds) + 1, "done": len(kinds), "skipped": 0, "failed": 1}
    for kind, weights in kinds.items():
        name = {"audio": "speech_noisy.wav", "mri": "t1_noisy.nii.gz"}[kind]
        record = files[name]
        assert record["reference"] == str(src / name.replace("noisy", "clean"))
        assert "reference" in record["metrics"]  # the clean file was used as the reference
        card = json.loads(weights.with_suffix(".json").read_text())
        assert record["model"]["version"] == str(card["version"])
        assert Path(record["output"]).is_file()
    code, summary = run_cli(str(src), "-o", str(out))
    assert summary["counts"]["skipped"] == len(kinds)  # the model version check matches the sidecars
    page = (out / "report.html").read_text()
    assert page.count("<img ") == len(kinds)


def test_dask_runner_two_workers_share_the_api(prefect_api, tmp_path):
    """--runner dask: worker processes (which cannot see this process's patches) restore for real."""
    import soundfile as sf

    src = tmp_path / "in"
    src.mkdir()
    samples, sr = sf.read(SAMPLES / "speech_noisy.wav", always_2d=True, dtype="float32")
    for i in range(2):
        sf.write(src / f"clip{i}.wav", samples[i * sr // 2: i * sr // 2 + sr], sr)
    code, summary = run_cli(str(src), "-o", str(tmp_path / "out"), "--runner", "dask", "--workers", "2")
    assert (code, summary["counts"]["done"]) == (0, 2)
    assert os.environ.get("PREFECT_API_URL") in (None, prefect_api)  # the run's export was undone

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    with get_client(sync_client=True) as client:  # the workers reported their task runs to this API
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="clip")))
    assert sorted(r.name for r in runs if r.state.is_completed()) == [f"restore clip{i}.wav" for i in range(2)]


def test_bad_batch_input_is_one_line_and_exit_code_2(prefect_api, tmp_path, capsys):
    from restore.cli import main

    assert main(["batch", str(tmp_path / "missing"), "-o", str(tmp_path / "out")]) == 2
    assert "batch input not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) == 2
    assert "no MRI or audio files in" in capsys.readouterr().err


@pytest.mark.parametrize("workers, cores, load, threads", [
    (1, 2, 0.0, 2), (2, 2, 0.0, 1), (1, 2, 1.2, 1), (1, 2, 7.0, 1), (3, 2, 0.0, 1), (2, 8, 2.5, 3)])
def test_threads_per_file_share_the_idle_cores(workers, cores, load, threads):
    from flows.runners import threads_per_file

    assert threads_per_file(workers, cores=cores, load=load) == threads


@pytest.mark.parametrize("cores, workers", [(1, 1), (2, 2), (4, 4), (32, 4)])
def test_default_workers_one_per_core_up_to_four(cores, workers):
    from flows.runners import default_workers

    assert default_workers("local", cores=cores) == workers == default_workers("dask", cores=cores)


def test_dask_workers_keep_glibcs_dynamic_mmap_threshold():
    """Dask's default MALLOC_TRIM_THRESHOLD_ doubled torch's time per volume in a worker."""
    from distributed.nanny import _get_env_variables

    from flows.runners import task_runner

    task_runner("dask", 2)
    assert "MALLOC_TRIM_THRESHOLD_" not in _get_env_variables("distributed.nanny.pre-spawn-environ")


def test_restore_batch_runs_without_flow_heartbeats_unless_the_user_set_them(monkeypatch):
    from prefect.settings import get_current_settings

    from flows import runners

    monkeypatch.delenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", raising=False)
    monkeypatch.delenv("PREFECT_RUNNER_HEARTBEAT_FREQUENCY", raising=False)
    before = get_current_settings().flows.heartbeat_frequency
    assert before is not None  # Prefect's default: a heartbeat thread the flow joins when it ends
    with runners.without_flow_heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == before
    monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "60")
    with runners.without_flow_heartbeats():  # the user's choice wins
        assert get_current_settings().flows.heartbeat_frequency == before


def test_bids_dataset_becomes_a_derivatives_dataset(prefect_api, tmp_path, calls):
    """Two subjects: outputs mirror the raw layout with desc-denoised, sidecars carry the raw metadata
    that still holds, DWI gradients are copied, pybids finds the derivatives, the raw dataset is untouched."""
    from bids_fakes import make_bids, tree_digest

    raw, out = make_bids(tmp_path / "raw"), tmp_path / "derivatives" / "restore"
    before = tree_digest(raw)
    code, summary = run_cli(str(raw), "-o", str(out), "--participant-label", "01", "sub-02")
    assert (code, summary["counts"]["done"]) == (0, 4)
    assert tree_digest(raw) == before  # nothing written into the raw dataset
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"] == "1.9.0"
    assert description["GeneratedBy"][0]["Name"] == "restore" and "CodeURL" not in description["GeneratedBy"][0]
    assert description["SourceDatasets"] == [{"URL": raw.resolve().as_uri()}]
    t1 = out / "sub-01" / "ses-1" / "anat" / "sub-01_ses-1_desc-denoised_T1w"
    sidecar = json.loads(t1.with_suffix(".json").read_text())
    assert (sidecar["RepetitionTime"], sidecar["EchoTime"], sidecar["MagneticFieldStrength"]) == (2.3, 0.003, 3)
    assert "ImageType" not in sidecar and sidecar["Sources"] == ["bids:raw:sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz"]
    dwi = out / "sub-01" / "ses-1" / "dwi"
    for ext in (".bval", ".bvec"):
        assert (dwi / f"sub-01_ses-1_desc-denoised_dwi{ext}").read_bytes() == \
            (raw / "sub-01" / "ses-1" / "dwi" / f"sub-01_ses-1_dwi{ext}").read_bytes()
    from bids import BIDSLayout

    layout = BIDSLayout(str(raw), derivatives=str(out), validate=True)
    found = layout.get(scope="derivatives", desc="denoised", extension=[".nii.gz"], return_type="filename")
    assert sorted(Path(f).name for f in found) == sorted(Path(r["output"]).name for r in summary["files"])
    bold = layout.get(scope="derivatives", desc="denoised", suffix="bold", extension=".nii.gz")[0]
    assert bold.get_metadata()["RepetitionTime"] == 1.5  # inherited from the raw task-rest_bold.json
    assert layout.get(scope="derivatives", suffix="dwi", extension=".bval")
    code, summary = run_cli(str(raw), "-o", str(tmp_path / "only2"), "--participant-label", "02")
    assert {Path(f["input"]).name for f in summary["files"]} == {"sub-02_T1w.nii.gz", "sub-02_task-rest_bold.nii.gz"}


def test_dicom_series_folders_are_one_item_each(prefect_api, tmp_path, monkeypatch, tiny_mri_model):
    """The real MRI pipeline (untrained tiny weights) on a folder with one series and a folder that mixes two."""
    import nibabel as nib
    import numpy as np
    from dicom_fakes import make_series

    from restore.mri import pipeline
    from restore.mri.dicom import load_dicom

    monkeypatch.setattr(pipeline, "DEFAULT_MODEL", tiny_mri_model)
    src = tmp_path / "in"
    make_series(src / "t1", shape=(16, 16, 6))
    make_series(src / "mixed", shape=(16, 16, 6), series_number=5, seed=1)
    make_series(src / "mixed", shape=(16, 16, 6), series_number=6, seed=2, prefix="B",
                row_dir=(0.0, 1.0, 0.0), col_dir=(0.0, 0.0, -1.0))
    out = tmp_path / "out"
    code, summary = run_cli(str(src), "-o", str(out))
    assert (code, summary["counts"]["done"]) == (0, 3), summary
    assert sorted(Path(f["output"]).name for f in summary["files"]) == [
        "mixed_series-5_restored.nii.gz", "mixed_series-6_restored.nii.gz", "t1_restored.nii.gz"]
    for f in summary["files"]:
        series = json.loads(Path(f["output"].replace(".nii.gz", ".json")).read_text())["input"]["series_uid"]
        expected = load_dicom(Path(f["input"]), series_uid=series)
        np.testing.assert_allclose(nib.load(f["output"]).affine, expected.affine, atol=1e-5)
    code, summary = run_cli(str(src), "-o", str(out))
    assert summary["counts"]["skipped"] == 3  # a series' digest and options match its sidecar
