"""Product records: what each kind of product stores in its STAC item, as typed, frozen values.

Every ``imalys:*`` property name is spelled here and nowhere else in the package (a test scans the
modules). A product kind is one frozen dataclass with

- ``to_properties()``: its item properties — the same keys, in the same order, with the same JSON
  values (lists, never tuples) as the items have always had; ``None`` values are written by no
  one (the item drops them, see ``products._base_item``);
- ``from_properties(props)`` / ``from_item(item)``: the record back from an item, so
  ``from_properties(to_properties())`` is the record again (tests/test_product_records.py).

The kinds: :class:`ImportRecord` (the recipe of one acquisition: which archive items, bands,
calibration, mask rule, resampling, region, measured quality and cover), :class:`CompileRecord`
(a stack of imports on one grid), :class:`CompositeRecord` (a reduce result) and
:class:`ExportRecord` (the provenance of an exported file, in the item beside it). The grid
(``proj:*``), dates and titles are STAC's own fields, written by ``products._base_item``.

This module imports nothing of the package, so any layer may use it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import ImalysError

# -- property names ------------------------------------------------------------------------------
# every product
KIND = "imalys:kind"  #: "import", "compile" or "reduce"
VERSION = "imalys:version"  #: package version that wrote the product
COMMAND = "imalys:command"  #: the chain command that made it (chain, line, command, parameters)
FINGERPRINT = "imalys:fingerprint"  #: what it was made from; the same fingerprint = up to date
# import recipe
QUALITY = "imalys:quality"
COVER = "imalys:cover"
SOURCES = "imalys:sources"
BANDS = "imalys:bands"  #: also compile (the inputs' bands) and reduce (the result's bands)
FACTOR = "imalys:factor"
OFFSET = "imalys:offset"
CALIBRATION = "imalys:calibration"
MASK = "imalys:mask"
RESAMPLING = "imalys:resampling"
FRAME = "imalys:frame"  #: also compile: the frame file as given
FRAME_GEOMETRY = "imalys:frame_geometry"  #: the frame's geometry (WKT) in its own CRS, as read at import
FRAME_CRS = "imalys:frame_crs"  #: that CRS ("EPSG:n", else WKT)
REGION_WKT = "imalys:region_wkt"
REGION_EPSG = "imalys:region_epsg"
NODATA = "imalys:nodata"
DTYPE = "imalys:dtype"
# compile and reduce
INPUTS = "imalys:inputs"
LAYERS = "imalys:layers"
FRAME_WKT = "imalys:frame_wkt"
PROCESS = "imalys:process"
PRESERVE = "imalys:preserve"
THRESHOLD = "imalys:threshold"
DATES = "imalys:dates"
QUALITIES = "imalys:qualities"
# an exported file's item
PROVENANCE = "imalys:provenance"
FILE = "imalys:file"
# a COG written by the Python API's to_cog: the writer and its version
WRITER = "imalys:writer"
# a reduce result: the [size, mtime_ns] of its COG when write_cog checked it (export copies a file
# that still has this stamp without checking it again); the time is a string: nanoseconds since
# 1970 exceed 2^53, which JSON readers that use doubles (JavaScript, STAC Browser) round
COG_CHECKED = "imalys:cog_checked"
# an import's sources file: the product folder it was written in (absolute), where its relative
# member hrefs are resolved when they are not found from the folder the file is in now
WRITTEN_IN = "imalys:written_in"
# an archive (source) item: the archive file its assets are members of
ARCHIVE = "imalys:archive"

#: the mask of an import made without a QA rule (only fill pixels are nodata)
FILL_ONLY = "fill-only"


def file_stamp(path: Any) -> list[int | str] | None:
    """[size, "mtime_ns"] of a file (None: missing or a folder): what FILE and COG_CHECKED hold.
    The time is a decimal string, exact in any JSON reader (an integer above 2^53 is not)."""
    import os

    try:
        st = os.stat(path)
    except OSError:
        return None
    import stat

    return None if stat.S_ISDIR(st.st_mode) else [st.st_size, str(st.st_mtime_ns)]


def _tuple(value: Any) -> tuple:
    return tuple(value) if value is not None else ()


def _opt_tuple(value: Any) -> tuple | None:
    return tuple(value) if value is not None else None


def _list(value: tuple | None) -> list | None:
    return list(value) if value is not None else None


class RecordError(ImalysError, ValueError):
    """An item is not a product of the kind asked for (a programming error or a foreign item)."""


def _check_kind(props: Mapping[str, Any], kind: str, what: str) -> None:
    if props.get(KIND) != kind:
        raise RecordError(f"{what} is a {props.get(KIND)} product, not {kind}")


def _props(item: Any) -> Mapping[str, Any]:
    return item if isinstance(item, Mapping) else item.properties


# -- import --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportRecord:
    """The recipe of an import product: one acquisition (its archive items, read in place),
    its bands with their calibration, the QA mask rule, how it is resampled onto its grid, the
    region (polygon frame) and what was measured (quality inside the frame, cover)."""

    KIND: ClassVar[str] = "import"

    sources: tuple[str, ...]  #: ids of the archive items (their JSON is in the `sources` asset)
    bands: tuple[str, ...]  #: asset keys, in band order
    factor: tuple[float, ...]
    offset: tuple[float, ...]
    calibration: str = "given"  #: where factor/offset come from ("given", "metadata", …)
    mask: str = FILL_ONLY  #: the QA rule's name, or FILL_ONLY
    resampling: str = "bilinear"
    quality: float | None = None  #: clear share of the image pixels inside the frame
    cover: float | None = None  #: share of the frame with image pixels
    frame: str | None = None  #: the frame file as given
    frame_geometry: str | None = None  #: the frame's geometry (WKT) in its own CRS (what a later compile covers)
    frame_crs: str | None = None  #: that CRS
    region_wkt: str | None = None  #: the polygon frame in the grid CRS (pixels outside: nodata)
    region_epsg: int | None = None
    platform: str | None = None  #: STAC common metadata of the first archive item
    instruments: tuple[str, ...] | None = None
    constellation: str | None = None
    nodata: str = "nan"
    dtype: str = "float32"

    @property
    def rule(self) -> str | None:
        """The QA rule's name (None: fill only)."""
        return None if self.mask == FILL_ONLY else self.mask

    def to_properties(self) -> dict[str, Any]:
        return {
            KIND: self.KIND,
            "platform": self.platform,
            "instruments": _list(self.instruments),
            "constellation": self.constellation,
            QUALITY: self.quality,
            COVER: self.cover,
            SOURCES: list(self.sources),
            BANDS: list(self.bands),
            FACTOR: list(self.factor),
            OFFSET: list(self.offset),
            CALIBRATION: self.calibration,
            MASK: self.mask,
            RESAMPLING: self.resampling,
            FRAME: self.frame,
            FRAME_GEOMETRY: self.frame_geometry,
            FRAME_CRS: self.frame_crs,
            REGION_WKT: self.region_wkt,
            REGION_EPSG: self.region_epsg,
            NODATA: self.nodata,
            DTYPE: self.dtype,
        }

    @classmethod
    def from_properties(cls, props: Mapping[str, Any], what: str = "the item") -> ImportRecord:
        _check_kind(props, cls.KIND, what)
        return cls(
            sources=_tuple(props.get(SOURCES)),
            bands=_tuple(props[BANDS]),
            factor=_tuple(props[FACTOR]),
            offset=_tuple(props[OFFSET]),
            calibration=props.get(CALIBRATION, "given"),
            mask=props.get(MASK) or FILL_ONLY,
            resampling=props.get(RESAMPLING, "bilinear"),
            quality=props.get(QUALITY),
            cover=props.get(COVER),
            frame=props.get(FRAME),
            frame_geometry=props.get(FRAME_GEOMETRY),
            frame_crs=props.get(FRAME_CRS),
            region_wkt=props.get(REGION_WKT),
            region_epsg=props.get(REGION_EPSG),
            platform=props.get("platform"),
            instruments=_opt_tuple(props.get("instruments")),
            constellation=props.get("constellation"),
            nodata=props.get(NODATA, "nan"),
            dtype=props.get(DTYPE, "float32"),
        )

    @classmethod
    def from_item(cls, item: Any) -> ImportRecord:
        return cls.from_properties(_props(item), getattr(item, "id", "the item"))


