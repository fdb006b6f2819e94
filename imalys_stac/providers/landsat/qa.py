"""Landsat Collection 2 QA_PIXEL bit meanings and the two disturbance rules.

One place for the bits, used by the synthetic archive writer (to draw them), the STAC items (to
describe them with the classification extension) and the cube masking (to read them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Single-bit flags (USGS Landsat 8-9 C2 L2 Science Product Guide, table 6-3; 4-7 identical
# except that cirrus (bit 2) and cirrus confidence (14-15) are unused there).
FILL = 0
DILATED_CLOUD = 1
CIRRUS = 2
CLOUD = 3
CLOUD_SHADOW = 4
SNOW = 5
CLEAR = 6
WATER = 7

# Two-bit confidence pairs: (offset, name). Values 0 none, 1 low, 2 medium, 3 high.
CLOUD_CONFIDENCE = 8
SHADOW_CONFIDENCE = 10
SNOW_CONFIDENCE = 12
CIRRUS_CONFIDENCE = 14

CONF_NONE, CONF_LOW, CONF_MEDIUM, CONF_HIGH = 0, 1, 2, 3

FLAG_BITS = {
    FILL: ("fill", "Fill (outside the scene)"),
    DILATED_CLOUD: ("dilated_cloud", "Dilated cloud"),
    CIRRUS: ("cirrus", "Cirrus (high confidence; Landsat 8-9 only)"),
    CLOUD: ("cloud", "Cloud (high confidence)"),
    CLOUD_SHADOW: ("cloud_shadow", "Cloud shadow (high confidence)"),
    SNOW: ("snow", "Snow / ice (high confidence)"),
    CLEAR: ("clear", "Clear: neither cloud nor dilated cloud (shadow may still be set)"),
    WATER: ("water", "Water"),
}
CONFIDENCE_PAIRS = {
    CLOUD_CONFIDENCE: ("cloud_confidence", "Cloud confidence"),
    SHADOW_CONFIDENCE: ("cloud_shadow_confidence", "Cloud shadow confidence"),
    SNOW_CONFIDENCE: ("snow_ice_confidence", "Snow / ice confidence"),
    CIRRUS_CONFIDENCE: ("cirrus_confidence", "Cirrus confidence (Landsat 8-9 only)"),
}
CONFIDENCE_NAMES = ("none", "low", "medium", "high")

QA_FILL_VALUE = 1  # QA_PIXEL nodata: only the fill bit set


def bit(b: int) -> int:
    return 1 << b


#: flags rule (default): dilated cloud, cirrus, cloud, cloud shadow flags mark a pixel as disturbed
FLAGS_DISTURBED = bit(DILATED_CLOUD) | bit(CIRRUS) | bit(CLOUD) | bit(CLOUD_SHADOW)


@dataclass(frozen=True)
class MaskRule:
    """How a QA_PIXEL value is read: which pixels are fill and which are disturbed.

    ``flags`` (default, stricter): any of the single-bit flags dilated cloud (1), cirrus (2),
    cloud (3), cloud shadow (4). ``confidence`` (the original Imalys reading): a high (``11``)
    cloud (8-9), cloud-shadow (10-11) or cirrus (14-15) confidence pair. Snow and water count
    as clear under both. Bit 6 ("clear") is never used alone: USGS sets it on shadow pixels.
    """

    name: str = "flags"

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise ValueError(f"unknown QA rule {self.name!r}; accepted: {', '.join(RULES)}")

    def fill(self, qa: np.ndarray) -> np.ndarray:
        """True where the pixel is outside the scene (fill bit) or has no QA value (NaN)."""
        qa = np.asarray(qa)
        if qa.dtype.kind == "f":
            nan = np.isnan(qa)
            q = np.where(nan, QA_FILL_VALUE, qa).astype(np.uint16)
            return nan | ((q & bit(FILL)) != 0)
        return (qa.astype(np.uint16) & bit(FILL)) != 0

    def disturbed(self, qa: np.ndarray) -> np.ndarray:
        """True where a non-fill pixel is cloud, cloud shadow, cirrus or dilated cloud."""
        qa = np.asarray(qa)
        if qa.dtype.kind == "f":
            q = np.where(np.isnan(qa), 0, qa).astype(np.uint16)
        else:
            q = qa.astype(np.uint16)
        if self.name == "flags":
            hit = (q & FLAGS_DISTURBED) != 0
        else:
            hit = np.zeros(q.shape, dtype=bool)
            for offset in (CLOUD_CONFIDENCE, SHADOW_CONFIDENCE, CIRRUS_CONFIDENCE):
                hit |= ((q >> offset) & 0b11) == CONF_HIGH
        return hit & ~self.fill(qa)

    def valid(self, qa: np.ndarray) -> np.ndarray:
        """True where the pixel is neither fill nor disturbed."""
        return ~self.fill(qa) & ~self.disturbed(qa)


RULES = ("flags", "confidence")


def encode(
    *,
    fill: bool = False,
    dilated_cloud: bool = False,
    cirrus: bool = False,
    cloud: bool = False,
    cloud_shadow: bool = False,
    snow: bool = False,
    water: bool = False,
    cloud_conf: int = CONF_LOW,
    shadow_conf: int = CONF_LOW,
    snow_conf: int = CONF_LOW,
    cirrus_conf: int = CONF_LOW,
    landsat8: bool = True,
) -> int:
    """One QA_PIXEL value with USGS's conventions (scalar helper; the synthetic writer
    vectorises the same rules). ``clear`` is derived as USGS derives it: set unless cloud or
    dilated cloud is set, so a shadow pixel carries the clear bit (e.g. 23888)."""
    if fill:
        return QA_FILL_VALUE
    v = 0
    for flag, b in (
        (dilated_cloud, DILATED_CLOUD),
        (cirrus and landsat8, CIRRUS),
        (cloud, CLOUD),
        (cloud_shadow, CLOUD_SHADOW),
        (snow, SNOW),
        (water, WATER),
    ):
        if flag:
            v |= bit(b)
    if not (cloud or dilated_cloud):
        v |= bit(CLEAR)
    v |= cloud_conf << CLOUD_CONFIDENCE
    v |= shadow_conf << SHADOW_CONFIDENCE
    v |= snow_conf << SNOW_CONFIDENCE
    if landsat8:
        v |= cirrus_conf << CIRRUS_CONFIDENCE
    return v
