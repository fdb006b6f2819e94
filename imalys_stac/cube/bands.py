"""Which asset of an item a user's band name means, and how its DNs are calibrated."""
from __future__ import annotations

from dataclasses import dataclass

import pystac

from ..errors import InputError


class BandError(InputError):
    """A requested band that an item does not have."""


def _eo_bands(asset: pystac.Asset) -> list[dict]:
    return asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []


def _raster_bands(asset: pystac.Asset) -> list[dict]:
    return asset.extra_fields.get("raster:bands") or asset.extra_fields.get("bands") or []


_RASTER_TYPES = ("tiff", "jp2")


def image_assets(item: pystac.Item) -> dict[str, pystac.Asset]:
    """Raster assets (GeoTIFF/COG or JPEG 2000)."""
    return {k: a for k, a in item.assets.items() if a.media_type and any(t in a.media_type.lower() for t in _RASTER_TYPES)}


def resolve_band(item: pystac.Item, label: str) -> str:
    """Asset key for a band given as provider suffix (`_B2`, `B2`, `SR_B2`), asset key (`red`) or
    common name (`nir08`)."""
    label = label.strip()
    assets = image_assets(item)
    if label in assets:
        return label
    low = label.lower()
    for key in assets:
        if key.lower() == low:
            return key
    suffix = label.upper().lstrip("_")
    for key, asset in assets.items():
        names = [str(b.get("name", "")).upper() for b in _eo_bands(asset)]
        member = asset.href.rsplit("/", 1)[-1].upper()
        if any(n == suffix or n.endswith("_" + suffix) for n in names) or member.endswith(f"_{suffix}.TIF"):
            return key
    for key, asset in assets.items():
        if any(str(b.get("common_name", "")).lower() == low for b in _eo_bands(asset)):
            return key
    found = _provider_band(item, label, assets)
    if found is not None:
        return found

    def describe(key: str, asset: pystac.Asset) -> str:
        names = "/".join(str(b["name"]) for b in _eo_bands(asset) if b.get("name"))
        return f"{key} ({names})" if names else key

    available = ", ".join(describe(k, a) for k, a in assets.items())
    raise BandError(f"band {label!r} is not in {item.id}; it has: {available}")


def _provider_band(item: pystac.Item, label: str, assets: dict[str, pystac.Asset]) -> str | None:
    """The asset the item's provider knows `label` as (a member suffix such as `B04` or `SR_B4`, or
    `_B4`): API items whose assets carry no band names (earth-search: `red`) still resolve."""
    from ..registry import provider_for_item

    provider = provider_for_item(item)
    if provider is None:
        return None
    table = provider.band_table()
    suffix = label.strip().lstrip("_")
    info = table.get(suffix) or table.get(suffix.upper())
    if info is None:
        hits = {b.key for name, b in table.items() if name.upper().endswith("_" + suffix.upper())}
        info = next((b for b in table.values() if b.key in hits), None) if len(hits) == 1 else None
    return info.key if info is not None and info.key in assets else None


@dataclass(frozen=True)
class Calibration:
    """value = DN · factor + offset, per band."""

    factors: tuple[float, ...]
    offsets: tuple[float, ...]
    source: str  # "given" or "auto" (from raster:bands)

    @classmethod
    def build(cls, item: pystac.Item, keys: list[str], factor: float | str | None, offset: float | None) -> Calibration:
        if factor == "auto":
            fs, os_ = [], []
            for key in keys:
                rb = _raster_bands(item.assets[key])
                scale = rb[0].get("scale") if rb else None
                off = rb[0].get("offset") if rb else None
                if scale is None:
                    raise BandError(
                        f"factor = auto: asset {key!r} of {item.id} has no raster:bands scale; give factor and offset"
                    )
                fs.append(float(scale))
                os_.append(float(off or 0.0))
            return cls(tuple(fs), tuple(os_), "auto")
        f = 1.0 if factor is None else float(factor)
        o = 0.0 if offset is None else float(offset)
        return cls(tuple([f] * len(keys)), tuple([o] * len(keys)), "given")
