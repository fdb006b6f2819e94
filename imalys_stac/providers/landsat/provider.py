"""The Landsat Collection 2 Level-2 provider: USGS ``.tar`` archives and the ``landsat-c2-l2``
COG collections of STAC APIs (earth-search and Planetary Computer use the same asset keys)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...archives.bands import BandInfo
from ..base import ContainerFormat, ItemFields, ItemLike, QualityBand, SceneMetadata, date_key, generic_product_name, item_parts
from ..common import owns_item
from . import qa as Q
from .archive import LandsatMetadata, open_archive
from .bands import SENSORS
from .items import COLLECTION, item_assets, item_fields


def _qa_pixel(codes: np.ndarray, rule: str | None) -> np.ndarray:
    mask_rule = Q.MaskRule(rule or "flags")
    return ~mask_rule.fill(codes) if rule is None else mask_rule.valid(codes)


#: QA_PIXEL read with the ``flags`` or ``confidence`` rule (see :mod:`.qa`)
QA_PIXEL = QualityBand("qa_pixel", Q.QA_FILL_VALUE, Q.RULES, _qa_pixel)
#: asset keys of QA and atmosphere rasters (never default bands)
AUX_PREFIXES = ("qa", "atmos", "cloud_qa", "aerosol")
_SENSOR_IDS = ("LC", "LE", "LT", "LO")


class LandsatProvider:
    name = "landsat"
    collections = (COLLECTION,)
    container = ContainerFormat(
        "Landsat 4/5/7/8/9 C2 Level-2 .tar as shipped by USGS",
        (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"),
        ((257, b"ustar"), (0, b"\x1f\x8b"), (0, b"BZh"), (0, b"\xfd7zXZ")),
    )
    quality = QA_PIXEL
    #: earth-search and Planetary Computer ``landsat-c2-l2`` items use these very keys
    api_aliases: Mapping[str, str] = {}
    product_properties = ("landsat:wrs_path", "landsat:wrs_row")

    def open(self, path: Path) -> SceneMetadata:
        return open_archive(path)

    def item_fields(self, meta: SceneMetadata) -> ItemFields:
        assert isinstance(meta, LandsatMetadata)
        return item_fields(meta)

    def item_assets(self) -> dict[str, Any]:
        return item_assets()

    def owns(self, item: ItemLike) -> bool:
        return owns_item(item, self.collections, "landsat:wrs_path", "landsat", _SENSOR_IDS)

    def band_table(self) -> dict[str, BandInfo]:
        out: dict[str, BandInfo] = {}
        for _p, _i, table in SENSORS.values():
            for b in table:
                for name in (b.key, b.suffix, b.common_name):
                    if name:
                        out.setdefault(name, b)
        return out

    def is_auxiliary(self, key: str) -> bool:
        return key.lower().startswith(AUX_PREFIXES)

    def scene_key(self, item: ItemLike) -> tuple[str, str, str]:
        iid, _, p, _ = item_parts(item)
        sensor = iid[:4] if iid[:2] in _SENSOR_IDS else str(p.get("platform", "unknown"))  # LC08
        orbit = str(p.get("landsat:wrs_path") or p.get("sat:relative_orbit") or "")
        return sensor, orbit, date_key(item)

    def product_name(self, items: Sequence[ItemLike]) -> str:
        """``<sensor>_<path><first row>_<date>``: tiles of one path and day merge into one image."""
        sensor, _, date = self.scene_key(items[0])
        _, _, p, _ = item_parts(items[0])
        if "landsat:wrs_path" not in p:
            return generic_product_name(items, sensor, date)
        rows = sorted(str(item_parts(it)[2].get("landsat:wrs_row", "")).zfill(3) for it in items)
        return f"{sensor}_{str(p['landsat:wrs_path']).zfill(3)}{rows[0]}_{date}"


PROVIDER = LandsatProvider()
