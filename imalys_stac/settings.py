"""Every setting that comes from the environment, read in one place.

`Settings.from_env()` reads each `IMALYS_*` variable once, checks it and turns a bad value into a
:class:`SettingsError` naming the variable; a run reads them when it starts (``run_chain``) and
makes them the process's settings for its duration (:func:`using`); code that needs one asks
:func:`current`. The GDAL and malloc policies (what the runtime sets for GDAL and glibc) are
decided here from them too. Nothing is configured when a module is imported.

The table in ``docs/settings.md`` is generated from :data:`FIELDS` (:func:`markdown_table`) and a
test keeps it current.

This module is a leaf: it imports nothing of the package but the error family.
"""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ImalysError


class SettingsError(ImalysError):
    """An environment variable with a value that cannot be used; the message names it."""

    def __init__(self, variable: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.variable = variable
        self.hint = hint


# ----------------------------------------------------------------------------------- value parsers
_UNITS = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]i?)?b?\s*", flags=re.IGNORECASE)


def parse_memory(text: str) -> int | None:
    """Bytes of a memory size like 4GB, 512MB, 2GiB (GB = 10⁹, GiB = 2³⁰); None for `auto`.
    Raises ValueError for anything else."""
    if text.strip().lower() == "auto":
        return None
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(f"{text!r} is not a size")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def _text(value: str) -> str:
    return value.strip()


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            n = int(value.strip())
        except ValueError:
            raise ValueError(f"not a whole number{_range(low, high)}") from None
        if n < low or (high is not None and n > high):
            raise ValueError(f"out of range{_range(low, high)}")
        return n
    return parse


def _number(low: float, *, strict: bool = False) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            x = float(value.strip())
        except ValueError:
            raise ValueError(f"not a number ({'>' if strict else '≥'} {low:g})") from None
        if x != x or x in (float("inf"), float("-inf")) or x < low or (strict and x == low):
            raise ValueError(f"must be a finite number {'>' if strict else '≥'} {low:g}")
        return x
    return parse


def _range(low: int, high: int | None) -> str:
    return f" ({low}…{high})" if high is not None else f" (≥ {low})"


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in choices:
            raise ValueError(f"not one of {', '.join(choices)}")
        return v
    return parse


def _size(value: str) -> str:
    parse_memory(value)  # checked now; kept as written (messages quote it as the user wrote it)
    return value.strip()


def _flag(value: str) -> bool:
    return bool(value.strip())  # as before: any non-empty value switches it on


#: the most worker processes a setting may ask for (a typo such as 100000 would start that many)
MAX_WORKERS = 1024


def _meta(env: str, parse: Callable[[str], Any], doc: str, default_doc: str | None = None) -> dict[str, Any]:
    return {"env": env, "parse": parse, "doc": doc, "default_doc": default_doc}


