"""What the batch report says about one file, read from its sidecar record: warnings, findings,
actions and the few metrics that matter for its kind.

Sidecars grow (other parts of restore add keys); everything here is read with ``.get`` and type
checks, so a missing or unknown key leaves a line out instead of failing the report. Keys read:

- MRI (:mod:`restore.mri.pipeline`): ``task``, ``params.{refine,orientations,samples,strength}``,
  ``metrics.{sigma_before,sigma_before_pct_p99,sigma_after,snr_before,snr_after,residual_structure,
  t_star,steps_run,slices,reference}`` (``metrics.volumes[i]`` for 4D), and from
  ``metrics.qc`` only ``warnings`` (a list of strings) and ``over_smoothing`` (true, or a dict
  with ``flag``).
- Audio (:mod:`restore.audio.pipeline`): ``params.{task,denoised,steps,t_star,output_gain}``,
  ``regions``, ``inpaint_model``, ``tags``, ``metrics.{estimated_snr_db_before/after,auto_probe,
  clipped_samples,notes,reference}`` and ``findings.{clicks,hum}`` (a list, a count or a dict
  with ``count`` / ``frequency_hz``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from restore.batch import FileResult

# share of the removed signal that is not white noise. Measured on sample_data/t1_noisy.nii.gz:
# the shipped denoiser 0.046, a Gaussian blur of 1 voxel 0.59 (0.5 voxel: 0.0)
RESIDUAL_STRUCTURE_WARN = 0.2
LOWER_IS_BETTER = ("sigma", "nrmse", "rmse", "mse", "lsd", "residual", "error")


@dataclass(frozen=True)
class Metric:
    """One row of a file's metric table: ``before`` is None for a value measured only on the output."""

    label: str
    after: float
    before: float | None = None
    unit: str = ""

    @property
    def better(self) -> bool | None:
        return None if self.before is None else improved(self.label, self.before, self.after)


@dataclass
class Digest:
    """A file as the report shows it. ``summary`` is the one line of the per-kind table."""

    name: str
    kind: str
    status: str
    seconds: float
    error: str | None = None
    summary: str = ""
    warnings: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    metrics: list[Metric] = field(default_factory=list)


def improved(label: str, before: float, after: float) -> bool | None:
    """True when ``after`` is better than ``before`` (lower for noise/error names, else higher);
    None when either is not a finite number or they differ by less than 0.1%."""
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (before, after)):
        return None
    if abs(after - before) <= 1e-3 * max(abs(before), abs(after)):  # unchanged at the 4 digits shown
        return None
    lower = any(word in label.lower() for word in LOWER_IS_BETTER)
    return (after < before) if lower else (after > before)


def number(value) -> str:
    """4 significant digits for floats; '' for None."""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


def _num(value) -> float | None:
    """A finite-or-not float from a sidecar value, None when it is not a number (bools excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def digest(result: FileResult) -> Digest:
    """The report's view of ``result`` (its sidecar record, metrics and status)."""
    d = Digest(Path(result.input).name, result.kind, result.status, float(result.seconds or 0.0), result.error)
    if result.status == "failed":
        d.summary = f"failed: {result.error or 'no reason recorded'}"
        return d
    record = _dict(result.record)
    metrics = _dict(result.metrics) or _dict(record.get("metrics"))
    read = {"mri": _mri, "audio": _audio}.get(result.kind)
    if read is not None:  # another kind: its status line only
        read(d, record, metrics)
    return d


def _pair(d: Digest, label: str, before, after, unit: str = "") -> Metric | None:
    a, b = _num(after), _num(before)
    if a is None:
        return None
    metric = Metric(label, a, b, unit)
    d.metrics.append(metric)
    return metric


def _reference(d: Digest, reference: dict, names: list[tuple[str, str, str]]) -> list[str]:
    """Reference metrics input -> output; a metric that got worse is a warning. Returns summary bits."""
    bits = []
    inp, out = _dict(reference.get("input")), _dict(reference.get("output"))
    for key, label, unit in names:
        metric = _pair(d, label, inp.get(key), out.get(key), unit)
        if metric is None:
            continue
        if metric.better is False:
            d.warnings.append(f"{label} against the reference got worse: {number(metric.before)} → "
                              f"{number(metric.after)}{unit}")
        if len(bits) < 2 and metric.before is not None:
            bits.append(f"{label} {number(metric.before)} → {number(metric.after)}{unit}")
    return bits


# ---------------------------------------------------------------- MRI


