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

from restore import report
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


def test_metrics_are_flattened_and_paired_before_after():
    flat = report.flat_metrics({"a": 1, "ref": {"input": {"psnr": 2.0}, "output": {"psnr": 3.0}}, "v": [1, 2]})
    assert flat == {"a": 1, "ref.input.psnr": 2.0, "ref.output.psnr": 3.0}
    assert report.before_after_pairs(sorted(["snr_before", "snr_after", "ref.input.psnr", "ref.output.psnr",
                                             "lonely_before"])) == [
        ("ref.psnr", "ref.input.psnr", "ref.output.psnr"), ("snr", "snr_before", "snr_after")]


@pytest.mark.parametrize("label, before, after, better", [
    ("sigma", 4.0, 1.0, True), ("reference.nrmse", 0.1, 0.2, False), ("reference.psnr", 25.0, 31.0, True),
    ("estimated_snr_db", 12.0, 9.0, False), ("snr", 5.0, 5.0, None), ("snr", 3.868, 3.8681, None), ("psnr", float("inf"), 3.0, None)])
def test_improvement_direction_depends_on_the_metric(label, before, after, better):
    assert report.improved(label, before, after) is better


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
    tiles = report.mri_tiles(data, data + 1)
    assert [len(row) for row in tiles] == [3, 3, 3]
    assert tiles[0][0].shape == (report.TILE_PX, round(report.TILE_PX * 10 / 12), 3)  # sagittal: z rows, y columns
    assert tiles[1][2].mean() > tiles[0][2].mean()  # output = input + 1 on the input's grey scale: brighter
    red = tiles[2][1].reshape(-1, 3)  # output - input = +1 everywhere: the red end of the difference scale
    assert (red[:, 0] > red[:, 2]).all() and len(np.unique(red, axis=0)) == 1


def test_picture_is_one_png_with_labels_in_the_margin(results, tmp_path):
    from PIL import Image

    picture = report.make_picture(results[0], tmp_path)
    image = np.asarray(Image.open(picture).convert("RGB"))
    assert image.shape[0] > 3 * report.TILE_PX * 0.5 and image.shape[1] > 3 * report.TILE_PX * 0.5
    assert (image[:, :60] < 128).any()  # row labels drawn in the left margin


def test_html_report_shows_failures_first_and_marks_better_and_worse(results, tmp_path):
    outdir = tmp_path / "out"
    picture = report.make_picture(results[0], outdir / "report")
    page = report.render_html(results, outdir, {results[0].input: picture}).read_text()
    assert "1 done, 1 skipped" in page and "1 failed" in page
    assert page.index("class='failures'") < page.index("<table>")
    assert "broken.nii.gz</b>: InputError: not a readable NIfTI file" in page
    assert "<span class='better'>4 &rarr; 1</span>" in page  # sigma went down
    assert "<span class='better'>25 &rarr; 31</span>" in page  # reference PSNR went up
    assert "<span class='worse'>12 &rarr; 9</span>" in page  # estimated SNR went down
    assert "src='report/t1_noisy_restored.png'" in page
    assert "href='t1_noisy_restored.nii.gz'" in page


def test_markdown_summary_lists_failures():
    r = [FileResult("a.wav", "o.wav", "audio", "failed", error="InputError: empty")]
    text = report.markdown_summary(r, Path("out/report.html"))
    assert "0 done, 0 skipped, 1 failed of 1" in text and "**a.wav**: InputError: empty" in text


def test_mri_slices_keep_the_voxel_aspect_ratio():
    data = np.zeros((8, 10, 12), np.float32)
    tiles = report.mri_tiles(data, data, voxel_mm=(1.0, 1.0, 3.0))  # thick slices along z
    (sag, cor, axial) = (t.shape[:2] for t in tiles[0])
    assert sag[0] / sag[1] == pytest.approx(36 / 10, rel=0.02)  # 12 slices of 3 mm against 10 of 1 mm
    assert cor[0] / cor[1] == pytest.approx(36 / 8, rel=0.02)
    assert axial[0] / axial[1] == pytest.approx(10 / 8, rel=0.02)


def test_audio_tiles_put_low_frequencies_at_the_bottom():
    sr = 16000
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 500 * t)).astype(np.float32)[:, None]
    before, after = (row[0] for row in report.audio_tiles(tone, tone, sr, sr))
    assert before.shape == (report.TILE_PX, 3 * report.TILE_PX, 3) and np.array_equal(before, after)
    brightness = before.astype(float).sum(axis=(1, 2))
    assert brightness.argmax() > 0.9 * report.TILE_PX  # 500 Hz of 8 kHz: near the bottom row
