"""`catalog`: an archive folder → static STAC catalog (+ the Imalys `.csv` table)."""
from __future__ import annotations

from ..runtime.progress import progress_enabled
from ..stac import build_catalog
from .context import Context, log


def run(ctx: Context, cmd) -> None:
    p = cmd.params
    report = build_catalog(p.archives, p.target, workers=p.workers, progress=progress_enabled(), log=log)
    log.info(
        "   catalog %s: %d added, %d updated, %d removed, %d unchanged, %d skipped",
        report.catalog_path, len(report.added), len(report.updated), len(report.removed),
        len(getattr(report, "unchanged", []) or []), len(report.skipped),
    )
    for path, reason in report.skipped:
        log.warning("skipped archive %s: %s", path, reason)
    if getattr(report, "csv_path", None):
        log.info("   table %s", report.csv_path)
