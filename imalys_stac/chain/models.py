"""One typed, validated parameter model per command.

Every field carries its parser in ``metadata`` (see :func:`param`), so the parser in
``parser.py`` stays generic: it maps keys to fields, parses values and calls ``_check`` for
rules that involve several parameters.
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..registry import REDUCERS as REDUCER_REGISTRY
from ..registry import UNSUPPORTED_REDUCERS
from . import values as v
from .errors import ChainError
from .period import Period

#: ``fail(parameter, message, hint)`` → a located ChainError (at the parameter's line, else the command's).
Fail = Callable[..., ChainError]


def param(
    parser: v.Parser,
    *,
    default: Any = None,
    factory: Callable[[], Any] | None = None,
    repeat: bool = False,
    required: bool = False,
    aliases: tuple[str, ...] = (),
    example: str | None = None,
) -> Any:
    """A dataclass field that is a chain parameter.

    ``repeat``: the key may be given several times; values are collected in order (a parser
    returning a list extends the list, e.g. ``collections = a, b``).
    ``aliases``: other keys naming the same parameter (giving two of them is an error).
    ``example``: shown when a required parameter is missing.
    """
    meta = {"parser": parser, "repeat": repeat, "required": required, "aliases": aliases, "example": example}
    if repeat:
        return field(default_factory=list, metadata=meta)
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Model:
    """Base of the command models: the hook for cross-parameter rules. (A dataclass without
    fields, so the type checker knows every model has dataclass fields.)"""

    command: ClassVar[str] = ""

    def _check(self, fail: Fail, given: set[str], check_files: bool) -> None:
        """Raise ``fail(...)`` for rules involving several parameters. ``given``: field names set in the chain."""


@dataclass
class Home(Model):
    """``home``: the working directory and the run's resources."""

    command: ClassVar[str] = "home"
    directory: Path = param(v.folder, factory=lambda: Path(os.path.expanduser("~/.imalys")))
    clear: bool = param(v.boolean, default=False)
    log: Path | None = param(v.path)
    scheduler: str | None = param(v.scheduler)
    workers: int | None = param(v.workers)
    memory: str | None = param(v.memory)

    def _check(self, fail: Fail, given: set[str], check_files: bool) -> None:
        if self.memory and self.memory.strip().lower() != "auto":
            size = memory_bytes(self.memory)
            if size is not None and size < MIN_WORKER_MEMORY:
                raise fail("memory", f"memory = {self.memory} per worker is too small: a worker needs at least "
                           f"{minimum_memory_as(self.memory)} for Python, GDAL and one block of pixels",
                           "give e.g. memory = 2GB (per worker), or leave it out")
        if self.workers is not None and (self.scheduler or "local") in ("local", "processes"):
            check_local_workers(self.workers, fail)


def check_local_workers(workers: int, fail: Fail) -> None:
    """Refuse more workers than this machine can run (see :func:`values.local_worker_limit`)."""
    limit, cores = v.local_worker_limit(), os.cpu_count() or 1
    if workers > limit:
        raise fail("workers", f"workers = {workers} is more than this machine runs well: it has {cores} core(s), and "
                   f"each worker needs at least 256 MiB; the limit here is {limit}",
                   f"give workers = {cores} (one per core), or leave it out (the same)")


#: Below this a Dask worker cannot even start its interpreter and libraries (~150 MB) plus one block.
MIN_WORKER_MEMORY = 256 << 20
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}


def minimum_memory_as(written: str) -> str:
    """:data:`MIN_WORKER_MEMORY` in the unit family of ``written``: ``256 MiB`` for binary units
    (``MiB``, ``GiB``), ``268.4 MB (256 MiB)`` for decimal ones (``MB``, ``GB``), so the limit
    compares with what the user wrote."""
    import re

    if re.search(r"[kmgtp]i\s*b\s*$", written, re.IGNORECASE):
        return f"{MIN_WORKER_MEMORY >> 20} MiB"
    return f"{MIN_WORKER_MEMORY / 1e6:.1f} MB ({MIN_WORKER_MEMORY >> 20} MiB)"


