"""Reflectance as scaled 16-bit integers (as FORCE and USGS store it): value = DN · scale + offset.

Half the bytes of float32 to compress, write and read. Readers calibrate it back from the file's
band scale/offset (GDAL, rasterio, rioxarray `mask_and_scale`) or from the STAC item's
`raster:bands` (stackstac `rescale=True`; odc-stac users multiply by the item's scale and add its
offset, as for Landsat Collection 2)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: accepted `format` words → numpy type of the file ("float32" keeps the data as it is)
FORMATS = ("float32", "int16")


@dataclass(frozen=True)
class Scaling:
    """How float values become integers: DN = round((value − offset) / scale); NaN → nodata.

    Values beyond the type's range are clipped to it; a value that would round to `nodata` is
    moved one step towards zero, so it never reads back as missing (reflectance, −0.2 … 1.6 at the
    default scale, never gets near either)."""

    scale: float = 1e-4
    offset: float = 0.0
    nodata: int = -9999
    dtype: str = "int16"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale = {self.scale} must be a number greater than 0 (e.g. 0.0001)")
        if not math.isfinite(self.offset):
            raise ValueError(f"offset = {self.offset} must be a finite number")
        info = np.iinfo(self.dtype)
        if not info.min <= self.nodata <= info.max:
            raise ValueError(f"nodata = {self.nodata} does not fit {self.dtype} ({info.min} … {info.max})")

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    def encode(self, block: np.ndarray) -> np.ndarray:
        """Float values → integers (same shape), NaN and ±inf → nodata. In place on one float64
        temporary (a block of 6 × 1024² is 48 MB): each further temporary cost a pass of memory."""
        info = np.iinfo(self.dtype)
        block = np.asarray(block)
        missing = ~np.isfinite(block)
        dn = np.subtract(block, self.offset, dtype=np.float64)
        dn /= self.scale
        np.rint(dn, out=dn)
        np.clip(dn, info.min, info.max, out=dn)
        # a real value that lands on the nodata code: one step towards zero (never missing)
        hit = dn == self.nodata
        if hit.any():
            dn[hit] += 1 if self.nodata < 0 else -1
        dn[missing] = self.nodata
        return dn.astype(self.dtype)

    def decode(self, dn: np.ndarray) -> np.ndarray:
        """Integers → float32 values, nodata → NaN (what a reader's calibration gives)."""
        dn = np.asarray(dn)
        out = (dn.astype(np.float64) * self.scale + self.offset).astype(np.float32)
        out[dn == self.nodata] = np.nan
        return out


class ScaledSink:
    """Block sink that encodes float blocks with `scaling` before they reach `sink` (in the writing
    process, so it works for every kind of source array: numpy, dask, spatial parts)."""

    def __init__(self, sink, scaling: Scaling):
        self.sink, self.scaling = sink, scaling

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        self.sink[key] = self.scaling.encode(value)
