"""The run log: one file per run in the `home` log folder, plus concise terminal output.

Everything that matters to a user afterwards goes to the file: each command with its resolved
parameters, start and end times, inputs and outputs, warnings (ours and those of GDAL, Dask and
other libraries, which reach Python's logging/warnings) and errors with their cause.
"""
from __future__ import annotations

import logging
import sys
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

LOGGER_NAME = "imalys_stac"
log = logging.getLogger(LOGGER_NAME)

# Libraries whose warnings belong in the run log (GDAL errors arrive through rasterio's logger).
_LIBRARY_LOGGERS = ("rasterio", "distributed", "stackstac", "pystac", "pystac_client", "py.warnings")


class RunLog:
    """Attach a log file for one chain run and record its commands."""

    def __init__(self, folder: Path | None, chain_name: str = "chain", verbose: bool = False):
        self.folder = Path(folder) if folder else None
        self.path: Path | None = None
        self._handlers: list[logging.Handler] = []
        self.verbose = verbose
        self.chain_name = chain_name
        self.warnings = 0
        self.errors = 0

    def open(self, folder: Path | None = None) -> "RunLog":
        if folder is not None:
            self.folder = Path(folder)
        self.close()
        root = logging.getLogger(LOGGER_NAME)
        root.setLevel(logging.DEBUG)
        root.propagate = False
        term = logging.StreamHandler(sys.stderr)
        term.setLevel(logging.DEBUG if self.verbose else logging.INFO)
        term.setFormatter(logging.Formatter("%(levelname_short)s%(message)s"))
        term.addFilter(_ShortLevel())
        self._handlers.append(term)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            self.path = self.folder / f"imalys-{Path(self.chain_name).stem}-{stamp}.log"
            n = 1
            while self.path.exists():
                n += 1
                self.path = self.folder / f"imalys-{Path(self.chain_name).stem}-{stamp}-{n}.log"
            fh = logging.FileHandler(self.path, encoding="utf-8")
            fh.setLevel(logging.DEBUG)
            fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
            self._handlers.append(fh)
        counter = _Counter(self)
        self._handlers.append(counter)
        for h in self._handlers:
            root.addHandler(h)
        logging.captureWarnings(True)
        for name in _LIBRARY_LOGGERS:
            lib = logging.getLogger(name)
            lib.setLevel(logging.WARNING)
            for h in self._handlers[1:]:
                lib.addHandler(h)
        warnings.simplefilter("default")
        # Libraries' deprecation notices are for their developers, not for a chain's user.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        warnings.filterwarnings("default", category=DeprecationWarning, module="imalys_stac")
        return self

    def close(self) -> None:
        root = logging.getLogger(LOGGER_NAME)
        for h in self._handlers:
            root.removeHandler(h)
            for name in _LIBRARY_LOGGERS:
                logging.getLogger(name).removeHandler(h)
            h.close()
        self._handlers = []

    @contextmanager
    def command(self, name: str, line: int, params: dict[str, Any]) -> Iterator[None]:
        """Log a command's start, resolved parameters, end time and outcome."""
        start = time.perf_counter()
        log.info("── %s (line %d)", name, line)
        for key, value in params.items():
            log.debug("   %s = %s", key, value)
        log.debug("   started %s", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        try:
            yield
        except BaseException as exc:
            log.debug("   failed after %.1f s: %s", time.perf_counter() - start, exc)
            raise
        log.info("   %s done in %.1f s", name, time.perf_counter() - start)


class _ShortLevel(logging.Filter):
    """Terminal format; records marked `file_only` (errors the CLI prints itself) stay in the file."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "file_only", False):
            return False
        record.levelname_short = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return True


class _Counter(logging.Handler):
    def __init__(self, run: RunLog):
        super().__init__(logging.WARNING)
        self.run = run

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            self.run.errors += 1
        else:
            self.run.warnings += 1
