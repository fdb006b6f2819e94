"""The provider interface: what generic code may ask of a product line, in two halves.

* :class:`ArchiveFormat` — reading files: ``container``, ``open``, ``item_fields``;
* :class:`CollectionProfile` — what a collection means: keys, quality rule, bands, names.

A :class:`Provider` has both (Landsat, Sentinel-2 archives); a collection that exists only in a
STAC API is a profile alone, which plain data can describe (:mod:`.profile`). In detail, a
provider answers, for its own items only:

* **containers** — which files it reads (:class:`ContainerFormat`: file name endings and magic
  bytes) and how one is opened in place into :class:`SceneMetadata`;
* **items** — the item fields built from that metadata (:class:`ItemFields`: properties, assets,
  extensions; the generic code adds id, geometry, bbox and links) and the collection's
  ``item_assets``;
* **ownership** — which items are its own, also items from a STAC API (collection id, properties);
  the asset keys of the public COG collections (earth-search, Planetary Computer) mapped to its
  own (:attr:`Provider.api_aliases`), so an API item reads with the same rules as an archive's;
* **quality** — its quality band as a :class:`QualityBand` (asset key, fill value, rule names, the
  vectorised rule definition turned once into a lookup table over all 65,536 codes);
* **bands** — its band table (:class:`~imalys_stac.archives.bands.BandInfo` by asset key, common
  name and member suffix) and which asset keys are auxiliary (no default band);
* **planning** — how acquisitions are keyed (tiles of one sensor, orbit and day merge) and named.

The providers live in ``imalys_stac.providers.<name>`` and are registered in
``imalys_stac.registry`` (``register_provider``, or an ``imalys_stac.providers`` entry point); generic code asks the registry (``provider_for_path``,
``provider_for_item``), never a concrete provider. See ``docs/extending.md``.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..archives.bands import BandInfo
from ..archives.container import MemberGrid

# ------------------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class ContainerFormat:
    """How a provider's containers are recognised: by file name ending (the longest matching
    ending among all providers wins), else by magic bytes at an offset of the file's head."""

    description: str  # for messages: "Landsat 4/5/7/8/9 C2 Level-2 .tar as shipped by USGS"
    endings: tuple[str, ...]  # lower-case file name endings (".tar", ".tar.gz")
    magic: tuple[tuple[int, bytes], ...] = ()  # (offset, bytes) of the file's head

    def name_match(self, name: str) -> int:
        """Length of the longest ending ``name`` has (0: none)."""
        low = name.lower()
        return max((len(e) for e in self.endings if low.endswith(e)), default=0)

    def head_match(self, head: bytes) -> bool:
        return any(head[off:off + len(m)] == m for off, m in self.magic)


@dataclass(frozen=True)
class SceneMetadata:
    """What every provider's archive metadata holds, with the same meaning for all of them.

    Provider-specific fields (WRS path/row, MGRS tile, processing baseline, …) live in each
    provider's subclass; generic code reads only these.
    """

    #: registry name of the provider that reads these (its ``register_provider`` name)
    provider_name: ClassVar[str] = ""

    archive: Path  # absolute path of the container
    product_id: str  # the item id
    platform: str  # "landsat-8", "sentinel-2a"
    instruments: tuple[str, ...]
    acquired: date  # acquisition date (UTC)
    datetime: datetime  # scene centre (or sensing start), tz-aware UTC
    cloud_cover: float  # percent
    epsg: int
    members: dict[str, str]  # member key ("SR_B2", "B02", "MTL.txt") -> member name in the container
    bands: tuple[BandInfo, ...]  # raster members present, calibrated
    grids: dict[str, MemberGrid]  # member key -> grid of that raster member
    footprint: Any  # shapely Polygon, WGS84, counter-clockwise
    sun_azimuth: float | None
    sun_elevation: float | None

    def href(self, suffix: str) -> str:
        """GDAL path of a member, read in place."""
        raise NotImplementedError

    @property
    def footprint_geojson(self) -> dict[str, Any]:
        from shapely.geometry import mapping

        return mapping(self.footprint)


