"""The run log: one file per run in the `home` log folder, plus concise terminal output.

Everything that matters to a user afterwards goes to the file: each command with its resolved
parameters, start and end times, inputs and outputs, warnings (ours and those of GDAL, Dask and
other libraries, which reach Python's logging/warnings) and errors with their cause.

Two modes. The command line (``terminal=True``) owns the process: it prints to stderr, routes
the libraries' warnings and Python warnings into the log and sets the warning filters. A chain
run through the Python API (``terminal=False``) is a guest in the caller's process: it adds only
the log file, and what reaches the caller's own handlers is exactly what their configuration lets
through — no level, filter, handler or ``propagate`` flag of theirs is changed. Both modes put
back on ``close()`` everything ``open()`` changed.
"""
from __future__ import annotations

import logging
import re
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..text import shown_bytes

LOGGER_NAME = "imalys_stac"
log = logging.getLogger(LOGGER_NAME)

# Libraries whose warnings belong in the run log (GDAL errors arrive through rasterio's logger).
_LIBRARY_LOGGERS = ("rasterio", "distributed", "stackstac", "pystac", "pystac_client", "py.warnings")


class RunLog:
    """Attach a log file for one chain run and record its commands."""

    def __init__(self, folder: Path | None, chain_name: str = "chain", verbose: bool = False, terminal: bool = True):
        self.folder = Path(folder) if folder else None
        self.path: Path | None = None
        self._handlers: list[logging.Handler] = []
        self.verbose = verbose
        self.terminal = terminal
        self.chain_name = chain_name
        self.warnings = 0
        self.errors = 0
        self._saved: dict[str, Any] | None = None

    def open(self, folder: Path | None = None) -> RunLog:
        if folder is not None:
            self.folder = Path(folder)
        self.close()
        root = logging.getLogger(LOGGER_NAME)
        self._saved = {"level": root.level, "propagate": root.propagate, "warnings": None,
                       "captured": logging._warnings_showwarning is not None,  # type: ignore[attr-defined]
                       "libraries": {name: logging.getLogger(name).level for name in _LIBRARY_LOGGERS}}
        if self.terminal:
            term = logging.StreamHandler(sys.stderr)
            term.setLevel(logging.DEBUG if self.verbose else logging.INFO)
            term.setFormatter(_Shown("%(levelname_short)s%(message)s"))
            term.addFilter(_ShortLevel())
            self._handlers.append(term)
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            # a chain given as text is called "<chain>": no brackets in a file name
            stem = re.sub(r"[^\w.-]", "", Path(self.chain_name).stem) or "chain"
            self.path = self.folder / f"imalys-{stem}-{stamp}.log"
            n = 1
            while self.path.exists():
                n += 1
                self.path = self.folder / f"imalys-{stem}-{stamp}-{n}.log"
            fh = logging.FileHandler(self.path, encoding="utf-8")
            fh.setLevel(logging.DEBUG)
            fh.setFormatter(_Shown("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
            self._handlers.append(fh)
        counter = _Counter(self)
        self._handlers.append(counter)
        if not self.terminal and root.level == logging.NOTSET and root.propagate:
            # The file wants every message, the caller's handlers only what their levels let
            # through: our logger takes all and hands the caller's share on itself.
            self._handlers.append(_Forward(root))
            root.propagate = False
        if self.terminal or root.level == logging.NOTSET:
            root.setLevel(logging.DEBUG)
        for h in self._handlers:
            root.addHandler(h)
        if not self.terminal:
            return self
        root.propagate = False
        self._saved["warnings"] = catcher = warnings.catch_warnings()  # puts the filters back on close
        catcher.__enter__()
        logging.captureWarnings(True)
        file_handlers = [h for h in self._handlers if h is not self._handlers[0]]
        for name in _LIBRARY_LOGGERS:
            lib = logging.getLogger(name)
            lib.setLevel(logging.WARNING)
            for h in file_handlers:
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
        saved, self._saved = self._saved, None
        if saved is None:
            return
        root.setLevel(saved["level"])
        root.propagate = saved["propagate"]
        if self.terminal:
            logging.captureWarnings(saved["captured"])
            if saved["warnings"] is not None:
                saved["warnings"].__exit__(None, None, None)
            for name, level in saved["libraries"].items():
                logging.getLogger(name).setLevel(level)

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


class _Shown(logging.Formatter):
    """Lines with the bytes of a name that are not UTF-8 (a Latin-1 folder, which Python keeps as
    lone surrogates) written as ``\\xe9``: the UTF-8 log file dropped the whole line for one such
    byte ("--- Logging error ---"), and the terminal would show ``\\udce9``."""

    def format(self, record: logging.LogRecord) -> str:
        return shown_bytes(super().format(record))


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


class _Forward(logging.Handler):
    """Hands a record on to the handlers above `logger` when the level the caller's configuration
    gives `logger` lets it through (what propagation would have done had we not set a level).
    Records marked `file_only` stay in the run log: they repeat the error the caller receives as
    the exception."""

    def __init__(self, logger: logging.Logger):
        super().__init__(logging.NOTSET)
        self.logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        parent = self.logger.parent
        if getattr(record, "file_only", False):
            return
        if parent is not None and record.levelno >= parent.getEffectiveLevel():
            parent.handle(record)
