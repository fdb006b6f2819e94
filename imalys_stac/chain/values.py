"""Value parsers for parameters.

Each parser takes the text after ``=`` (variables already substituted) and a :class:`Context`, and
returns the typed value or raises ``ValueError(reason)``; the reason completes the message
``quality = 1.4 — <reason>`` so it must say what is accepted.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gdalnames import is_utf8
from ..registry import FORMATS as FORMAT_REGISTRY
from ..text import shown_bytes
from .paths import expand_path_text, has_wildcard, kind_of, on_disk, path_key, resolve_archive_pattern
from .period import Period


@dataclass(frozen=True)
class Context:
    """What parsers need beyond the text."""

    check_files: bool = True
    #: files that earlier commands of the same chain will make (a `catalog` target that a later
    #: `import database` reads need not exist before the chain runs)
    produced: set = field(default_factory=set)


Parser = Callable[[str, Context], Any]

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


def boolean(text: str, ctx: Context) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("must be true or false (also yes/no, 1/0)")


class Number(float):
    """A number from a chain that remembers how the user wrote it.

    It is the float it stands for (arithmetic, comparisons, ``%.2f`` and numpy work as on any
    float; results of arithmetic are plain floats), but ``str(x)``, ``f"{x}"`` and ``"%s" % x``
    give the text as written — ``quality = 0.999`` prints ``0.999``, never ``1.00`` — so a
    message can quote the user exactly. ``x.raw`` holds that text; :func:`as_written` reads it
    from any value.
    """

    __slots__ = ("raw",)
    raw: str

    def __new__(cls, value: float, raw: str | None = None) -> Number:
        self = super().__new__(cls, value)
        self.raw = raw if raw is not None else repr(float(value))
        return self

    def __str__(self) -> str:
        return self.raw

    def __format__(self, spec: str) -> str:
        return self.raw if not spec else float.__format__(self, spec)

    def __reduce__(self):
        return (Number, (float(self), self.raw))


def as_written(value: Any) -> str:
    """A parameter value as the user wrote it in the chain: the original text of a
    :class:`Number` (``0.999``, ``2.75e-5``), the shortest exact form of any other float, ``str``
    of anything else."""
    raw = getattr(value, "raw", None)
    if isinstance(raw, str):
        return raw
    if isinstance(value, float):
        return repr(value)
    return str(value)


def as_measured(value: float, limit: float, digits: int = 3) -> str:
    """``value`` (a measured number) rounded for a message that compares it with ``limit``: at
    least ``digits`` decimals, more when fewer would hide the comparison — a quality of 0.99899
    against ``quality = 0.999`` prints ``0.99899``, never ``0.999 < 0.999``. Print the limit with
    :func:`as_written`: ``f"quality {as_measured(q, p.quality)} < {as_written(p.quality)}"``."""
    value, bound = float(value), float(limit)
    if not (math.isfinite(value) and math.isfinite(bound)):
        return repr(value)
    for d in range(digits, 18):
        text = f"{value:.{d}f}"
        shown = float(text)
        if (shown < bound) == (value < bound) and (shown > bound) == (value > bound):
            return text
    return repr(value)


def _number(text: str) -> Number:
    word = text.strip()
    if re.fullmatch(r"[+-]?\d+,\d+([eE][+-]?\d+)?", word):
        raise ValueError("write the decimal point as '.', not ','")
    if len(word) > 100:  # float() reads any length; no number needs more
        raise ValueError("must be a number (this one is more than 100 characters long)")
    try:
        value = float(word)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(value) or "_" in word:
        raise ValueError("must be a finite number")
    return Number(value, word)


def number(text: str, ctx: Context) -> Number:
    return _number(text)


def positive(text: str, ctx: Context) -> Number:
    try:
        value = _number(text)
    except ValueError as e:
        raise ValueError(f"{e}; must be a number greater than 0") from None
    if value <= 0:
        raise ValueError("must be a number greater than 0")
    return value


def fraction(text: str, ctx: Context) -> Number:
    reason = "must be a fraction between 0 and 1 (e.g. 0.7)"
    try:
        value = _number(text)
    except ValueError as e:
        raise ValueError(f"{e}; {reason}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(reason)
    return value


#: more digits than any count or band number needs (and int() refuses beyond 4300)
_MAX_DIGITS = 9


def positive_int(text: str, ctx: Context) -> int:
    word = text.strip()
    if not re.fullmatch(r"\+?[0-9]+", word):
        raise ValueError("must be a whole number of at least 1")
    digits = word.lstrip("+").lstrip("0")
    if not digits:
        raise ValueError("must be a whole number of at least 1")
    if len(digits) > _MAX_DIGITS:
        raise ValueError(f"must be a whole number of at least 1 (and below {10 ** _MAX_DIGITS:,})")
    return int(digits)


#: the most workers any run starts or asks for: each is a process (or a pod) with at least
#: 256 MiB of its own, and a scheduler spends its time on bookkeeping long before this
MAX_WORKERS = 1024


def local_worker_limit() -> int:
    """The most workers a run on this machine may start: 8 per core, at least 64 (more processes
    than that only compete for the cores and the memory)."""
    return max(64, 8 * (os.cpu_count() or 1))


def workers(text: str, ctx: Context) -> int:
    word = text.strip().lstrip("+").lstrip("0")
    try:
        value = positive_int(text, ctx)
    except ValueError:
        if not (word.isascii() and word.isdigit()):
            raise ValueError(f"must be a whole number of workers, at least 1 (e.g. {os.cpu_count() or 1}, one per "
                             "core of this machine)") from None
        value = MAX_WORKERS + 1  # more digits than any count: beyond the limit below
    if value > MAX_WORKERS:
        raise ValueError(f"is more than {MAX_WORKERS} workers: each worker is a process (or pod) that needs at least "
                         f"256 MiB; give e.g. workers = {os.cpu_count() or 1} (one per core of this machine)")
    return value


def band_number(text: str, ctx: Context) -> int:
    try:
        return positive_int(text, ctx)
    except ValueError:
        raise ValueError("must be a 1-based band number (1 for the first band)") from None


def epsg(text: str, ctx: Context) -> int:
    word = text.strip()
    match = re.fullmatch(r"(?:epsg\s*:\s*)?([0-9]{1,7})", word, flags=re.IGNORECASE)
    if not match or int(match.group(1)) < 1:
        raise ValueError("must be an EPSG code (e.g. 32632 or EPSG:32632)")
    return int(match.group(1))


def factor(text: str, ctx: Context) -> Number | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return _number(text)
    except ValueError as e:
        if str(e) == "must be a number":
            raise ValueError("must be a number (e.g. 2.75e-5) or auto (from the metadata)") from None
        raise ValueError(f"{e} (e.g. 2.75e-5), or write auto (from the metadata)") from None


def text_value(text: str, ctx: Context) -> str:
    return text.strip()


def name(text: str, ctx: Context) -> str:
    """A result name in the working directory (bare: a path would leave the working directory)."""
    word = text.strip()
    if not word or "/" in word or "\\" in word or word in {".", ".."}:
        raise ValueError("must be a bare name in the working directory (no folder), e.g. bestof")
    return word


def comma_list(text: str, ctx: Context) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ValueError("must be a comma-separated list without empty entries (e.g. _B2, _B3, _B4)")
    return items


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def path(text: str, ctx: Context) -> Path:
    """A path (``~`` and environment variables expanded). When files are checked, a path that
    exists only under another byte spelling of its non-ASCII letters (a Latin-1 name) is taken
    as it is stored."""
    return Path(path_text(text, ctx))


def folder(text: str, ctx: Context) -> Path:
    """A folder that is used or made (``home directory``): an existing file there is refused."""
    value = path(text, ctx)
    if _what(value, ctx) in ("file", "other"):
        raise ValueError("is a file, expected a folder (it is made when it does not exist)")
    return value


def _what(value: Path | str, ctx: Context) -> str:
    """:func:`paths.kind_of` when files are checked, else ``"unchecked"``."""
    return kind_of(value) if ctx.check_files else "unchecked"


#: file endings `export` can write, built in (the validator reads the registry of formats itself,
#: so a format registered after import counts; no GDAL import there)
EXPORT_ENDINGS = tuple(FORMAT_REGISTRY)




def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (``sys.modules[name] = None``
    marks a module as blocked, as the import system does)."""
    import importlib.util
    import sys

    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_writer_packages(ending: str) -> tuple[list[str], str | None]:
    """The modules the writer of ``ending`` needs that are not installed (its registry entry's
    ``requires``), and the extra that brings them. Checked when the chain is read, so a missing
    package stops the run before any work, not after it."""
    fmt = FORMAT_REGISTRY.get(ending.lower())
    if fmt is None:
        return [], None
    return [m for m in fmt.requires if not _installed(m)], fmt.extra