@dataclass(frozen=True)
class ItemFields:
    """A provider's part of an archive's item: properties, assets and extension schema URLs
    (the generic code adds id, collection, geometry, bbox, ``proj:centroid`` and links)."""

    properties: dict[str, Any]
    assets: dict[str, Any]
    extensions: list[str] = field(default_factory=list)


#: every value a uint16 quality band can hold
ALL_CODES = np.arange(65536, dtype=np.uint16)

#: a provider's rule definition: (all codes, rule or None for fill-only) → usable, vectorised numpy
Definition = Callable[[np.ndarray, "str | None"], np.ndarray]


@dataclass(frozen=True)
class QualityBand:
    """Which asset of an item says which pixels are usable, and how it is read — as lookup tables.

    Each rule is turned once into a table over every code the band can hold (65,536 uint16
    values): True = usable. The import's quality count and the fused pixel kernel both index the
    same table, so the two can never disagree.
    """

    asset: str  # asset key of the quality band
    fill_value: int  # what the band holds where there is no data (also used outside the raster)
    rules: tuple[str, ...]  # accepted rule names (None = fill only is always accepted)
    definition: Definition  # called once per rule to build its table

    def table(self, rule: str | None) -> np.ndarray:
        """bool[65536]: usable per code under `rule` (None: anything but fill)."""
        if rule is not None and rule not in self.rules:
            raise ValueError(f"unknown rule {rule!r} for {self.asset}; accepted: {', '.join(self.rules)}")
        return _table(self, rule)

    def valid(self, values: np.ndarray, rule: str | None) -> np.ndarray:
        """True where a pixel is usable; NaN (a float cube's "no value") counts as fill."""
        values = np.asarray(values)
        table = self.table(rule)
        if values.dtype.kind == "f":
            nan = np.isnan(values)
            codes = np.where(nan, self.fill_value, values).astype(np.uint16)
            return table[codes] & ~nan
        return table[values.astype(np.uint16, copy=False)]


@cache
def _table(band: QualityBand, rule: str | None) -> np.ndarray:
    table = np.ascontiguousarray(band.definition(ALL_CODES, rule), dtype=np.bool_)
    if table.shape != ALL_CODES.shape:
        raise ValueError(f"the {band.asset} rule {rule!r} gives {table.shape} values for {ALL_CODES.shape} codes")
    if table[band.fill_value]:
        raise ValueError(f"the {band.asset} rule {rule!r} calls its own fill value {band.fill_value} usable")
    table.setflags(write=False)
    return table


# ------------------------------------------------------------------------------------- the protocol
#: what ``owns``/``scene_key``/``product_name`` read of an item: a pystac.Item or an item dict
ItemLike = Any


def item_parts(item: ItemLike) -> tuple[str, str | None, Mapping[str, Any], Mapping[str, Any]]:
    """(id, collection id, properties, assets) of a pystac.Item or an item dict."""
    if isinstance(item, Mapping):
        return str(item.get("id", "")), item.get("collection"), item.get("properties") or {}, item.get("assets") or {}
    return item.id, item.collection_id, item.properties, item.assets


@runtime_checkable
class ArchiveFormat(Protocol):
    """How a product line's containers are read: recognised, opened in place, turned into item
    fields. Only a provider that reads files has one (a STAC-API-only collection has none)."""

    #: how its containers are recognised
    container: ContainerFormat

    def open(self, path: Path) -> SceneMetadata:
        """Read one container in place; raises ``ArchiveError("<file>: <reason>")``."""
        ...

    def item_fields(self, meta: SceneMetadata) -> ItemFields:
        """Properties, assets and extensions of the item of one opened container."""
        ...


