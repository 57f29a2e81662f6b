"""Restore one audio file end to end:

    load (probe + scan) -> detect gaps / NaN runs / clipped runs (+ --gaps) -> fill them (inpaint model)
        -> if denoising: per chunk: estimate degradation -> t* -> start from the observation
           -> conditional DDIM steps -> crossfade
        -> write (atomic) -> metrics -> sidecar

``task``: ``fill`` and ``declip`` change only the samples inside the regions they list (every
other sample is copied from the input); ``denoise`` only denoises; ``auto`` (default) fills and
declips whatever it detects and denoises when the file's estimated SNR is below the denoiser's
clean threshold and its noise floor is smooth (:func:`_needs_denoising`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from statistics import median

import numpy as np
import torch
from tqdm import tqdm

from restore.audio import gaps, hum, io, repair, tags
from restore.audio.bands import MODEL_SR, restore_block
from restore.audio.denoise import DEFAULT_WEIGHTS, MODEL_NAME, AudioModel, load_audio_model
from restore.audio.estimate import SMOOTH_FLOOR_DB, estimate_degradation, noise_floor_roughness_db
from restore.audio.inpaint import DEFAULT_WEIGHTS as INPAINT_WEIGHTS
from restore.audio.inpaint import MODEL_NAME as INPAINT_NAME
from restore.audio.inpaint import load_inpaint_model
from restore.audio.metrics import reference_metrics
from restore.audio.stream import plan_chunks, stream_chunks
from restore.device import resolve_device, set_threads
from restore.errors import InputError
from restore.outputs import atomic_write, check_output_path, sidecar_path, write_sidecar
from restore.provenance import sha256_of
from restore.weights import card_path

CHUNK_SECONDS = 4.0  # measured: per-second cost grows with chunk length (mid-block attention)
OVERLAP_SECONDS = 0.25
CONTEXT_SECONDS = 2.0  # level and noise are estimated on the chunk plus this much on each side
MARGIN_SECONDS = 0.5  # the network sees this much more on each side; the margins are cropped off
METRIC_SECONDS = 600.0  # reference metrics use at most the first 10 minutes
TASKS = ("auto", "denoise", "fill", "declip")
PROBE_BLOCKS = 8  # auto: blocks spread over the file whose estimated SNR decides on denoising
MAX_LISTED_REGIONS = 1000  # the sidecar lists at most this many regions (and counts them all)
# The denoised result of each chunk channel is checked (_rejected) and replaced by its input when
# it removed more than MAX_REMOVED_RATIO times the noise power its SNR estimate allows, or what it
# removed correlates with what it kept by more than MAX_CORRELATION (NEARLY_CLEAN_CORRELATION when the
# estimate was >= NEARLY_CLEAN_DB). Chosen on a few 4 s blocks (held-out speech in real noise and hiss
# at 0-20 dB, clean and 8-bit music and speech, synthetic notes), so the margins are thin:
# removed/allowed 0.2-2.5 for speech in noise, 14 where a non-stationary noise at 10 dB was estimated
# at 22.6 dB (denoising gained 7.6 dB there); 22-24 on synthetic notes the denoiser damaged, 65-330 on a
# flute in hiss, 199 on a clean 8-bit flute. Correlation: speech in hiss -0.06..-0.02, in real noise
# 0.12-0.47; clean 8-bit speech 0.35-0.41 at 22-24 dB (denoised it came out 24.3 dB from its input);
# damaged synthetic notes 0.69.
MAX_REMOVED_RATIO = 16.0
MAX_CORRELATION = 0.6
NEARLY_CLEAN_DB = 20.0
NEARLY_CLEAN_CORRELATION = 0.3
# auto does not denoise below this estimated SNR: minimum statistics reads sustained music as a floor
# holding most of the power (-10 to -2 dB on 5 of 8 held-out music tracks, clean or with hiss, which the
# speech denoiser ruins), while held-out speech in real noise at 0 dB was estimated at 2-19 dB
MIN_PLAUSIBLE_SNR_DB = 0.0
HUM_BLOCK_SECONDS = 2.0  # hum is searched in up to PROBE_BLOCKS blocks of this length
HUM_MIN_BLOCKS = 3  # shorter files are not searched: a hum must hold in blocks that do not overlap
HUM_MARGIN_SECONDS = 1.5  # context each side of a dehummed block (the 1 Hz notches ring ~0.3 s)
MIN_SECONDS = 0.1  # shorter files are passed through unchanged (the STFTs need ~32 ms either side)


@functools.lru_cache(maxsize=4)
def cached_denoiser(path: str, device: str) -> AudioModel:
    """The denoiser, loaded once per process: a batch of short files spent ~20 ms of each file's
    ~120 ms building it again (measured on 2 s clips), time that held the GIL beside other files."""
    return load_audio_model(Path(path), device=device)


def _region_record(region: gaps.Region, sr: int, fills: repair.Fills) -> dict:
    """A region's sidecar entry; gaps of at least the card's ``shrink_ms`` add ``predictability``: the
    first guess's least-squares gain on pseudo-gaps next to it (~0.9 steady music, ~0.4 speech)."""
    record = region.record(sr)
    gain = fills.gain_of(region)
    if gain is not None:
        record["predictability"] = gain
    return record


