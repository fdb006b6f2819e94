"""What every command adapter gets: the chain, the working directory and the run log."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..runtime.log import RunLog
from ..workdir import WorkDir

log = logging.getLogger("imalys_stac.commands")


@dataclass
class Context:
    chain: object  # imalys_stac.chain.Chain
    workdir: WorkDir
    runlog: RunLog
    client: object | None = None
    chunksize: int | None = None  # None: sized per cube so a block's memory does not grow with the dates
    outputs: list[Path] = field(default_factory=list)