def _mri(d: Digest, record: dict, metrics: dict) -> None:
    volumes = [v for v in _list(metrics.get("volumes")) if isinstance(v, dict)] or [metrics]
    m = volumes[0]
    if len(volumes) > 1:
        d.findings.append(f"{len(volumes)} volumes; the metrics shown are the first volume's")
    sigma, pct = _num(m.get("sigma_before")), _num(m.get("sigma_before_pct_p99"))
    if sigma is not None:
        d.findings.append(f"noise sigma {number(sigma)}" + (f" ({pct:.2f}% of the 99th percentile)" if pct is not None
                                                            else ""))
    task = record.get("task") or _dict(record.get("params")).get("task")
    if task:
        d.actions.append(f"task {task}")
    for v, vol in enumerate(volumes):
        prefix = f"volume {v}: " if len(volumes) > 1 else ""
        _mri_slices(d, _dict(vol.get("slices")), prefix)
        _mri_qc(d, _dict(vol.get("qc")), prefix)
        rs = _num(vol.get("residual_structure"))
        if rs is not None and rs > RESIDUAL_STRUCTURE_WARN:
            d.warnings.append(f"{prefix}structure left in the residual {rs:.3f} > {RESIDUAL_STRUCTURE_WARN}: "
                              "anatomy may have been removed (over-smoothing)")
    _mri_actions(d, record, m)

    sig = _pair(d, "noise sigma", m.get("sigma_before"), m.get("sigma_after"))
    snr = _pair(d, "SNR", m.get("snr_before"), m.get("snr_after"))
    _pair(d, "residual structure", None, m.get("residual_structure"))
    bits = [f"{task}"] if task else []
    filled = len(_list(_dict(m.get("slices")).get("filled")))
    if filled:
        bits.append(f"{filled} slice{'s' if filled != 1 else ''} filled")
    bits += [f"{x.label} {number(x.before)} → {number(x.after)}" for x in (sig, snr) if x and x.before is not None]
    reference = _dict(m.get("reference"))
    bits += _reference(d, reference, [("psnr_head", "PSNR (head)", " dB"), ("ssim_head", "SSIM (head)", "")])
    _pair(d, "PSNR of the filled slices", None, reference.get("psnr_filled_slices"), " dB")
    d.summary = "; ".join(bits)


def _mri_actions(d: Digest, record: dict, m: dict) -> None:
    params = _dict(record.get("params"))
    t_star, steps = _num(m.get("t_star")), _num(m.get("steps_run"))
    if steps:
        d.actions.append(f"denoised from t* = {t_star:g} with {steps:g} reverse step{'s' if steps != 1 else ''}"
                         if t_star is not None else f"{steps:g} reverse steps")
    for key, text in (("orientations", "orientations averaged"), ("samples", "samples averaged")):
        if _num(params.get(key)) and params[key] > 1:
            d.actions.append(f"{params[key]} {text}")
    if params.get("refine") is True:
        d.actions.append("non-local refinement after the diffusion denoiser")
    if _num(params.get("strength")) not in (None, 1.0):
        d.actions.append(f"strength {params['strength']}")
    version = _dict(record.get("model")).get("version")
    if version:
        d.actions.append(f"model {version}")


def _mri_slices(d: Digest, slices: dict, prefix: str) -> None:
    axis = slices.get("axis")
    for key, text in (("missing", "missing slices"), ("corrupted", "corrupted slices"), ("given", "slices marked missing")):
        listed = _list(slices.get(key))
        if listed:
            d.findings.append(f"{prefix}{text} (axis {axis}): {_ranges(listed)}")
    filled = _list(slices.get("filled"))
    if filled:
        d.actions.append(f"{prefix}filled {len(filled)} slice{'s' if len(filled) != 1 else ''}: {_ranges(filled)}")
    suspect = _list(slices.get("suspect_not_filled"))
    if suspect:
        d.warnings.append(f"{prefix}suspect slices left as they were (axis {axis}): {_ranges(suspect)}")
    if slices.get("low_confidence") is True:
        d.warnings.append(f"{prefix}low-confidence fill: a run of {slices.get('longest_gap')} missing slices is longer "
                          "than the fill model was trained for")


def _mri_qc(d: Digest, qc: dict, prefix: str) -> None:
    d.warnings.extend(f"{prefix}{w}" for w in _list(qc.get("warnings")) if isinstance(w, str))
    over = qc.get("over_smoothing")
    if over is True or (isinstance(over, dict) and over.get("flag") is True):
        d.warnings.append(f"{prefix}over-smoothing flagged by the quality check")


def _ranges(values: list) -> str:
    """[1, 2, 3, 7] -> '1-3, 7' (at most 12 ranges shown)."""
    ints = sorted({v for v in values if isinstance(v, int) and not isinstance(v, bool)})
    runs: list[list[int]] = []
    for v in ints:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:12])
    return text + (f", ... ({len(ints)} in all)" if len(runs) > 12 else "")


# ---------------------------------------------------------------- audio


def _audio(d: Digest, record: dict, metrics: dict) -> None:
    _audio_found(d, record, metrics)
    _audio_warnings(d, record, metrics)
    _audio_actions(d, record, metrics)
    params = _dict(record.get("params"))
    task, n_regions = params.get("task"), _num(metrics.get("filled_regions"))
    est = _pair(d, "estimated SNR", metrics.get("estimated_snr_db_before"), metrics.get("estimated_snr_db_after"), " dB")
    bits = [f"{task}"] if task else []
    if n_regions:
        bits.append(f"{n_regions:g} region{'s' if n_regions != 1 else ''} filled")
    if est is not None and est.before is not None:
        bits.append(f"estimated SNR {number(est.before)} → {number(est.after)} dB")
    bits += _reference(d, _dict(metrics.get("reference")), [
        ("si_sdr_db", "SI-SDR", " dB"), ("pesq_wb", "PESQ-WB", ""), ("estoi", "ESTOI", ""), ("lsd_db", "LSD", " dB")])
    d.summary = "; ".join(bits)


