"""A collection profile described as data: a STAC-API-only collection needs no code.

A collection that exists only in a STAC API (no archives to open) is a
:class:`~.base.CollectionProfile` alone: which collection ids and items are its own, its bands
(asset key, common name, scale), which asset is its quality band and which of its codes are
usable, which keys are auxiliary, and how tiles of one acquisition are keyed and named.
:class:`Profile` holds exactly that as values and answers every profile member from them;
``Profile.from_dict`` reads the same from JSON-like data. Register one with
``imalys_stac.registry.register_provider(profile.name, profile)``; ``import stac = <url>`` then
reads its items with the same rules as an archive's.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..archives.bands import BandInfo
from .base import ItemLike, QualityBand, date_key, generic_product_name, item_parts


@dataclass(frozen=True)
class ClassRule:
    """A classification quality band read by lists of codes: ``fill`` is no data; a code is usable
    under a rule if it is in that rule's list (every rule name the chain's ``rule`` may give)."""

    fill: int
    usable: Mapping[str, tuple[int, ...]]

    def __call__(self, codes: np.ndarray, rule: str | None) -> np.ndarray:
        if rule is None:
            return codes != self.fill
        return np.isin(codes, np.asarray(self.usable[rule], dtype=np.int64))

    def __hash__(self) -> int:  # QualityBand's tables are cached by band: the rule must hash
        return hash((self.fill, tuple(sorted((k, tuple(v)) for k, v in self.usable.items()))))


@dataclass(frozen=True, eq=False)
class Profile:
    """A collection profile as plain values (see the module text). Every member of
    :class:`~.base.CollectionProfile` is answered from these fields."""

    name: str
    collections: tuple[str, ...]
    #: the bands its items carry, by asset key (``BandInfo.key``; ``suffix`` is another name the
    #: chain's ``bands = …`` may use, e.g. the band id ``B04`` of an asset keyed ``red``)
    bands: tuple[BandInfo, ...]
    #: the quality band: asset key, fill value and usable codes per rule name
    quality_asset: str
    quality_fill: int
    quality_usable: Mapping[str, tuple[int, ...]]
    #: asset keys (lower-case prefixes) that are never default bands, besides the quality asset
    auxiliary: tuple[str, ...] = ()
    #: asset keys other APIs use for the same collection → its own
    api_aliases: Mapping[str, str] = field(default_factory=dict)
    #: item properties an imported product inherits from its first source item
    product_properties: tuple[str, ...] = ()
    #: items of other collection ids are its own if they carry this property (None: ids decide)
    marker_property: str | None = None
    #: what keys one acquisition: sensor (property, else the id's first `_` part), orbit, and the
    #: tile code in the product's name
    sensor_property: str = "platform"
    orbit_property: str = "sat:relative_orbit"
    tile_property: str = "grid:code"

    def __post_init__(self) -> None:
        rule = ClassRule(int(self.quality_fill), {k: tuple(int(c) for c in v) for k, v in self.quality_usable.items()})
        band = QualityBand(self.quality_asset, int(self.quality_fill), tuple(self.quality_usable), rule)
        object.__setattr__(self, "quality", band)

    quality: QualityBand = field(init=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """A profile from JSON-like data: the field names above; ``bands`` a list of objects with
        BandInfo's fields (``key`` and ``title`` at least; ``suffix`` defaults to the key)."""
        d = dict(data)
        bands = tuple(BandInfo(**{"suffix": b["key"], **{k: (tuple(v) if isinstance(v, list) else v)
                                                         for k, v in b.items()}}) for b in d.pop("bands"))
        tuples = {k: tuple(d[k]) for k in ("collections", "auxiliary", "product_properties") if k in d}
        usable = {k: tuple(v) for k, v in d.pop("quality_usable").items()}
        return cls(bands=bands, quality_usable=usable, **{**d, **tuples})

    # ----------------------------------------------------------------- CollectionProfile members
    def item_assets(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for b in self.bands:
            entry: dict[str, Any] = {"title": b.title, "roles": list(b.roles)}
            if b.common_name or b.wavelength:
                entry["eo:bands"] = [{k: v for k, v in (("name", b.suffix), ("common_name", b.common_name),
                                                        ("center_wavelength", b.wavelength)) if v is not None}]
            if b.scale is not None:
                entry["raster:bands"] = [{"scale": b.scale, "offset": b.offset or 0.0}]
            out[b.key] = entry
        return out

    def owns(self, item: ItemLike) -> bool:
        _, collection, p, _ = item_parts(item)
        return collection in self.collections or (self.marker_property is not None and self.marker_property in p)

    def band_table(self) -> dict[str, BandInfo]:
        out: dict[str, BandInfo] = {}
        for b in self.bands:
            for name in (b.key, b.suffix, b.common_name):
                if name:
                    out.setdefault(name, b)
        return out

    def is_auxiliary(self, key: str) -> bool:
        low = key.lower()
        return low == self.quality_asset.lower() or low.startswith(tuple(a.lower() for a in self.auxiliary))

    def scene_key(self, item: ItemLike) -> tuple[str, str, str]:
        iid, _, p, _ = item_parts(item)
        sensor = str(p.get(self.sensor_property) or iid.split("_")[0])
        return sensor, str(p.get(self.orbit_property) or ""), date_key(item)

    def product_name(self, items: Sequence[ItemLike]) -> str:
        """``<sensor>_<tile>_<date>``; the tile from ``tile_property`` (its part after a ``-``)."""
        sensor, _, date = self.scene_key(items[0])
        _, _, p, _ = item_parts(items[0])
        tile = str(p.get(self.tile_property, "")).split("-", 1)[-1]
        if not tile:
            return generic_product_name(items, sensor, date)
        return f"{sensor}_{tile}_{date}"


__all__ = ["ClassRule", "Profile"]
