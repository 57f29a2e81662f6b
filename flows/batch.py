"""Flows ``restore_file`` and ``restore_batch``: one task per file, mapped, then the batch report.

Recipe: discover the files -> restore each (skipped when up to date; retried only for transient
errors; a failed file does not stop the others) -> summary CSV/JSON, HTML report, Prefect artifacts.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task, unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.states import Completed, Failed, State

from restore import api, batch, bids, report
from restore.batch import BatchItem, FileResult
from restore.device import set_threads

CONCURRENCY_TAG = "restore-file"  # `restore serve --limit N` caps running files across all flows with it


def limited(task_fn):
    """``task_fn`` tagged with CONCURRENCY_TAG when the API has a limit on that tag, else as it is.

    A tagged task asks the API for a concurrency slot before it runs. Without a limit that request
    only costs time, and measured here it stalled a 20-file batch by ~2 s at a time (12 s vs 9 s)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_concurrency_limit_by_tag(CONCURRENCY_TAG)
    except ObjectNotFound:
        return task_fn
    return task_fn.with_options(tags={CONCURRENCY_TAG})


def retry_transient(task, task_run, state: State) -> bool:
    """Prefect retry condition: retry only errors :func:`restore.batch.is_transient` calls transient."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and batch.is_transient(error)


@task(name="restore-one-file", task_run_name="restore {item.input.name}", retries=2, retry_delay_seconds=[2, 10],
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def restore_one(item: BatchItem, resume: bool, picture_dir: Path | None) -> FileResult:
    set_threads()  # RESTORE_THREADS: the cores this file may use while others are restored beside it
    result = batch.run_item(item, resume=resume)
    if picture_dir is not None:
        try:
            report.make_picture(result, picture_dir)
        except Exception as e:  # noqa: BLE001 - a picture that fails must not fail a restored file
            get_run_logger().warning("no picture for %s: %s", item.input.name, e)
    return result


def run_items(items: list[BatchItem], outdir: Path, *, resume: bool, progress: bool) -> list[FileResult]:
    """Submit one task per item and collect a FileResult for each, failures included, in item order."""
    picture_dir = Path(outdir) / report.PICTURES
    futures = limited(restore_one).map(items, resume=unmapped(resume), picture_dir=unmapped(picture_dir))
    item_of = {id(f): item for f, item in zip(futures, items)}
    results: dict[Path, FileResult] = {}  # by output: one input folder can hold several DICOM series
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="file", desc="restore", dynamic_ncols=True)
    for future in as_completed(list(futures)):
        item = item_of[id(future)]
        try:
            results[item.output] = future.result()
        except Exception as e:  # noqa: BLE001 - the task's own error, after its retries: report it
            results[item.output] = batch.failed_result(item, e)
        if bar is not None:
            bar.set_postfix_str(f"{item.input.name}: {results[item.output].status}", refresh=False)
            bar.update()
    if bar is not None:
        bar.close()
    return [results[item.output] for item in items]


def publish_report(results: list[FileResult], outdir: Path) -> dict:
    """Summary CSV + JSON, HTML report and Prefect table + markdown artifacts; returns the summary."""
    outdir = Path(outdir)
    csv_path, json_path = report.write_summary(results, outdir)
    pictures = {r.input: report.picture_path(r, outdir / report.PICTURES) for r in results}
    pictures = {k: (p if p.is_file() else None) for k, p in pictures.items()}
    html_path = report.render_html(results, outdir, pictures)
    create_table_artifact(key="restore-batch-files", table=report.table_rows(results),
                          description="Per-file status, metrics and seconds")
    create_markdown_artifact(key="restore-batch-summary", markdown=report.markdown_summary(results, html_path),
                             description="Restore batch summary")
    return {"counts": report.counts(results), "summary_csv": str(csv_path), "summary_json": str(json_path),
            "report": str(html_path), "files": [r.to_dict() for r in results]}


def final_state(summary: dict) -> State:
    """Completed, or Failed("n of N files failed") so the run shows red in the UI; the summary is the
    result either way (``flow(..., return_state=True).result(raise_on_failure=False)``)."""
    c = summary["counts"]
    if c["failed"]:
        return Failed(message=f"{c['failed']} of {c['total']} files failed", data=summary)
    return Completed(message=f"{c['done']} done, {c['skipped']} skipped", data=summary)


@flow(name="restore-batch")
def restore_batch(source: str, outdir: str, resume: bool = True, options: dict | None = None,
                  progress: bool = False, participant_labels: list[str] | None = None) -> dict:
    """Restore a folder, glob or CSV manifest into ``outdir``; a BIDS dataset becomes a derivatives dataset
    there (``participant_labels`` selects subjects). The result holds counts, report paths and
    per-file results; the run fails (after finishing every other file) when any file failed."""
    items = batch.discover(source, outdir, options, participant_labels=participant_labels)
    get_run_logger().info("%d files to restore from %s into %s", len(items), source, outdir)
    if bids.is_bids_dataset(Path(source)):
        bids.write_description(Path(source), Path(outdir))
    results = run_items(items, Path(outdir), resume=resume, progress=progress)
    return final_state(publish_report(results, Path(outdir)))


@flow(name="restore-file")
def restore_file(input_path: str, output_path: str, reference: str | None = None, options: dict | None = None,
                 resume: bool = True) -> dict:
    """Restore one file of any supported kind; fails when the file fails. Returns its FileResult as a dict."""
    path = Path(input_path)
    item = BatchItem(input=path, output=Path(output_path), kind=api.kind_of(path),
                     reference=Path(reference) if reference else batch.reference_for(path), options=dict(options or {}))
    return limited(restore_one)(item, resume, None).to_dict()