# -- compile -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompileRecord:
    """A compiled stack: import products (by name, in date order) on one grid, optionally cut to
    a frame polygon."""

    KIND: ClassVar[str] = "compile"

    inputs: tuple[str, ...]
    bands: tuple[str, ...] | None = None  #: the inputs' bands (all inputs have the same)
    frame: str | None = None  #: the frame file as given
    frame_wkt: str | None = None  #: exact frame polygon in the grid CRS: pixels outside are nodata
    layers: int | None = None  #: number of inputs (None: len(inputs))

    def __post_init__(self) -> None:
        if self.layers is None:
            object.__setattr__(self, "layers", len(self.inputs))

    def to_properties(self) -> dict[str, Any]:
        return {
            KIND: self.KIND,
            INPUTS: list(self.inputs),
            FRAME: self.frame,
            FRAME_WKT: self.frame_wkt,
            LAYERS: self.layers,
            BANDS: _list(self.bands),
        }

    @classmethod
    def from_properties(cls, props: Mapping[str, Any], what: str = "the item") -> CompileRecord:
        _check_kind(props, cls.KIND, what)
        return cls(inputs=_tuple(props.get(INPUTS)), bands=_opt_tuple(props.get(BANDS)), frame=props.get(FRAME),
                   frame_wkt=props.get(FRAME_WKT), layers=props.get(LAYERS))

    @classmethod
    def from_item(cls, item: Any) -> CompileRecord:
        return cls.from_properties(_props(item), getattr(item, "id", "the item"))