def export_target(text: str, ctx: Context) -> Path:
    value = path(text, ctx)
    fmt = FORMAT_REGISTRY.get(value.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"unknown format {value.suffix!r}: the ending picks the format — "
            + ", ".join(e for e in FORMAT_REGISTRY if e) + ", or no ending for ENVI"
        )
    missing, extra = missing_writer_packages(value.suffix)
    if missing:
        raise ValueError(
            f"writing {value.suffix} needs the optional package{'s' if len(missing) > 1 else ''} "
            f"{' and '.join(missing)}, which {'are' if len(missing) > 1 else 'is'} not installed: "
            f"pip install 'imalys-stac[{extra}]', or export to .tif instead"
        )
    if not fmt.directory and _what(value, ctx) == "folder":
        raise ValueError(f"is a folder, expected a file name; write e.g. {value / 'bestof.tif'}")
    if not is_utf8(value.name):
        raise ValueError(f"the file name {shown_bytes(value.name)} is not UTF-8 (Latin-1?): GDAL makes files only "
                         "under UTF-8 names; name the file in ASCII or UTF-8 (a folder named in Latin-1 is fine)")
    return value


def path_text(text: str, ctx: Context) -> str:
    word = text.strip()
    control = _CONTROL.search(word)
    if control:
        raise ValueError(f"a path must not hold control characters (found U+{ord(control.group()):04X})")
    value = expand_path_text(word)
    if ctx.check_files and not has_wildcard(value):
        value = str(on_disk(value))
    return value