@dataclass(frozen=True)
class Settings:
    """The settings of a run, from the environment (see docs/settings.md)."""

    scheduler: str | None = field(default=None, metadata=_meta(
        "IMALYS_SCHEDULER", _text, "Dask scheduler for every run, overriding `home scheduler` "
        "(`local`, `processes`, `tcp://host:8786`, `kubernetes`)", "`home scheduler`, else local threads"))
    workers: int | None = field(default=None, metadata=_meta(
        "IMALYS_WORKERS", _whole(1, MAX_WORKERS), f"worker threads or processes, overriding `home workers` (1…{MAX_WORKERS})",
        "`home workers`, else the CPU count"))
    memory: str | None = field(default=None, metadata=_meta(
        "IMALYS_MEMORY", _size, "memory per worker process, overriding `home memory` (e.g. 4GB, 512MiB)",
        "`home memory`, else Dask's share"))
    no_workers_timeout: float = field(default=120.0, metadata=_meta(
        "IMALYS_NO_WORKERS_TIMEOUT", _number(0, strict=True),
        "seconds work may wait on a distributed scheduler without any worker before the run fails"))
    dashboard: str = field(default=":0", metadata=_meta(
        "IMALYS_DASHBOARD", _text, "address of the Dask dashboard of a local process cluster (needs bokeh)",
        "`:0` (a free port)"))
    image: str = field(default="imalys-stac:latest", metadata=_meta(
        "IMALYS_IMAGE", _text, "container image of the pods of `scheduler = kubernetes`"))
    claim_archives: str = field(default="imalys-archives", metadata=_meta(
        "IMALYS_CLAIM_ARCHIVES", _text, "PersistentVolumeClaim mounted at /data/archives (kubernetes)"))
    claim_catalog: str = field(default="imalys-catalog", metadata=_meta(
        "IMALYS_CLAIM_CATALOG", _text, "PersistentVolumeClaim mounted at /data/catalog (kubernetes)"))
    claim_work: str = field(default="imalys-work", metadata=_meta(
        "IMALYS_CLAIM_WORK", _text, "PersistentVolumeClaim mounted at /data/work (kubernetes)"))
    claim_results: str = field(default="imalys-results", metadata=_meta(
        "IMALYS_CLAIM_RESULTS", _text, "PersistentVolumeClaim mounted at /data/results (kubernetes)"))
    gdal_cachemax: int | None = field(default=None, metadata=_meta(
        "IMALYS_GDAL_CACHEMAX", _whole(1), "GDAL's block cache in MB, in this process and on every worker",
        "64; on a worker with a memory limit an eighth of it (32…512)"))
    progress_interval: float = field(default=10.0, metadata=_meta(
        "IMALYS_PROGRESS_INTERVAL", _number(0), "seconds between two progress lines in the log (and on a terminal "
        "that is not one)"))
    reader: str = field(default="tiles", metadata=_meta(
        "IMALYS_READER", _one_of("tiles", "stackstac"), "the pixel reader: `tiles` (the project's own) or `stackstac` "
        "(the former one, kept for comparisons)"))
    tile_cache_mb: float | None = field(default=None, metadata=_meta(
        "IMALYS_TILE_CACHE_MB", _number(0, strict=True), "MB of decoded tiles the reader keeps per process",
        "768, at most a sixteenth of a worker's memory limit"))
    read_stats: str | None = field(default=None, metadata=_meta(
        "IMALYS_READ_STATS", _text, "file to which the reader appends its tile counts (JSON lines; benchmarks)",
        "none"))
    kernel_cache: str | None = field(default=None, metadata=_meta(
        "IMALYS_STAC_KERNEL_CACHE", _text, "folder for the generated compositing kernels and numba's cache",
        "~/.cache/imalys_stac/kernels, else a temporary folder"))
    part_pixels: int = field(default=8192, metadata=_meta(
        "IMALYS_PART_PIXELS", _whole(16), "side (pixels) of the parts a large grid is reduced in, one graph each"))
    no_malloc_tuning: bool = field(default=False, metadata=_meta(
        "IMALYS_NO_MALLOC_TUNING", _flag, "any value: the console scripts keep glibc's malloc settings (they "
        "otherwise set them with mallopt as they start, see below)", "unset"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (default: this process's environment), each checked. An
        empty variable counts as unset. Raises SettingsError naming the first bad variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = env.get(name)
            if raw is None or not raw.strip():
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise SettingsError(name, f"environment variable {name} = {raw!r}: {exc}",
                                    hint=f"correct it or unset it (default: {default_text(f).replace('`', '')}); "
                                         "see docs/settings.md") from None
        return cls(**values)

    # ------------------------------------------------------------------------------- policies
    def gdal_env(self) -> dict[str, str]:
        """GDAL's configuration for this process and every worker (see GDAL_ENV)."""
        from .runtime.names import GDAL_ENV

        env = dict(GDAL_ENV)
        if self.gdal_cachemax is not None:
            env["GDAL_CACHEMAX"] = str(self.gdal_cachemax)
        return env

    def worker_gdal_cachemax(self, memory_limit: int | None) -> str | None:
        """GDAL_CACHEMAX (MB) for a worker with `memory_limit` bytes: the user's value when set,
        else an eighth of the limit (32…512 MB) so the cache cannot push a small worker over it;
        None without a limit (the GDAL_ENV default stays)."""
        if self.gdal_cachemax is not None:
            return str(self.gdal_cachemax)
        if not memory_limit:
            return None
        return str(max(32, min(512, int(memory_limit) // 8 // 2**20)))

    def malloc_env(self) -> dict[str, str]:
        """glibc malloc settings the console scripts restart with ({} when opted out)."""
        return {} if self.no_malloc_tuning else dict(MALLOC_ENV)

    def kube_claims(self) -> dict[str, str]:
        return {"archives": self.claim_archives, "catalog": self.claim_catalog, "work": self.claim_work,
                "results": self.claim_results}


# glibc returns every large buffer to the kernel on free and zero-fills fresh pages on the next
# allocation; a chain allocates and frees gigabytes of block buffers, and this cost a third of the
# CPU time (sys) in the benchmark. Keeping freed memory in the process removes it. The console
# scripts set the same three parameters with mallopt(3) as they start (glibc's own parameters,
# in force for every later allocation) and put the variables in the environment for the processes
# they start; where mallopt is not to be had they re-execute themselves once with the variables.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
    "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
    "MALLOC_TOP_PAD_": str(256 << 20),
}
#: the same policy as mallopt(3) parameters (M_TRIM_THRESHOLD -1, M_TOP_PAD -2, M_MMAP_THRESHOLD -3);
#: mallopt takes a C int, so the trim threshold is the largest one (2 GiB, as good as 4 here)
MALLOPT = {-3: 1 << 30, -1: (1 << 31) - 1, -2: 256 << 20}

FIELDS = tuple(fields(Settings))


def malloc_tuning_wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the console scripts restart with MALLOC_ENV: read before anything else (and
    before the other settings are checked, so a bad value elsewhere is reported by the run)."""
    raw = (os.environ if environ is None else environ).get("IMALYS_NO_MALLOC_TUNING", "")
    return not _flag(raw)

# --------------------------------------------------------------------------- the settings in force
_active: list[Settings] = []
_lock = threading.Lock()


@contextmanager
def using(settings: Settings) -> Iterator[Settings]:
    """Make `settings` the process's settings while the block runs (a run: its threads, the
    threaded scheduler's included, see the same)."""
    with _lock:
        _active.append(settings)
    try:
        yield settings
    finally:
        with _lock:
            _active.remove(settings)


def current() -> Settings:
    """The settings of the running run, or (outside one, e.g. on a worker process) the
    environment's, read now."""
    with _lock:
        if _active:
            return _active[-1]
    return Settings.from_env()


# ------------------------------------------------------------------------------- the docs table
def default_text(f: Any) -> str:
    if f.metadata.get("default_doc"):
        return str(f.metadata["default_doc"])
    return f"`{f.default}`" if f.default is not None else "unset"


def markdown_table() -> str:
    """The table of docs/settings.md (generated; a test keeps the file current)."""
    rows = ["| Variable | Meaning | Default |", "|---|---|---|"]
    for f in FIELDS:
        rows.append(f"| `{f.metadata['env']}` | {f.metadata['doc']} | {default_text(f)} |")
    return "\n".join(rows) + "\n"


__all__ = ["FIELDS", "MALLOC_ENV", "MALLOPT", "MAX_WORKERS", "Settings", "SettingsError", "current", "malloc_tuning_wanted",
           "markdown_table",
           "parse_memory", "using"]
