"""Which asset of an item says which pixels are usable, and how it is read.

Landsat C2 L2 has the QA_PIXEL bit field (rules in `archives.qa`), Sentinel-2 L2A the scene
classification SCL (classes in `archives.sentinel2`). The cube loader and the import quality
count ask this module instead of knowing either product.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pystac

from ..errors import InputError
from ..archives import qa as Q
from ..archives.sentinel2 import SCL_DISTURBED, scl_fill, scl_valid


@dataclass(frozen=True)
class QualityBand:
    asset: str  # asset key of the quality band
    fill_value: int  # what the band holds where there is no data (also used outside the raster)
    kind: str  # "qa_pixel" or "scl"

    def code(self, rule: str | None) -> int:
        """Rule code for the fused kernel: 0/1/2 Landsat fill-only/flags/confidence, 3/4 SCL classes/fill-only."""
        if self.kind == "scl":
            return 4 if rule is None else 3
        return {None: 0, "flags": 1, "confidence": 2}[rule]

    def valid(self, values: np.ndarray, rule: str | None) -> np.ndarray:
        """True where a pixel is usable (numpy; NaN counts as fill)."""
        if self.kind == "scl":
            return ~scl_fill(values) if rule is None else scl_valid(values)
        mask_rule = Q.MaskRule(rule or "flags")
        return ~mask_rule.fill(values) if rule is None else mask_rule.valid(values)


QA_PIXEL = QualityBand("qa_pixel", Q.QA_FILL_VALUE, "qa_pixel")
SCL = QualityBand("scl", 0, "scl")

#: SCL classes the fused kernel treats as disturbed, as a lookup table over uint16 values < 256
SCL_DISTURBED_TABLE = np.zeros(256, dtype=np.bool_)
SCL_DISTURBED_TABLE[list(SCL_DISTURBED)] = True


def quality_band(item: pystac.Item) -> QualityBand:
    if "qa_pixel" in item.assets:
        return QA_PIXEL
    if "scl" in item.assets:
        return SCL
    raise InputError(f"{item.id} has no quality band (qa_pixel or scl): cannot mask clouds or count quality")
