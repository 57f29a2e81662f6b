"""Flow ``watch_inbox``: the scheduled deployment that restores what arrived in an inbox folder.

Recipe: discover the inbox -> drop files still being copied and files the ledger marks as handled in
their current state -> restore the rest (same tasks as ``restore_batch``) -> append them to the ledger
(``OUTDIR/inbox_ledger.jsonl``) -> report. A failed file is retried only after it changes.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.batch import final_state, publish_report, run_items
from restore import batch


@flow(name="watch-inbox")
def watch_inbox(inbox: str, outdir: str, settle_seconds: float = 60.0, options: dict | None = None) -> dict:
    """Restore new, settled files of ``inbox`` into ``outdir``; returns counts and paths like ``restore_batch``."""
    ledger_path = Path(outdir) / batch.INBOX_LEDGER
    handled = batch.read_ledger(ledger_path)
    items = [item for item in batch.discover(inbox, outdir, options)
             if batch.settled(item.input, min_age_seconds=settle_seconds)
             and batch.ledger_key(item.input) not in handled]
    get_run_logger().info("%d new files in %s", len(items), inbox)
    if not items:
        return {"counts": {"total": 0, "done": 0, "skipped": 0, "failed": 0}, "files": []}
    results = run_items(items, Path(outdir), resume=True, progress=False)
    batch.append_ledger(ledger_path, items, results)
    return final_state(publish_report(results, Path(outdir)))