@functools.lru_cache(maxsize=4)
def cached_inpainter(path: str, device: str):
    return load_inpaint_model(Path(path), device=device)


def _check_options(strength: float, steps: int | None, chunk_seconds: float) -> None:
    if not 0.0 <= strength <= 4.0:
        raise InputError(f"--strength must be 0..4, got {strength}")
    if steps is not None and not 1 <= steps <= 1000:
        raise InputError(f"--steps must be 1..1000, got {steps}")
    if chunk_seconds < 2 * OVERLAP_SECONDS:
        raise InputError(f"chunk_seconds must be >= {2 * OVERLAP_SECONDS}, got {chunk_seconds}")


def _check_reference(reference: Path, info: io.AudioInfo) -> io.AudioInfo:
    ref = io.load_info(reference)
    if (ref.sr, ref.channels) != (info.sr, info.channels) or abs(ref.frames - info.frames) > 0.01 * info.frames:
        raise InputError(
            f"reference {ref.path.name} ({ref.sr} Hz, {ref.channels} ch, {ref.frames} frames) does not match the "
            f"input ({info.sr} Hz, {info.channels} ch, {info.frames} frames)"
        )
    return ref


def _metrics_against(reference: Path, noisy: Path, restored: Path, sr: int) -> dict:
    """Channel-averaged reference metrics of the input and the output (first ``METRIC_SECONDS``)."""
    limit = int(METRIC_SECONDS * sr)
    ref, _ = io.read_all(reference, max_frames=limit)
    result = {}
    for name, path in (("input", noisy), ("output", restored)):
        est, _ = io.read_all(path, max_frames=limit)
        n = min(len(ref), len(est))
        per_channel = [reference_metrics(ref[:n, c], est[:n, c], sr) for c in range(ref.shape[1])]
        result[name] = {k: float(np.mean([m[k] for m in per_channel])) for k in per_channel[0]}
    result["seconds"] = min(len(ref), limit) / sr
    return result


def _pass_through_reason(info: io.AudioInfo, found: repair.Scan) -> str | None:
    """Why the file is copied unchanged (a batch of tapes holds silent sides and stubs), or None.

    A silent or too-short file that holds NaN/Inf cannot be copied into an integer format: InputError."""
    reason = None
    if found.silent:
        reason = f"silent (peak {found.peak:.2g} < {io.SILENCE_PEAK:g} full scale): passed through unchanged"
    elif info.seconds < MIN_SECONDS:
        reason = (f"too short to restore ({info.frames} frames, {info.seconds * 1000:.1f} ms < "
                  f"{MIN_SECONDS * 1000:.0f} ms): passed through unchanged")
    if reason and found.nonfinite:
        raise InputError(f"{info.path.name} is {reason.split(':')[0]} and holds {found.nonfinite} NaN or infinite "
                         "samples, which cannot be filled from it")
    return reason