def _audio_found(d: Digest, record: dict, metrics: dict) -> None:
    regions, probe = _dict(record.get("regions")), _dict(metrics.get("auto_probe"))
    snr, probed = _num(metrics.get("estimated_snr_db_before")), _num(probe.get("estimated_snr_db"))
    if snr is not None or probed is not None:
        d.findings.append(f"estimated SNR {snr:.1f} dB" if snr is not None else
                          f"estimated SNR {probed:.1f} dB (median of blocks spread over the file)")
    counts = _dict(regions.get("counts"))
    names = {"dropout": "dropouts", "nan": "NaN runs", "marked": "marked gaps", "clipped": "clipped runs"}
    found = [f"{int(counts[k])} {text}" for k, text in names.items() if _num(counts.get(k))]
    if found:
        d.findings.append("found " + ", ".join(found))
    _audio_findings(d, _dict(record.get("findings")))


def _audio_warnings(d: Digest, record: dict, metrics: dict) -> None:
    params, regions, probe = _dict(record.get("params")), _dict(record.get("regions")), _dict(metrics.get("auto_probe"))
    d.warnings.extend(f"note: {n}" for n in _list(metrics.get("notes")) if isinstance(n, str))
    low = _num(regions.get("low_confidence"))
    if low:
        d.warnings.append(f"{low:g} low-confidence fill{'s' if low != 1 else ''} (gaps longer than the model fills well)")
    if regions.get("truncated") is True:
        d.warnings.append("more regions than the sidecar lists: only the first ones are marked")
    decided = probe.get("auto_denoise")
    if isinstance(decided, str):
        verdict, _, why = decided.partition(": ")
        text = {"yes": "auto mode denoised", "no": "auto mode did not denoise"}.get(verdict, "auto mode")
        (d.warnings if "tonal" in why else d.findings).append(f"{text}: {why or decided}")
    clipped = _num(metrics.get("clipped_samples"))
    if clipped:
        d.warnings.append(f"{clipped:g} samples clipped to full scale when writing")
    gain = _num(params.get("output_gain"))
    if gain is not None and gain < 1.0:
        d.warnings.append(f"output scaled by {gain:.3f} so declipped peaks fit the format")
    tags = _dict(record.get("tags"))
    d.warnings.extend(f"tags: {p}" for p in _list(tags.get("problems")) if isinstance(p, str))


def _audio_actions(d: Digest, record: dict, metrics: dict) -> None:
    params, regions, tags = _dict(record.get("params")), _dict(record.get("regions")), _dict(record.get("tags"))
    task = params.get("task")
    if task:
        d.actions.append(f"task {task}")
    filled_s = _num(regions.get("filled_seconds"))
    n_regions = _num(metrics.get("filled_regions"))
    if n_regions:
        model = _dict(record.get("inpaint_model"))
        by = f" with {model.get('name')} {model.get('version', '')}".rstrip() if model.get("name") else ""
        d.actions.append(f"filled {n_regions:g} region{'s' if n_regions != 1 else ''}"
                         + (f" ({filled_s:.2f} s)" if filled_s is not None else "") + by)
    if params.get("denoised") is True:
        t_star = _dict(params.get("t_star"))
        span = (f" from t* {number(t_star.get('min'))}-{number(t_star.get('max'))}" if t_star.get("min") is not None
                else "")
        d.actions.append(f"denoised{span}" + (f", {params['steps']} step(s)" if params.get("steps") else ""))
    if _list(tags.get("copied")):
        d.actions.append(f"{len(tags['copied'])} tag(s) copied" + (f"; dropped: {', '.join(map(str, tags['dropped']))}"
                                                                  if _list(tags.get("dropped")) else ""))


def _audio_findings(d: Digest, findings: dict) -> None:
    for key, text in (("clicks", "clicks"), ("hum", "hum")):
        value = findings.get(key)
        count = len(value) if isinstance(value, list) else _num(value)
        extra = ""
        if isinstance(value, dict):
            count = _num(value.get("count"))
            freq = _num(value.get("frequency_hz"))
            extra = f" at {freq:g} Hz" if freq else ""
            if count is None and (freq or value.get("detected") is True):
                d.findings.append(f"{text}{extra}")
                continue
        if count:
            d.findings.append(f"{count:g} {text}{extra}")


def marked_spans(record: dict | None) -> list[tuple[float, float, str]]:
    """(start_s, stop_s, kind) of the regions the audio sidecar lists and of its clicks, if any."""
    record = _dict(record)
    spans = []
    for item in _list(_dict(record.get("regions")).get("listed")) + _list(_dict(record.get("findings")).get("clicks")):
        if not isinstance(item, dict):
            continue
        start = _num(item.get("start_s", item.get("time_s")))
        stop = _num(item.get("stop_s", start))
        if start is not None and stop is not None:
            spans.append((start, max(start, stop), str(item.get("kind", "click"))))
    return spans
