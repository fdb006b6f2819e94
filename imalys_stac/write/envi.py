"""ENVI labelled format as the original Imalys writes it: `name` (raw, band-sequential) + `name.hdr`."""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import xarray as xr

from .atomic import atomic_path
from .blocks import stream
from .raster import Raster, as_raster

# ENVI "data type" codes
ENVI_TYPES: dict[str, int] = {
    "uint8": 1, "int16": 2, "int32": 3, "float32": 4, "float64": 5, "complex64": 6, "complex128": 9,
    "uint16": 12, "uint32": 13, "int64": 14, "uint64": 15,
}


class _BsqSink:
    """Writes (band, y, x) blocks into a band-sequential little-endian file; rows are contiguous."""

    def __init__(self, fh: BinaryIO, r: Raster, dtype: np.dtype):
        self.fh, self.lines, self.samples, self.dtype = fh, r.height, r.width, dtype

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        b, y, x = key
        block = np.asarray(value, dtype=self.dtype)
        size = self.dtype.itemsize
        for i, band in enumerate(range(b.start, b.stop)):
            if x.start == 0 and x.stop == self.samples:  # whole rows: one contiguous write
                self.fh.seek(((band * self.lines + y.start) * self.samples) * size)
                self.fh.write(np.ascontiguousarray(block[i]).tobytes())
                continue
            for j, row in enumerate(range(y.start, y.stop)):
                self.fh.seek(((band * self.lines + row) * self.samples + x.start) * size)
                self.fh.write(np.ascontiguousarray(block[i, j]).tobytes())


def _num(v: float) -> str:
    return repr(float(v))


def _clean(text: str) -> str:
    """ENVI values sit in {…} lists separated by commas: keep those characters out of names."""
    return str(text).replace("{", "(").replace("}", ")").replace(",", ";").replace("\n", " ")


def map_info(r: Raster) -> str | None:
    """ENVI `map info`: UTM zones as ENVI names them, anything else as 'Arbitrary' (GDAL reads the
    `coordinate system string` for the CRS itself)."""
    t = r.transform
    if r.crs is None:
        return None
    if t.b != 0 or t.d != 0:
        raise ValueError("ENVI output supports north-up grids only (the transform has rotation terms)")
    from pyproj import CRS as ProjCRS

    crs = ProjCRS.from_user_input(r.crs.to_wkt())
    units = "Meters" if crs.axis_info and crs.axis_info[0].unit_name in ("metre", "meter") else (
        "Degrees" if crs.is_geographic else "Unknown")
    head = [_num(1), _num(1), _num(t.c), _num(t.f), _num(t.a), _num(-t.e)]
    zone = crs.utm_zone
    if zone and "WGS 84" in (crs.datum.name if crs.datum else "").replace("World Geodetic System 1984", "WGS 84"):
        return "{UTM, " + ", ".join(["1", "1"] + head[2:] + [zone[:-1], "North" if zone[-1] == "N" else "South",
                                                             "WGS-84", "units=Meters"]) + "}"
    if crs.is_geographic:
        return "{Geographic Lat/Lon, " + ", ".join(["1", "1"] + head[2:] + ["WGS-84", "units=Degrees"]) + "}"
    return "{Arbitrary, " + ", ".join(["1", "1"] + head[2:] + [f"units={units}"]) + "}"


def header_text(r: Raster, dtype: np.dtype, *, description: str | None = None) -> str:
    """The `.hdr` text for a raster written band-sequential, little endian."""
    code = ENVI_TYPES.get(dtype.name)
    lines = ["ENVI"]
    desc = description or "imalys-stac export"
    if r.tags:
        desc += " [" + "; ".join(f"{k}={v}" for k, v in r.tags.items()) + "]"
    lines.append("description = {" + _clean(desc) + "}")
    lines += [
        f"samples = {r.width}", f"lines = {r.height}", f"bands = {r.count}", "header offset = 0",
        "file type = ENVI Standard", f"data type = {code}", "interleave = bsq", "byte order = 0",
    ]
    mi = map_info(r)
    if mi and r.crs is not None:  # map_info is None without a CRS
        lines.append(f"map info = {mi}")
        from pyproj import CRS as ProjCRS
        from pyproj.enums import WktVersion

        esri = ProjCRS.from_user_input(r.crs.to_wkt()).to_wkt(WktVersion.WKT1_ESRI)  # what ENVI reads
        lines.append("coordinate system string = {" + esri + "}")
    names = r.band_names or [f"band {i}" for i in range(1, r.count + 1)]
    lines.append("band names = {" + ", ".join(_clean(n) for n in names) + "}")
    if r.nodata is not None:
        lines.append("data ignore value = " + ("nan" if isinstance(r.nodata, float) and math.isnan(r.nodata)
                                                else _num(r.nodata) if r.is_float else str(int(r.nodata))))
    return "\n".join(lines) + "\n"


def write_envi(da: xr.DataArray, path: str | os.PathLike, *, tags: dict[str, Any] | None = None,
               band_names: Sequence[str] | None = None) -> Path:
    """Write `da` as ENVI: raw band-sequential little-endian `path` plus `path.hdr`, streamed
    block by block from the dask graph; both files appear only when both are complete."""
    path = Path(path).expanduser()
    r = as_raster(da, band_names=band_names, tags=tags)
    dtype = np.dtype(r.dtype.name).newbyteorder("<")
    if r.dtype.name not in ENVI_TYPES:
        raise ValueError(f"ENVI cannot store {r.dtype.name}; cast to one of {', '.join(ENVI_TYPES)}")
    hdr = path.with_name(path.name + ".hdr")
    with atomic_path(path) as tmp, atomic_path(hdr) as tmp_hdr:
        with open(tmp, "wb") as fh:
            fh.truncate(r.count * r.height * r.width * dtype.itemsize)
            stream(r.data, _BsqSink(fh, r, dtype))
        tmp_hdr.write_text(header_text(r, dtype), encoding="ascii", errors="replace")
    return path