@runtime_checkable
class CollectionProfile(Protocol):
    """What a collection means, wherever its items come from (an archive or a STAC API): its keys,
    quality rule, bands and names. Plain data can describe one (:class:`.profile.Profile`)."""

    #: short name ("landsat", "sentinel-2"), the key of its registry line
    name: str
    #: collection ids it owns; the first is the one its archives' items get
    collections: tuple[str, ...]
    #: its quality band and mask rules
    quality: QualityBand
    #: asset keys of public STAC API COG collections → its own keys ("B04" → "red", "SCL" → "scl")
    api_aliases: Mapping[str, str]
    #: item properties an imported product inherits from its first source item
    product_properties: tuple[str, ...]

    def item_assets(self) -> dict[str, Any]:
        """``item_assets`` of its collection (asset key → template)."""
        ...

    def owns(self, item: ItemLike) -> bool:
        """Whether an item (of an archive or a STAC API) is one of its own."""
        ...

    def band_table(self) -> Mapping[str, BandInfo]:
        """Its bands by asset key, member suffix and common name."""
        ...

    def is_auxiliary(self, key: str) -> bool:
        """Whether an asset key is a quality or auxiliary raster (never a default band)."""
        ...

    def scene_key(self, item: ItemLike) -> tuple[str, str, str]:
        """(sensor, orbit, YYYYMMDD): tiles with equal keys form one acquisition."""
        ...

    def product_name(self, items: Sequence[ItemLike]) -> str:
        """Name of the product made of one acquisition's tiles."""
        ...


@runtime_checkable
class Provider(ArchiveFormat, CollectionProfile, Protocol):
    """A product line with files: an archive format and a collection profile in one object.
    Implementations are plain objects (no base class to inherit)."""


#: the members of each half (checked by the tests and by ``registry.register_provider``)
ARCHIVE_MEMBERS = ("container", "open", "item_fields")
PROFILE_MEMBERS = ("name", "collections", "quality", "api_aliases", "product_properties", "item_assets", "owns",
                   "band_table", "is_auxiliary", "scene_key", "product_name")
PROVIDER_MEMBERS = PROFILE_MEMBERS + ARCHIVE_MEMBERS


def has_archive_format(obj: Any) -> bool:
    """Whether a registered provider reads containers (has every archive-format member)."""
    return all(hasattr(obj, m) for m in ARCHIVE_MEMBERS)


def missing_members(obj: Any) -> list[str]:
    """The members a provider object lacks: every profile member, and either all archive-format
    members or none (a profile of a STAC-API-only collection)."""
    missing = [m for m in PROFILE_MEMBERS if not hasattr(obj, m)]
    partial = [m for m in ARCHIVE_MEMBERS if not hasattr(obj, m)]
    if len(partial) < len(ARCHIVE_MEMBERS):
        missing += partial
    return missing


def canonical_assets(assets: Mapping[str, Any], aliases: Mapping[str, str]) -> dict[str, Any]:
    """Assets with their keys renamed by ``aliases`` (a key whose target exists already stays)."""
    out: dict[str, Any] = {}
    for key, asset in assets.items():
        target = aliases.get(key, key)
        if target != key and (target in assets or target in out):
            target = key
        out[target] = asset
    return out


def date_key(item: ItemLike) -> str:
    """YYYYMMDD of an item's datetime (or its start_datetime)."""
    from pystac.utils import str_to_datetime

    _, _, p, _ = item_parts(item)
    when = getattr(item, "datetime", None) if not isinstance(item, Mapping) else None
    if when is None:
        text = p.get("datetime") or p["start_datetime"]
        when = str_to_datetime(text)
    return when.strftime("%Y%m%d")


__all__ = ["ALL_CODES", "ARCHIVE_MEMBERS", "ArchiveFormat", "CollectionProfile", "ContainerFormat", "Definition",
           "ItemFields", "ItemLike", "PROFILE_MEMBERS", "PROVIDER_MEMBERS", "Provider", "QualityBand", "SceneMetadata",
           "canonical_assets", "date_key", "has_archive_format", "item_parts", "missing_members"]


# ------------------------------------------------------------------- planning for items no provider owns
def generic_scene_key(item: ItemLike) -> tuple[str, str, str]:
    """(platform, relative orbit, YYYYMMDD) of an item no provider owns."""
    _, _, p, _ = item_parts(item)
    return str(p.get("platform", "unknown")), str(p.get("sat:relative_orbit") or ""), date_key(item)


def generic_product_name(items: Sequence[ItemLike], sensor: str, date: str) -> str:
    """``<sensor>_<grid code or the id's second part>_<date>``."""
    iid, _, p, _ = item_parts(items[0])
    tile = str(p.get("grid:code", "")).split("-", 1)[-1] or iid.split("_")[1]
    return f"{sensor}_{tile}_{date}"