def _rejected(block: np.ndarray, out: np.ndarray, snr_db: list[float]) -> np.ndarray:
    """Per channel of ``block, out: (n, C)``: whether the denoised ``out`` took signal, not noise: it
    removed more than :data:`MAX_REMOVED_RATIO` times the noise power that ``snr_db`` (the estimate
    that chose t*) leaves in ``block``, or the removed part's correlation with ``out`` exceeds
    :data:`MAX_CORRELATION` (:data:`NEARLY_CLEAN_CORRELATION` when ``snr_db >= NEARLY_CLEAN_DB``):
    noise removal leaves the two about uncorrelated."""
    removed = (block - out).astype(np.float64)
    kept = out.astype(np.float64)
    snr = np.asarray(snr_db, np.float64)
    noise = np.mean(np.square(block, dtype=np.float64), axis=0) / (1 + 10 ** (snr / 10))
    ratio = np.mean(removed**2, axis=0) / np.maximum(noise, 1e-20)
    corr = np.sum(removed * kept, axis=0) / np.sqrt(np.sum(removed**2, axis=0) * np.sum(kept**2, axis=0) + 1e-30)
    return (ratio > MAX_REMOVED_RATIO) | (corr > MAX_CORRELATION) | ((snr >= NEARLY_CLEAN_DB) & (corr > NEARLY_CLEAN_CORRELATION))


def _probe_starts(info: io.AudioInfo, n: int) -> np.ndarray:
    """Starts of up to :data:`PROBE_BLOCKS` blocks of ``n`` frames spread evenly over the file."""
    return np.unique(np.linspace(0, info.frames - n, PROBE_BLOCKS).astype(int))


def _find_hum(info: io.AudioInfo, read) -> hum.Hum | None:
    """``--task auto``: mains hum common to every probe block (mono mix; :func:`hum.estimate_hum`), or
    None; files with fewer than :data:`HUM_MIN_BLOCKS` disjoint blocks are not searched."""
    n = int(HUM_BLOCK_SECONDS * info.sr)
    if info.frames < HUM_MIN_BLOCKS * n:
        return None
    blocks = [read(s, s + n).mean(axis=1) for s in _probe_starts(info, n)]
    found = hum.estimate_hum(blocks, info.sr)
    if found is not None:
        before = np.stack(blocks, axis=1)
        found = dataclasses.replace(found, level_dbfs=hum.hum_level_db(before, hum.remove_hum(before, info.sr, found)))
    return found


def _read_dehummed(info: io.AudioInfo, read, found: hum.Hum, lo: int, hi: int) -> np.ndarray:
    """``read(lo, hi)`` with the hum notched out, filtered with :data:`HUM_MARGIN_SECONDS` of context
    on each side so that the notches' ringing stays outside the block."""
    margin = int(HUM_MARGIN_SECONDS * info.sr)
    a, b = max(0, lo - margin), min(info.frames, hi + margin)
    return hum.remove_hum(read(a, b), info.sr, found)[lo - a : hi - a]


def _needs_denoising(info: io.AudioInfo, read, model: AudioModel) -> tuple[bool, dict]:
    """``--task auto``: denoise when blocks spread over the file (up to :data:`PROBE_BLOCKS`) have a
    median estimated SNR below the denoiser's clean threshold *and* a smooth noise floor (sustained
    music looks like 0 dB "noise" to minimum statistics but its floor is tonal; see
    :func:`restore.audio.estimate.noise_floor_roughness_db`)."""
    n = min(info.frames, int(CHUNK_SECONDS * info.sr))
    starts = _probe_starts(info, n)
    snrs, rough, floors = [], [], []
    for start in starts:
        block = read(start, start + n)
        if info.sr != MODEL_SR:
            import soxr

            block = soxr.resample(block, info.sr, MODEL_SR)
        low = torch.from_numpy(np.ascontiguousarray(block.T)).float()
        degradation = estimate_degradation(low)
        snrs.extend(float(v) for v in degradation.snr_db)
        floors.extend(float(v) for v in degradation.noise_floor_db)
        rough.extend(float(v) for v in noise_floor_roughness_db(low))
    probe = {"estimated_snr_db": float(median(snrs)), "noise_floor_dbfs": float(median(floors)),
             "noise_floor_roughness_db": float(median(rough))}
    noisy = probe["estimated_snr_db"] < model.clean_snr_db
    smooth = probe["noise_floor_roughness_db"] < SMOOTH_FLOOR_DB
    plausible = probe["estimated_snr_db"] >= MIN_PLAUSIBLE_SNR_DB
    probe["auto_denoise"] = ("yes: noisy, smooth noise floor" if noisy and smooth and plausible else
                             "no: tonal noise floor (music?); use --task denoise to force" if noisy and not smooth else
                             "no: the 'noise floor' holds most of the power (sustained music?); use --task denoise "
                             "to force" if noisy else "no: estimated clean")
    return noisy and smooth and plausible, probe


