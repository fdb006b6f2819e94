"""Which asset of an item says which pixels are usable, and how it is read — as lookup tables.

Landsat C2 L2 has the QA_PIXEL bit field (rules in `archives.qa`), Sentinel-2 L2A the scene
classification SCL (classes in `archives.sentinel2`). Each rule is turned once into a table over
every code the band can hold (65,536 uint16 values): True = usable. The import's quality count
and the fused pixel kernel both index the same table, so the two can never disagree.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import pystac

from ..errors import InputError
from ..archives import qa as Q
from ..archives.sentinel2 import scl_fill, scl_valid

#: every value a uint16 quality band can hold
ALL_CODES = np.arange(65536, dtype=np.uint16)

#: the provider's definition: (all codes, rule or None for fill-only) → usable, vectorised numpy
Definition = Callable[[np.ndarray, "str | None"], np.ndarray]


@dataclass(frozen=True)
class QualityBand:
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


@lru_cache(maxsize=None)
def _table(band: QualityBand, rule: str | None) -> np.ndarray:
    table = np.ascontiguousarray(band.definition(ALL_CODES, rule), dtype=np.bool_)
    if table.shape != ALL_CODES.shape:
        raise ValueError(f"the {band.asset} rule {rule!r} gives {table.shape} values for {ALL_CODES.shape} codes")
    if table[band.fill_value]:
        raise ValueError(f"the {band.asset} rule {rule!r} calls its own fill value {band.fill_value} usable")
    table.setflags(write=False)
    return table


def _qa_pixel(codes: np.ndarray, rule: str | None) -> np.ndarray:
    mask_rule = Q.MaskRule(rule or "flags")
    return ~mask_rule.fill(codes) if rule is None else mask_rule.valid(codes)


def _scl(codes: np.ndarray, rule: str | None) -> np.ndarray:
    # SCL is a byte: values above 255 never occur in a real band; treat them as fill
    inside = codes < 256
    return inside & (~scl_fill(codes) if rule is None else scl_valid(codes))


QA_PIXEL = QualityBand("qa_pixel", Q.QA_FILL_VALUE, Q.RULES, _qa_pixel)
SCL = QualityBand("scl", 0, Q.RULES, _scl)  # either rule name reads the SCL classes (one rule)


def quality_band(item: pystac.Item) -> QualityBand:
    if "qa_pixel" in item.assets:
        return QA_PIXEL
    if "scl" in item.assets:
        return SCL
    raise InputError(f"{item.id} has no quality band (qa_pixel or scl): cannot mask clouds or count quality")
