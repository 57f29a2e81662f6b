"""restore.report without Prefect: summary CSV/JSON, before/after pictures, HTML report."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import flow_fakes

from restore import report, report_content, report_pictures
from restore.batch import FileResult


@pytest.fixture
def results(tmp_path) -> list[FileResult]:
    """A restored MRI file, a skipped audio file (real files on disk) and a failed file."""
    mri_in, mri_out = tmp_path / "t1_noisy.nii.gz", tmp_path / "out" / "t1_noisy_restored.nii.gz"
    wav_in, wav_out = tmp_path / "s_noisy.wav", tmp_path / "out" / "s_noisy_restored.wav"
    mri_out.parent.mkdir()
    flow_fakes.make_mri(mri_in)
    flow_fakes.make_mri(mri_out, seed=1)
    flow_fakes.make_wav(wav_in)
    flow_fakes.make_wav(wav_out, seed=1)
    return [
        FileResult(str(mri_in), str(mri_out), "mri", "done", 2.5, metrics={
            "sigma_before": 4.0, "sigma_after": 1.0, "t_star": 120,
            "reference": {"input": {"psnr": 25.0}, "output": {"psnr": 31.0}}}),
        FileResult(str(wav_in), str(wav_out), "audio", "skipped", 1.0, metrics={
            "estimated_snr_db_before": 12.0, "estimated_snr_db_after": 9.0}),
        FileResult(str(tmp_path / "broken.nii.gz"), str(tmp_path / "out" / "broken_restored.nii.gz"), "mri",
                   "failed", error="InputError: not a readable NIfTI file"),
    ]


def test_metrics_are_flattened():
    flat = report.flat_metrics({"a": 1, "ref": {"input": {"psnr": 2.0}, "output": {"psnr": 3.0}}, "v": [1, 2]})
    assert flat == {"a": 1, "ref.input.psnr": 2.0, "ref.output.psnr": 3.0}


@pytest.mark.parametrize("label, before, after, better", [
    ("sigma", 4.0, 1.0, True), ("reference.nrmse", 0.1, 0.2, False), ("reference.psnr", 25.0, 31.0, True),
    ("estimated_snr_db", 12.0, 9.0, False), ("snr", 5.0, 5.0, None), ("snr", 3.868, 3.8681, None), ("psnr", float("inf"), 3.0, None)])
def test_improvement_direction_depends_on_the_metric(label, before, after, better):
    assert report_content.improved(label, before, after) is better


def test_summary_csv_and_json_hold_every_file(results, tmp_path):
    csv_path, json_path = report.write_summary(results, tmp_path / "out")
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["done", "skipped", "failed"]
    assert rows[0]["reference.output.psnr"] == "31.0" and rows[0]["seconds"] == "2.5"
    assert rows[2]["error"].startswith("InputError")
    summary = json.loads(json_path.read_text())
    assert summary["counts"] == {"total": 3, "done": 1, "skipped": 1, "failed": 1}
    assert summary["files"][1]["metrics"]["estimated_snr_db_after"] == 9.0


def test_pictures_mri_three_planes_and_audio_spectrograms(results, tmp_path):
    pictures = tmp_path / "out" / "report"
    mri = report.make_picture(results[0], pictures)
    audio = report.make_picture(results[1], pictures)
    assert report.make_picture(results[2], pictures) is None  # failed: nothing to show
    for png in (mri, audio):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mtime = mri.stat().st_mtime_ns
    assert report.make_picture(results[0], pictures).stat().st_mtime_ns == mtime  # reused, not redrawn


def test_mri_tiles_show_input_output_difference_in_three_planes():
    data = np.random.default_rng(0).integers(0, 100, size=(8, 10, 12)).astype(np.float32)
    tiles = report_pictures.mri_tiles(data, data + 1)
    assert [len(row) for row in tiles] == [3, 3, 3]
    assert tiles[0][0].shape == (report_pictures.TILE_PX, round(report_pictures.TILE_PX * 10 / 12), 3)  # sagittal: z rows, y columns
    assert tiles[1][2].mean() > tiles[0][2].mean()  # output = input + 1 on the input's grey scale: brighter
    red = tiles[2][1].reshape(-1, 3)  # output - input = +1 everywhere: the red end of the difference scale
    assert (red[:, 0] > red[:, 2]).all() and len(np.unique(red, axis=0)) == 1


def test_picture_is_one_png_with_labels_in_the_margin(results, tmp_path):
    from PIL import Image

    picture = report.make_picture(results[0], tmp_path)
    image = np.asarray(Image.open(picture).convert("RGB"))
    assert image.shape[0] > 3 * report_pictures.TILE_PX * 0.5 and image.shape[1] > 3 * report_pictures.TILE_PX * 0.5
    assert (image[:, :60] < 128).any()  # row labels drawn in the left margin


def test_markdown_summary_lists_failures():
    r = [FileResult("a.wav", "o.wav", "audio", "failed", error="InputError: empty")]
    text = report.markdown_summary(r, Path("out/report.html"))
    assert "0 done, 0 skipped, 1 failed of 1" in text and "**a.wav**: InputError: empty" in text


def test_mri_slices_keep_the_voxel_aspect_ratio():
    data = np.zeros((8, 10, 12), np.float32)
    tiles = report_pictures.mri_tiles(data, data, voxel_mm=(1.0, 1.0, 3.0))  # thick slices along z
    (sag, cor, axial) = (t.shape[:2] for t in tiles[0])
    assert sag[0] / sag[1] == pytest.approx(36 / 10, rel=0.02)  # 12 slices of 3 mm against 10 of 1 mm
    assert cor[0] / cor[1] == pytest.approx(36 / 8, rel=0.02)
    assert axial[0] / axial[1] == pytest.approx(10 / 8, rel=0.02)


def test_audio_tiles_put_low_frequencies_at_the_bottom():
    sr = 16000
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)[:, None]
    before, after = (row[0] for row in report_pictures.audio_tiles(tone, tone, sr, sr))
    assert before.shape == (report_pictures.TILE_PX, 3 * report_pictures.TILE_PX, 3) and np.array_equal(before, after)
    brightness = before.astype(float).sum(axis=(1, 2))
    assert brightness.argmax() > 0.9 * report_pictures.TILE_PX  # 500 Hz of 8 kHz: near the bottom row


# ---------------------------------------------------------------- the page people read


def mri_record(**metrics) -> dict:
    """An MRI sidecar record shaped as restore.mri.pipeline writes it."""
    m = {"sigma_before": 50.4, "sigma_before_pct_p99": 5.0, "sigma_used": 50.4, "sigma_after": 5.7,
         "snr_before": 11.3, "snr_after": 99.8, "residual_structure": 0.046, "t_star": 27, "steps_run": 1,
         "refine": {"pilot_shift_sigma2": 0.05, "h_over_sigma": [0.45, 0.6]},
         "slices": {"axis": 2, "missing": [], "corrupted": [], "suspect_not_filled": [], "given": [], "filled": [],
                    "longest_gap": 0, "low_confidence": False}}
    m.update(metrics)
    return {"kind": "mri", "task": "denoise", "model": {"version": "0.1.0+mri_denoise.5200"},
            "params": {"refine": True, "orientations": 1, "samples": 1, "strength": 1.0, "task": "auto"}, "metrics": m}


def audio_record(probe: str = "yes: noisy, smooth noise floor", low: int = 0, **metrics) -> dict:
    """An audio sidecar record shaped as restore.audio.pipeline writes it."""
    m = {"clipped_samples": 0, "filled_regions": 1, "filled_seconds": 0.04,
         "estimated_snr_db_before": 6.6, "estimated_snr_db_after": 28.3,
         "auto_probe": {"estimated_snr_db": 7.1, "noise_floor_roughness_db": 0.9, "auto_denoise": probe}}
    m.update(metrics)
    return {"kind": "audio", "inpaint_model": {"name": "audio_inpaint", "version": "0.1.0"},
            "regions": {"counts": {"dropout": 1, "nan": 0, "marked": 0, "clipped": 0}, "low_confidence": low,
                        "filled_seconds": 0.04, "truncated": False,
                        "listed": [{"channel": 0, "start": 16000, "stop": 16640, "kind": "dropout", "start_s": 1.0,
                                    "stop_s": 1.04, "confidence": "normal"}]},
            "params": {"task": "auto", "denoised": True, "steps": 1, "t_star": {"min": 210, "median": 215, "max": 219},
                       "output_gain": 1.0},
            "metrics": m}


def _result(name: str, kind: str, record: dict | None, status: str = "done", error: str | None = None) -> FileResult:
    return FileResult(f"/in/{name}", f"/out/{name}", kind, status, 1.5, metrics=(record or {}).get("metrics", {}),
                      error=error, record=record)


def test_page_groups_by_kind_with_warned_files_first_and_failures_on_top(tmp_path):
    results = [
        _result("clean_a.wav", "audio", audio_record()),
        _result("t1_clean.nii.gz", "mri", mri_record()),
        _result("music.wav", "audio", audio_record(probe="no: tonal noise floor (music?); use --task denoise to force")),
        _result("t1_blurred.nii.gz", "mri", mri_record(residual_structure=0.6)),
        _result("broken.nii.gz", "mri", None, "failed", "InputError: not a readable NIfTI file"),
    ]
    page = report.render_html(results, tmp_path, {}).read_text()
    at = page.index
    # failures first (with their reason), then every warning, then MRI, then audio
    assert at("<h2>Failed</h2>") < at("<h2>Warnings</h2>") < at("<h2>MRI: 3 files</h2>") < at("<h2>Audio: 2 files</h2>")
    assert "<b>broken.nii.gz</b> (MRI): InputError: not a readable NIfTI file" in page
    assert "failed: InputError: not a readable NIfTI file" in page  # its summary line too
    # each file's section sits in its kind's group; within a group warned files come first
    audio = page[at("<h2>Audio"):]
    mri = page[at("<h2>MRI"):at("<h2>Audio")]
    assert "<h3>t1_clean.nii.gz" in mri and "<h3>music.wav" in audio and "<h3>music.wav" not in mri
    assert mri.index("<h3>t1_blurred.nii.gz") < mri.index("<h3>t1_clean.nii.gz")
    assert audio.index("<h3>music.wav") < audio.index("<h3>clean_a.wav")
    assert "<h3>broken.nii.gz" not in page  # a failed file has no section: nothing was made
    # in a section, warnings come before findings
    blurred = mri[mri.index("<h3>t1_blurred.nii.gz"):]
    assert blurred.index("structure left in the residual 0.600 &gt; 0.2") < blurred.index("<h4>Findings")
    # no sidecar internals reach the page
    assert "pilot_shift" not in page and "roughness" not in page and "<script" not in page


def test_warnings_come_from_low_confidence_fills_suspect_slices_and_declined_denoising():
    slices = {"axis": 2, "missing": [10, 11, 12, 13], "suspect_not_filled": [40], "filled": [10, 11, 12, 13],
              "longest_gap": 4, "low_confidence": True}
    mri = report_content.digest(_result("t1.nii.gz", "mri", mri_record(slices=slices)))
    assert any("low-confidence fill: a run of 4 missing slices" in w for w in mri.warnings)
    assert any("suspect slices left as they were (axis 2): 40" in w for w in mri.warnings)
    assert "missing slices (axis 2): 10-13" in mri.findings and "filled 4 slices: 10-13" in mri.actions
    assert "4 slices filled" in mri.summary
    audio = report_content.digest(_result("m.wav", "audio", audio_record(
        probe="no: tonal noise floor (music?); use --task denoise to force", low=2)))
    assert "2 low-confidence fills (gaps longer than the model fills well)" in audio.warnings
    assert any(w.startswith("auto mode did not denoise: tonal noise floor") for w in audio.warnings)
    clean = report_content.digest(_result("c.wav", "audio", audio_record(probe="no: estimated clean")))
    assert not clean.warnings and "auto mode did not denoise: estimated clean" in clean.findings


def test_metrics_are_chosen_per_kind_and_reference_metrics_go_input_to_output():
    ref_mri = {"input": {"psnr_head": 29.6, "ssim_head": 0.90, "nrmse": 0.1}, "output": {"psnr_head": 36.3,
                                                                                       "ssim_head": 0.98, "nrmse": 0.04}}
    mri = report_content.digest(_result("t1.nii.gz", "mri", mri_record(reference=ref_mri)))
    assert [m.label for m in mri.metrics] == ["noise sigma", "SNR", "residual structure", "PSNR (head)", "SSIM (head)"]
    sigma, psnr = mri.metrics[0], mri.metrics[3]
    assert (sigma.before, sigma.after, sigma.better) == (50.4, 5.7, True) and (psnr.before, psnr.after) == (29.6, 36.3)
    assert mri.metrics[2].before is None  # residual structure is measured on the output only
    ref_audio = {"input": {"si_sdr_db": 12.0, "pesq_wb": 2.7, "estoi": 0.93, "lsd_db": 3.5},
                 "output": {"si_sdr_db": 15.7, "pesq_wb": 2.5, "estoi": 0.95, "lsd_db": 1.0}, "seconds": 6.0}
    audio = report_content.digest(_result("s.wav", "audio", audio_record(reference=ref_audio)))
    assert [m.label for m in audio.metrics] == ["estimated SNR", "SI-SDR", "PESQ-WB", "ESTOI", "LSD"]
    assert [m.better for m in audio.metrics] == [True, True, False, True, True]  # LSD: lower is better
    assert "PESQ-WB against the reference got worse: 2.7 → 2.5" in audio.warnings
    assert audio.summary == "auto; 1 region filled; estimated SNR 6.6 → 28.3 dB; SI-SDR 12 → 15.7 dB; PESQ-WB 2.7 → 2.5"


def test_audio_findings_block_and_notes_are_shown_when_present():
    record = audio_record(notes=["the header declares 100 frames, 90 could be decoded: restored those"])
    record["findings"] = {"clicks": [{"time_s": 0.5}, {"start_s": 0.7, "stop_s": 0.701}],
                          "hum": {"frequency_hz": 50.0, "count": 3}, "brand_new_detector": {"x": 1}}
    d = report_content.digest(_result("a.wav", "audio", record))
    assert "2 clicks" in d.findings and "3 hum at 50 Hz" in d.findings
    assert "note: the header declares 100 frames, 90 could be decoded: restored those" in d.warnings
    assert not any("brand_new" in line for line in d.findings + d.warnings + d.actions)
    spans = report_content.marked_spans(record)
    assert spans == [(1.0, 1.04, "dropout"), (0.5, 0.5, "click"), (0.7, 0.701, "click")]


@pytest.mark.parametrize("record", [
    None, {}, {"metrics": None}, {"metrics": {"volumes": "x"}}, {"metrics": {"slices": [1, 2], "qc": "odd",
                                                                             "reference": {"input": 3}}},
    {"regions": "x", "params": [], "findings": {"clicks": "abc", "hum": None}, "tags": {"problems": [1]}},
    {"metrics": {"sigma_before": "n/a", "t_star": None, "steps_run": 2, "qc": {"new_score": 0.3}}},
])
@pytest.mark.parametrize("kind", ["mri", "audio", "ct"])
def test_missing_or_unknown_keys_do_not_crash_the_report(record, kind, tmp_path):
    result = FileResult("/in/x", "/out/x", kind, "done", 1.0, metrics=(record or {}).get("metrics") or {},
                        record=record)
    d = report_content.digest(result)
    assert d.name == "x"
    page = report.render_html([result], tmp_path, {}).read_text()
    assert "<h3>x " in page and "new_score" not in page


def test_audio_picture_marks_the_listed_regions(tmp_path):
    strip = report_pictures.region_strip([(1.0, 1.04, "dropout"), (1.5, 1.5, "click")], 2.0, 200)
    assert (strip[:, 100] == report_pictures.GAP_COLOUR).all() and (strip[:, 150] == (0, 150, 60)).all()
    assert (strip[:, 50] == 235).all() and (strip[:, 120] == 235).all()
    wav_in, wav_out = tmp_path / "a_noisy.wav", tmp_path / "a_restored.wav"
    flow_fakes.make_wav(wav_in)
    flow_fakes.make_wav(wav_out, seed=1)
    result = FileResult(str(wav_in), str(wav_out), "audio", "done", record=audio_record())
    from PIL import Image

    image = np.asarray(Image.open(report_pictures.make_picture(result, tmp_path / "pics")).convert("RGB"))
    assert (image.reshape(-1, 3) == report_pictures.GAP_COLOUR).all(axis=1).sum() >= report_pictures.STRIP_PX


def test_picture_of_a_dicom_series_input(tmp_path):
    """A DICOM series folder as input (restore.mri.dicom) gets its picture too, not a nibabel error."""
    from dicom_fakes import make_series

    series, out = tmp_path / "series", tmp_path / "series_restored.nii.gz"
    series.mkdir()
    make_series(series)
    flow_fakes.make_mri(out, shape=(16, 16, 6))
    result = FileResult(input=str(series), output=str(out), kind="mri", status="done", record={"input": {}})
    assert report.make_picture(result, tmp_path / "pictures").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