def memory_bytes(text: str) -> int | None:
    """`4GB` → 4·10⁹, `2GiB` → 2·2³⁰ (as Dask reads them); None for what is not a size."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]i?)?b\s*", text, re.IGNORECASE)
    if not m:
        return None
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


@dataclass
class Replace(Model):
    """``replace``: chain variables ``$1 = c7934`` (parsed specially: keys are ``$1``..``$9``)."""

    command: ClassVar[str] = "replace"
    values: dict[int, str] = field(default_factory=dict)


@dataclass
class Catalog(Model):
    """``catalog``: build the archive database."""

    command: ClassVar[str] = "catalog"
    archives: str = param(v.archive_folder_pattern, required=True, example="archives = ~/ESIS/archives/*_L2SP_*.tar")
    target: Path = param(v.path, required=True, example="target = ~/ESIS/archives/bonds.csv")
    workers: int | None = param(v.workers)

    def _check(self, fail: Fail, given: set[str], check_files: bool) -> None:
        if self.workers is not None:  # catalog starts its worker processes on this machine
            check_local_workers(self.workers, fail)


@dataclass
class Import(Model):
    """``import``: select archives, cut to the frame, check quality, calibrate."""

    command: ClassVar[str] = "import"
    select: list[str] = param(v.archive_pattern, repeat=True)
    database: Path | None = param(v.database)
    stac: str | None = param(v.url)
    collections: list[str] = param(v.comma_list, repeat=True)
    distance: float | None = param(v.positive)
    frame: Path | None = param(v.vector_file)
    period: list[Period] = param(v.period, repeat=True)
    cover: float | None = param(v.fraction)
    quality: float | None = param(v.fraction)
    bands: list[str] = param(v.comma_list, factory=list)
    factor: float | str | None = param(v.factor)
    offset: float | None = param(v.number)
    warp: int | None = param(v.epsg, aliases=("crsystem",))
    pixel: float | None = param(v.positive)
    mask: bool = param(v.boolean, default=True)
    rule: str = param(v.choice("flags", "confidence"), default="flags")
    polygon: bool = param(v.boolean, default=False)
    target: str | None = param(v.name)

    def _check(self, fail: Fail, given: set[str], check_files: bool) -> None:
        sources = [key for key in ("select", "database", "stac") if key in given]
        if len(sources) != 1:
            where = sources[1] if len(sources) > 1 else None
            found = "none" if not sources else " and ".join(sources)
            raise fail(
                where, f"needs exactly one of select, database or stac (found {found})",
                "select = archive paths, database = a catalog from the catalog command, or stac = a STAC API URL",
            )
        if "offset" in given and "factor" not in given:
            raise fail("offset", f"offset = {self.offset} is given without factor",
                       "calibration is value · factor + offset; give factor too (e.g. factor = 2.75e-5)")
        if "distance" in given and "select" in given:
            raise fail("distance", "distance applies to database or stac searches only, not to select",
                       "remove distance or use database = …")
        if "polygon" in given and self.polygon and "frame" not in given:
            raise fail("polygon", "polygon = true needs a frame", "add frame = a vector file")
        if "collections" in given and "select" in given:
            raise fail("collections", "collections filter database or stac searches only, not select",
                       "remove collections or use database/stac")


@dataclass
class Compile(Model):
    """``compile``: one stack on a common grid."""

    command: ClassVar[str] = "compile"
    select: list[str] = param(v.text_value, repeat=True)
    search: list[str] = param(v.text_value, repeat=True)
    period: list[Period] = param(v.period, repeat=True)
    frame: Path | None = param(v.vector_file)
    crsystem: int | None = param(v.epsg, aliases=("warp",))
    pixel: float | None = param(v.positive)
    projection: str | None = param(v.path_text)
    # int16: the stack's pixels stored as DN = round((value - offset) / scale), nodata -9999 (as
    # export's int16); true/false: the original's words (keep the input type: float32 reflectance)
    format: str | None = param(v.choice("float32", "int16", "true", "false"))
    scale: float = param(v.positive, default=1e-4)
    offset: float = param(v.number, default=0.0)
    target: str = param(v.name, default="compile")

    def _check(self, fail: Fail, given: set[str], check_files: bool) -> None:
        for key in ("scale", "offset"):
            if key in given and self.format != "int16":
                raise fail(key, f"{key} applies to format = int16 only", "add format = int16, or remove " + key)


#: ``execute`` processes built in (the validator reads the registry itself, see imalys_stac.registry).
REDUCERS = tuple(REDUCER_REGISTRY)


def _reducer(text: str, ctx: v.Context) -> str:
    word = text.strip().lower()
    REDUCERS = tuple(REDUCER_REGISTRY)  # read now: a reducer registered after import counts
    if word in UNSUPPORTED_REDUCERS:
        raise ValueError(f"{word} is an Imalys process this version does not run; use one of: {', '.join(REDUCERS)}")
    if word not in REDUCERS:
        close = difflib.get_close_matches(word, REDUCERS, n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"{guess}must be one of: {', '.join(REDUCERS)}")
    return word


@dataclass
class Reduce(Model):
    """``reduce``: per-pixel reductions of an image or stack."""

    command: ClassVar[str] = "reduce"
    select: str = param(v.text_value, required=True, example="select = compile")
    execute: list[str] = param(_reducer, repeat=True, required=True, example="execute = bestof")
    preserve: str | None = param(v.choice("bands"))
    flat: bool = param(v.boolean, default=False)
    target: str | None = param(v.name)
    red: int | None = param(v.band_number)
    nir: int | None = param(v.band_number)
    blue: int | None = param(v.band_number)
    threshold: float = param(v.fraction, default=0.5)
    count: bool = param(v.boolean, default=False)
    source: bool = param(v.boolean, default=False)

    def _check(self, fail: Fail, given: set[str], check_files: bool) -> None:
        seen: set[str] = set()
        for process in self.execute:
            if process in seen:
                raise fail("execute", f"execute = {process} is given twice",
                           "each process stores its result under its own name; give it once")
            seen.add(process)
        for process in self.execute:
            needs = REDUCER_REGISTRY[process].needs
            missing = [band for band in needs if getattr(self, band) is None]
            if missing:
                raise fail("execute", f"execute = {process} needs {' and '.join(missing)}",
                           "give 1-based band numbers, e.g. " + ", ".join(
                               f"{b} = {n}" for b, n in (("red", 3), ("nir", 4), ("blue", 1)) if b in needs))
        if self.target is not None and len(self.execute) > 1:
            raise fail("target", f"target = {self.target} with {len(self.execute)} execute processes",
                       "target renames one result; give one execute per reduce or drop target")


@dataclass
class Export(Model):
    """``export``: copy a result out of the working directory (the ending picks the format)."""

    command: ClassVar[str] = "export"
    select: str = param(v.text_value, required=True, example="select = bestof")
    target: Path = param(v.export_target, required=True, example="target = ~/ESIS/results/bestof_summer.tif")
    overwrite: bool = param(v.boolean, default=False)
    # int16: DN = round((value - offset) / scale), nodata -9999, as FORCE stores reflectance
    format: str = param(v.choice("float32", "int16"), default="float32")
    scale: float = param(v.positive, default=1e-4)
    offset: float = param(v.number, default=0.0)

    def _check(self, fail: Fail, given: set[str], check_files: bool) -> None:
        for key in ("scale", "offset"):
            if key in given and self.format != "int16":
                raise fail(key, f"{key} applies to format = int16 only", "add format = int16, or remove " + key)
        if self.format == "int16" and Path(self.target).suffix.lower() not in (".tif", ".tiff", ".vrt"):
            raise fail("format", f"format = int16 is written as a COG (.tif) or a VRT over one, not "
                       f"{Path(self.target).suffix or 'ENVI (no ending)'}", "export to a .tif target, or drop format")


#: Command name → parameter model.
COMMANDS: dict[str, type[Model]] = {
    model.command: model for model in (Replace, Home, Catalog, Import, Compile, Reduce, Export)
}