_VECTOR_SUFFIXES = (
    ".shp", ".gpkg", ".geojson", ".json", ".fgb", ".kml", ".gml", ".sqlite", ".gpx",
    ".parquet", ".geoparquet", ".csv", ".tab", ".mif",
)


def vector_file(text: str, ctx: Context) -> Path:
    value = path(text, ctx)
    what = _what(value, ctx)
    if what == "folder":
        raise ValueError(f"is a folder, expected a vector file ({', '.join(_VECTOR_SUFFIXES)})")
    if value.suffix.lower() not in _VECTOR_SUFFIXES:
        raise ValueError(f"must be a vector file ({', '.join(_VECTOR_SUFFIXES)})")
    if what == "missing":
        raise ValueError("the file does not exist")
    if what == "other":
        raise ValueError("is not a regular file, expected a vector file")
    return value


def archive_pattern(text: str, ctx: Context) -> str:
    """An archive path, wildcards allowed; must name at least one existing file (when checked)."""
    value = path_text(text, ctx)
    if not has_wildcard(value) and _what(value, ctx) == "folder":
        raise ValueError(f"is a folder, expected an archive file; to take every archive in it write "
                         f"{os.path.join(value, '*.tar')}")
    if ctx.check_files and not resolve_archive_pattern(value):
        raise ValueError(
            "no archive matches (neither the path, its wildcards, nor its short name "
            f"{Path(value).name.partition('.')[0]}_*{''.join(Path(value).suffixes)})"
        )
    return value


def archive_folder_pattern(text: str, ctx: Context) -> str:
    """`catalog archives`: wildcards only in the file name; the folder must exist (when checked)."""
    value = path_text(text, ctx)
    folder = os.path.dirname(value) or "."
    if has_wildcard(folder):
        raise ValueError("wildcards are allowed in the file name only (only that one folder is searched)")
    if not has_wildcard(value) and _what(value, ctx) == "folder":
        raise ValueError(f"is a folder; to take every archive in it write {os.path.join(value, '*.tar')}")
    what = _what(folder, ctx)
    if what == "missing":
        raise ValueError(f"the folder {folder} does not exist")
    if what not in ("folder", "unchecked"):
        raise ValueError(f"{folder} is a file, expected the folder that holds the archives")
    return value


_DATABASE_SUFFIXES = (".json", ".parquet", ".geoparquet", ".csv")


def database(text: str, ctx: Context) -> Path:
    value = path(text, ctx)
    accepted = "must be a catalog: a folder, a catalog.json, a .parquet or a .csv file"
    if path_key(value) in ctx.produced:  # an earlier `catalog` of the chain makes it (any name, may not exist yet)
        return value
    what = _what(value, ctx)
    if what == "folder" or (what == "unchecked" and os.path.isdir(value)):  # a catalog folder may have any name
        return value
    if value.suffix.lower() not in _DATABASE_SUFFIXES and (ctx.check_files or value.suffix):
        raise ValueError(accepted)
    if what == "missing":
        raise ValueError(f"it does not exist; {accepted}")
    return value


def url(text: str, ctx: Context) -> str:
    word = text.strip()
    if not re.fullmatch(r"https?://\S+", word):
        raise ValueError("must be the http(s) URL of a STAC API (e.g. https://earth-search.aws.element84.com/v1)")
    return word


def period(text: str, ctx: Context) -> Period:
    return Period.parse(text)


def choice(*accepted: str) -> Parser:
    """A parser for one of ``accepted`` words (case-insensitive, stored lower case)."""

    def parse(text: str, ctx: Context) -> str:
        word = text.strip().lower()
        if word not in accepted:
            raise ValueError(f"must be one of: {', '.join(accepted)}")
        return word

    return parse


_ADDRESS = re.compile(r"(tcp|tls)://(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9_.-]+):\d{1,5}")


def scheduler(text: str, ctx: Context) -> str:
    word = text.strip()
    if word.lower() in {"local", "processes", "kubernetes"}:
        return word.lower()
    if _ADDRESS.fullmatch(word):
        return word
    raise ValueError("must be local, processes, kubernetes or a scheduler address like tcp://host:8786")


_MEMORY = re.compile(r"[0-9]{1,15}(\.[0-9]{1,15})?\s*([kmgtp]i?)?b", re.IGNORECASE)


def memory(text: str, ctx: Context) -> str:
    word = text.strip()
    if word.lower() == "auto" or _MEMORY.fullmatch(word):
        return word
    raise ValueError("must be a memory size per worker like 4GB, 512MB or 2GiB (or auto)")
