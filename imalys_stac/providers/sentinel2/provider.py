"""The Sentinel-2 Level-2A provider: ESA's SAFE ``.zip`` products and the ``sentinel-2-l2a`` COG
collections of STAC APIs (earth-search: keys ``red``, ``nir08``, ``scl`` as ours, plus ``*-jp2``
duplicates; Planetary Computer: ``B04``, ``B8A``, ``SCL`` — renamed to ours on reading)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...archives.bands import BandInfo
from ..base import ContainerFormat, ItemFields, ItemLike, QualityBand, SceneMetadata, date_key, generic_product_name, item_parts
from ..common import owns_item
from .archive import COLLECTION, S2_BANDS, SCL_BAND, Sentinel2Metadata, open_sentinel2_archive, scl_fill, scl_valid
from .items import item_assets, item_fields

#: rule names accepted for the chain's ``rule`` parameter (either reads the SCL classes: one rule)
RULES = ("flags", "confidence")


def _scl(codes: np.ndarray, rule: str | None) -> np.ndarray:
    # SCL is a byte: values above 255 never occur in a real band; treat them as fill
    inside = codes < 256
    return inside & (~scl_fill(codes) if rule is None else scl_valid(codes))


#: the scene classification read as fill (class 0) and disturbed (see ``archive.SCL_DISTURBED``)
SCL = QualityBand("scl", 0, RULES, _scl)
#: asset keys of the scene classification and atmosphere rasters (never default bands)
AUX_PREFIXES = ("scl", "aot", "wvp")
#: Planetary Computer's asset keys (the band names) → ours
PC_ALIASES = {**{b.suffix: b.key for b in S2_BANDS}, "SCL": "scl", "AOT": "aot", "WVP": "wvp"}


class Sentinel2Provider:
    name = "sentinel-2"
    #: ours and ESA's archives; earth-search's v1 and Copernicus' collection ids; earth-search's v0 COGs
    collections = (COLLECTION, "sentinel-2-c1-l2a", "sentinel-s2-l2a-cogs")
    container = ContainerFormat("Sentinel-2 L2A SAFE .zip as distributed by ESA/Copernicus", (".zip",),
                                ((0, b"PK\x03\x04"),))
    quality = SCL
    api_aliases: Mapping[str, str] = PC_ALIASES
    product_properties: tuple[str, ...] = ()

    def open(self, path: Path) -> SceneMetadata:
        return open_sentinel2_archive(path)

    def item_fields(self, meta: SceneMetadata) -> ItemFields:
        assert isinstance(meta, Sentinel2Metadata)
        return item_fields(meta)

    def item_assets(self) -> dict[str, Any]:
        return item_assets()

    def owns(self, item: ItemLike) -> bool:
        return owns_item(item, self.collections, "s2:mgrs_tile", "sentinel-2", ("S2",))

    def band_table(self) -> dict[str, BandInfo]:
        out: dict[str, BandInfo] = {}
        for b in (*S2_BANDS, SCL_BAND):
            for name in (b.key, b.suffix):
                out.setdefault(name, b)
        return out

    def is_auxiliary(self, key: str) -> bool:
        low = key.lower()
        # earth-search lists each band twice: the COG ("red") and the original JPEG 2000 ("red-jp2")
        return low.startswith(AUX_PREFIXES) or low.endswith("-jp2")

    def scene_key(self, item: ItemLike) -> tuple[str, str, str]:
        iid, _, p, _ = item_parts(item)
        sensor = iid[:3] if iid.startswith("S2") else str(p.get("platform", "unknown"))  # S2A
        return sensor, str(p.get("sat:relative_orbit") or ""), date_key(item)

    def product_name(self, items: Sequence[ItemLike]) -> str:
        """``<mission>_<MGRS tile>_<date>``."""
        sensor, _, date = self.scene_key(items[0])
        _, _, p, _ = item_parts(items[0])
        tile = p.get("s2:mgrs_tile") or str(p.get("grid:code", "")).replace("MGRS-", "")
        if not tile:
            return generic_product_name(items, sensor, date)
        return f"{sensor}_{tile}_{date}"


PROVIDER = Sentinel2Provider()
