"""`catalog`: an archive folder → static STAC catalog (+ the Imalys `.csv` table)."""
from __future__ import annotations

from ..runtime.progress import progress_enabled
from ..stac import build_catalog
from .context import RunContext, log


def run(ctx: RunContext, cmd) -> None:
    p = cmd.params
    report = build_catalog(p.archives, p.target, workers=p.workers, progress=progress_enabled(), log=log)
    # build_catalog logs its summary (added/updated/removed/skipped) and a warning per skipped archive
    if report.csv_path:
        log.info("   table %s", report.csv_path)