def _findings(regions: list[gaps.Region], sr: int, *, task: str, probe: dict | None, denoise: bool,
              rejected: list[int], channels: int, found_hum: hum.Hum | None, notes: list[str]) -> dict:
    """What was found in the file and what was done about each (the sidecar's ``findings``)."""
    def spans(kinds: tuple[str, ...]) -> dict:
        chosen = [r for r in regions if r.kind in kinds]
        return {"count": len(chosen), "seconds": round(sum(r.stop - r.start for r in chosen) / sr, 6)}

    if probe is not None:
        noise = {k: round(v, 2) for k, v in probe.items() if k != "auto_denoise"} | {"action": probe["auto_denoise"]}
    else:
        noise = {"action": "denoised (--task denoise)" if denoise else f"not looked for (--task {task})"}
    if denoise and rejected:
        noise["action"] += (f"; {sum(rejected)} of {len(rejected) * channels} chunk channels kept as they were "
                            "(the denoiser took signal there)")
    searched = task == "auto" and not notes
    return {
        "noise": noise,
        "hum": (found_hum.record() | {"action": "removed with notches at its harmonics"}) if found_hum else
               {"action": "none found" if searched else f"not looked for (--task {task})"},
        "clicks": spans(("click",)) | {"action": "filled (LSAR)" if task == "auto" else "not looked for"},
        "gaps": spans(("dropout", "nan", "marked")) | {"action": "filled"},
        "clipping": spans(("clipped",)) | {"action": "declipped"},
        "notes": notes,
    }