# -- reduce --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompositeRecord:
    """A reduce result: one process over the layers of a stack (or one image)."""

    KIND: ClassVar[str] = "reduce"

    process: str  #: the reducer's name
    inputs: tuple[str, ...]
    dates: tuple[str, ...]  #: the layers' dates (YYYY-MM-DD)
    bands: tuple[str, ...]  #: the result's bands
    qualities: tuple[float, ...]  #: the layers' qualities
    preserve: str | None = None
    threshold: float | None = None  #: bestof's quality threshold
    layers: int | None = None  #: number of layers reduced (None: len(dates))

    def __post_init__(self) -> None:
        if self.layers is None:
            object.__setattr__(self, "layers", len(self.dates))

    def to_properties(self) -> dict[str, Any]:
        return {
            KIND: self.KIND,
            PROCESS: self.process,
            PRESERVE: self.preserve,
            THRESHOLD: self.threshold,
            INPUTS: list(self.inputs),
            DATES: list(self.dates),
            LAYERS: self.layers,
            BANDS: list(self.bands),
            QUALITIES: list(self.qualities),
        }

    @classmethod
    def from_properties(cls, props: Mapping[str, Any], what: str = "the item") -> CompositeRecord:
        _check_kind(props, cls.KIND, what)
        return cls(process=props[PROCESS], inputs=_tuple(props.get(INPUTS)), dates=_tuple(props.get(DATES)),
                   bands=_tuple(props.get(BANDS)), qualities=_tuple(props.get(QUALITIES)),
                   preserve=props.get(PRESERVE), threshold=props.get(THRESHOLD), layers=props.get(LAYERS))

    @classmethod
    def from_item(cls, item: Any) -> CompositeRecord:
        return cls.from_properties(_props(item), getattr(item, "id", "the item"))


# -- exported file -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Provenance:
    """Where an exported file came from: the product, the working directory, the archive items,
    the chain (file and text), its commands, every product's command (lineage), the package."""

    product: str
    working_directory: str
    archive_items: tuple[str, ...]
    chain: str
    chain_text: str | None
    commands: tuple[dict, ...]  #: {"command", "line", "parameters"} of every command of the chain
    lineage: tuple[dict, ...]  #: {"product", "kind", "command"}, the product first
    package: str
    exported: str  #: ISO time of the export

    def to_dict(self) -> dict[str, Any]:
        return {"product": self.product, "working_directory": self.working_directory,
                "archive_items": list(self.archive_items), "chain": self.chain, "chain_text": self.chain_text,
                "commands": list(self.commands), "lineage": list(self.lineage), "package": self.package,
                "exported": self.exported}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Provenance:
        return cls(product=d["product"], working_directory=d["working_directory"],
                   archive_items=_tuple(d.get("archive_items")), chain=d["chain"], chain_text=d.get("chain_text"),
                   commands=_tuple(d.get("commands")), lineage=_tuple(d.get("lineage")), package=d["package"],
                   exported=d["exported"])


@dataclass(frozen=True)
class ExportRecord:
    """What an exported file's item adds to its product's properties: the provenance, the
    export's fingerprint and the file's (size, modification time in ns) when it was written —
    together they say whether the file is still the one this export wrote."""

    provenance: Provenance
    fingerprint: str
    file: tuple[int | str, int | str] | None = None  #: (size, "mtime_ns"), see file_stamp

    def to_properties(self) -> dict[str, Any]:
        return {PROVENANCE: self.provenance.to_dict(), FINGERPRINT: self.fingerprint, FILE: _list(self.file)}

    @classmethod
    def from_properties(cls, props: Mapping[str, Any], what: str = "the item") -> ExportRecord:
        if PROVENANCE not in props:
            raise RecordError(f"{what} is not the item of an exported file (no {PROVENANCE})")
        return cls(Provenance.from_dict(props[PROVENANCE]), props[FINGERPRINT], _opt_tuple(props.get(FILE)))

    @classmethod
    def from_item(cls, item: Any) -> ExportRecord:
        return cls.from_properties(_props(item), getattr(item, "id", "the item"))


ProductRecord = ImportRecord | CompileRecord | CompositeRecord
#: kind → record class: adding a product kind is one record class and one entry here
RECORDS: dict[str, type[ImportRecord] | type[CompileRecord] | type[CompositeRecord]] = {
    r.KIND: r for r in (ImportRecord, CompileRecord, CompositeRecord)
}


def record_of(item: Any) -> ProductRecord:
    """The record of a product item, by its kind (RecordError for an item that is no product)."""
    props = _props(item)
    cls = RECORDS.get(props.get(KIND))  # type: ignore[arg-type]
    if cls is None:
        raise RecordError(f"{getattr(item, 'id', 'the item')} is not a product (kind {props.get(KIND)!r})")
    return cls.from_properties(props, getattr(item, "id", "the item"))


__all__ = ["ARCHIVE", "COMMAND", "FINGERPRINT", "KIND", "RECORDS", "CompileRecord", "CompositeRecord", "ExportRecord",
           "ImportRecord", "Provenance", "RecordError", "record_of"]