def restore_audio(
    input_path: Path | str,
    output_path: Path | str,
    *,
    reference: Path | str | None = None,
    task: str = "auto",
    gaps_marked: str | list[tuple[float, float]] | None = None,
    strength: float = 1.0,
    steps: int | None = None,
    seed: int = 0,
    device: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
    chunk_seconds: float = CHUNK_SECONDS,
    weights: Path | str = DEFAULT_WEIGHTS,
    inpaint_weights: Path | str | None = None,
    ar_only: bool = False,
) -> dict:
    """Restore ``input_path`` into ``output_path`` (+ JSON sidecar) and return the sidecar record.

    ``task``: auto | denoise | fill | declip (module docstring). ``gaps_marked``: extra gaps in
    seconds, as ``"1.20-1.35,4.00-4.10"`` or pairs. ``strength`` scales the estimated noise level
    before it picks t* (0 leaves the input as is); ``steps`` defaults to the model card's choice.
    ``inpaint_weights`` defaults to the shipped gap-filling model; ``ar_only`` fills with the AR
    interpolation alone (the classical baseline). Bad input raises InputError before any write.
    """
    tick = time.perf_counter()
    set_threads()  # RESTORE_THREADS, else every core
    input_path, output_path = Path(input_path), Path(output_path)
    if task not in TASKS:
        raise InputError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    _check_options(strength, steps, chunk_seconds)
    marked = gaps.parse_gaps(gaps_marked) if isinstance(gaps_marked, str) else gaps_marked
    if marked and task not in ("auto", "fill"):
        raise InputError(f"--gaps needs --task auto or fill (got --task {task})")
    check_output_path(input_path, output_path, overwrite=overwrite)
    info = io.load_info(input_path)
    fmt = io.output_format(info, output_path)
    source_tags = tags.read_tags(input_path, info.format)
    found = repair.scan(info)
    notes = []
    if found.frames < info.frames:  # libsndfile trusts some headers; the decoded length is the truth
        notes.append(f"the header declares {info.frames} frames, {found.frames} could be decoded: "
                     f"restored those")
        info = dataclasses.replace(info, frames=found.frames)
    if reference is not None:
        _check_reference(Path(reference), info)
    passed = _pass_through_reason(info, found)
    if passed:
        notes.append(passed)
    regions = [] if passed else repair.detect(info, found, task=task, marked=marked)
    dev = resolve_device(device)
    fills = repair.Fills()
    inpainter = None
    if regions:
        if not ar_only:
            inpainter = cached_inpainter(str(inpaint_weights or INPAINT_WEIGHTS), str(dev))
        fills = repair.fill_regions(info, regions, inpainter, seed=seed, steps=None, progress=progress)

    def read_filled(lo: int, hi: int) -> np.ndarray:
        return fills.patch(io.read_block(info, lo, hi), lo)

    hum_found = _find_hum(info, read_filled) if task == "auto" and not passed else None
    read = read_filled if hum_found is None else functools.partial(_read_dehummed, info, read_filled, hum_found)

    # fill/declip never run the denoiser: its card's version is enough for the record
    model = cached_denoiser(str(weights), str(dev)) if task in ("auto", "denoise") else None
    denoise_version = model.version if model else json.loads(card_path(Path(weights)).read_text())["version"]
    denoise, probe = (task == "denoise" and not passed, None)
    if task == "auto" and not passed:
        denoise, probe = _needs_denoising(info, read, model)
    steps_used = (model.default_steps if steps is None else steps) if denoise else None
    # a declipped peak above full scale cannot be stored in fixed point: scale the whole output down
    bounded = fmt.is_integer or fmt.format in ("OGG", "MP3")
    peak = fills.peak()
    gain = min(1.0, 0.999 / peak) if bounded and peak > 1.0 else 1.0

    chunks = plan_chunks(info.frames, int(chunk_seconds * info.sr), int(OVERLAP_SECONDS * info.sr))
    t_stars: list[int] = []
    snr_before: list[tuple[float, int]] = []
    snr_after: list[tuple[float, int]] = []
    backed_off: list[int] = []  # per chunk: channels whose denoised result was rejected (_rejected)
    clipped = 0
    tag_report = tags.TagReport()

    def process(chunk, block: np.ndarray) -> np.ndarray:
        if not denoise:  # (block is already dehummed by read)
            return block * gain if gain != 1.0 else block
        generator = torch.Generator().manual_seed(seed * 1_000_003 + chunk.index)
        margin = int(CONTEXT_SECONDS * info.sr)
        context = read(max(0, chunk.start - margin), min(info.frames, chunk.stop + margin))
        lo, hi = max(0, chunk.start - int(MARGIN_SECONDS * info.sr)), min(info.frames, chunk.stop + int(MARGIN_SECONDS * info.sr))
        wide = read(lo, hi)
        result = restore_block(model, wide, info.sr, strength=strength, steps=steps, generator=generator,
                               context=context)
        n = chunk.stop - chunk.start
        t_stars.extend(result.t_star)
        snr_before.extend((s, n) for s in result.snr_before_db)
        snr_after.extend((s, n) for s in result.snr_after_db)
        out = result.samples[chunk.start - lo : chunk.start - lo + n]
        if task == "auto":  # the result is checked: a chunk channel that lost signal keeps its input
            undo = _rejected(block, out, result.snr_before_db)
            out[:, undo] = block[:, undo]
            backed_off.append(int(undo.sum()))
        return out * gain if gain != 1.0 else out

    def write(tmp: Path) -> None:
        nonlocal clipped, tag_report
        bar = tqdm(total=len(chunks), unit="chunk", desc=f"restore {input_path.name}",
                   disable=not progress or not denoise)
        with io.AudioWriter(tmp, info.sr, info.channels, fmt) as writer:
            for block in stream_chunks(chunks, lambda c: read(c.start, c.stop), process):
                writer.write(block)
                bar.update(1)
            clipped = writer.clipped
        bar.close()
        tag_report = tags.write_tags(tmp, fmt.format, source_tags)  # before the rename: still atomic

    if denoise or hum_found is not None:
        atomic_write(output_path, write)
    else:  # no crossfades: every sample outside the regions is copied as read
        chunks = plan_chunks(info.frames, int(chunk_seconds * info.sr), 0)
        atomic_write(output_path, write)

    def weighted(pairs: list[tuple[float, int]]) -> float:
        return float(np.average([p[0] for p in pairs], weights=[p[1] for p in pairs]))

    metrics: dict = {"clipped_samples": clipped, "filled_regions": len(regions),
                     "filled_seconds": sum(r.stop - r.start for r in regions) / info.sr}
    if denoise:
        metrics |= {"estimated_snr_db_before": weighted(snr_before), "estimated_snr_db_after": weighted(snr_after)}
    if probe is not None:
        metrics["auto_probe"] = probe
    if backed_off:
        metrics["denoise_rejected"] = {"chunk_channels": sum(backed_off), "of": len(backed_off) * info.channels}
    if notes:
        metrics["notes"] = notes
    if reference is not None:
        metrics["reference"] = _metrics_against(Path(reference), input_path, output_path, info.sr)
    counts = {k: sum(1 for r in regions if r.kind == k) for k in ("dropout", "nan", "marked", "clipped", "click")}
    listed = [_region_record(r, info.sr, fills) for r in regions[:MAX_LISTED_REGIONS]]
    findings = _findings(regions, info.sr, task=task, probe=probe, denoise=denoise, rejected=backed_off,
                         channels=info.channels, found_hum=hum_found, notes=notes)
    record = {
        "kind": "audio",
        "input": {"path": str(input_path), "sha256": sha256_of(input_path), "sr": info.sr, "channels": info.channels,
                  "format": info.format, "subtype": info.subtype, "seconds": info.seconds},
        "output": str(output_path),
        "tags": tag_report.record(),
        "model": {"name": MODEL_NAME, "version": denoise_version, "used": denoise},
        "inpaint_model": ({"name": INPAINT_NAME, "version": inpainter.version} if inpainter else
                          {"name": "lsar", "version": "janssen-ar"}) if regions else None,
        "regions": {
            "counts": counts,
            "low_confidence": sum(1 for r in listed if r["confidence"] == "low"),
            "filled_seconds": sum(r.stop - r.start for r in regions) / info.sr,
            "listed": listed,
            "truncated": len(regions) > MAX_LISTED_REGIONS,
        },
        "params": {
            "task": task, "denoised": denoise, "gaps": [list(g) for g in marked] if marked else None,
            "strength": strength, "steps": steps_used, "seed": seed, "device": str(dev),
            "bf16": model.bf16 if denoise else (inpainter.bf16 if inpainter else False),
            "model_sr": MODEL_SR, "resampled": info.sr != MODEL_SR and (denoise or bool(regions)),
            "band_above_model": ("kept, gated by the model's 4-8 kHz gain" if denoise else "AR fill in gaps")
            if info.sr > MODEL_SR else "none",
            "output_format": fmt.format, "output_subtype": fmt.subtype, "output_gain": gain,
            "chunk_seconds": chunk_seconds, "overlap_seconds": OVERLAP_SECONDS if denoise else 0.0,
            "chunks": len(chunks), "estimate_context_seconds": CONTEXT_SECONDS,
            "t_star": {"min": min(t_stars), "median": float(median(t_stars)), "max": max(t_stars)} if t_stars else None,
            "reference": None if reference is None else str(reference),
        },
        "metrics": metrics,
        "findings": findings,
        "timing": {"seconds": time.perf_counter() - tick, "real_time_factor": (time.perf_counter() - tick) / info.seconds},
    }
    write_sidecar(sidecar_path(output_path), record)
    return record
