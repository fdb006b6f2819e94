"""Explicit output grids (CRS, bounds, pixel size, alignment) and frames from vector files.

A `Grid` is computed from metadata only, before any pixel is read (the habit of stackstac's
`prepare.py` and odc-geo's GeoBox): import, compile and the cube loader all pass one around
instead of loose (epsg, bounds, resolution) tuples.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from ..errors import InputError, ResourceError

_EPS = 1e-6

#: The largest grid a command accepts (pixels per band): 5·10¹⁰ is a 220,000-pixel square, a
#: continent at 30 m. Larger grids are nearly always a pixel size in the wrong unit.
MAX_GRID_PIXELS = 5e10


def check_grid_size(grid: Grid, limit: float = MAX_GRID_PIXELS) -> None:
    """Refuse, before any work, a grid that no machine can hold."""
    rows, cols = grid.shape
    if rows * cols > limit:
        unit = grid.crs.axis_info[0].unit_name if grid.crs.axis_info else "units"
        raise ResourceError(
            f"the grid would be {cols:,} × {rows:,} pixels ({rows * cols:.2g} per band, "
            f"{rows * cols * 4 / 1e12:.3g} TB per band as float32) at {grid.resolution:g} {unit} of EPSG:{grid.epsg}; "
            f"the limit is {limit:.0e} pixels",
            hint=f"check pixel (it is in {unit} of the grid's coordinate system) and the frame")


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: `bounds` = (left, bottom, right, top) in `epsg`; pixels are
    `resolution` wide and `yres` (default: the same) high."""

    epsg: int
    bounds: tuple[float, float, float, float]
    resolution: float
    yres: float | None = None

    @property
    def res_xy(self) -> tuple[float, float]:
        return (self.resolution, self.yres or self.resolution)

    @classmethod
    def aligned(
        cls,
        epsg: int,
        bounds: Iterable[float],
        resolution: float,
        anchor: tuple[float, float] = (0.0, 0.0),
        yres: float | None = None,
    ) -> Grid:
        """The smallest grid covering `bounds` whose pixel edges lie on anchor + k·resolution."""
        left, bottom, right, top = (float(v) for v in bounds)
        ax, ay = anchor
        r = float(resolution)
        ry = float(yres or resolution)
        left = ax + math.floor((left - ax) / r + _EPS) * r
        bottom = ay + math.floor((bottom - ay) / ry + _EPS) * ry
        right = ax + math.ceil((right - ax) / r - _EPS) * r
        top = ay + math.ceil((top - ay) / ry - _EPS) * ry
        if right <= left:
            right = left + r
        if top <= bottom:
            top = bottom + ry
        return cls(int(epsg), (left, bottom, right, top), r, None if ry == r else ry)

    @property
    def shape(self) -> tuple[int, int]:
        left, bottom, right, top = self.bounds
        rx, ry = self.res_xy
        return (int(round((top - bottom) / ry)), int(round((right - left) / rx)))

    @property
    def transform(self) -> Affine:
        left, _, _, top = self.bounds
        rx, ry = self.res_xy
        return Affine(rx, 0.0, left, 0.0, -ry, top)

    def window(self, row0: int, row1: int, col0: int, col1: int) -> Grid:
        """The part rows row0:row1, cols col0:col1 of this grid (same pixels, same alignment)."""
        rows, cols = self.shape
        if not (0 <= row0 < row1 <= rows and 0 <= col0 < col1 <= cols):
            raise ValueError(f"window {row0}:{row1}, {col0}:{col1} is not inside the grid's {rows} × {cols} pixels")
        t = self.transform
        left, top = t @ (col0, row0)
        right, bottom = t @ (col1, row1)
        return Grid(self.epsg, (left, bottom, right, top), self.resolution, self.yres)

    @property
    def crs(self) -> CRS:
        return CRS.from_epsg(self.epsg)

    @property
    def anchor(self) -> tuple[float, float]:
        rx, ry = self.res_xy
        return (self.bounds[0] % rx, self.bounds[3] % ry)

    def wgs84_polygon(self) -> BaseGeometry:
        return reproject_geometry(box(*self.bounds), self.epsg, 4326)

    def to_stac(self) -> dict:
        """The grid as projection-extension fields (both `proj:epsg` for stackstac 0.5 and
        `proj:code` for newer readers)."""
        t = self.transform
        return {
            "proj:epsg": self.epsg,
            "proj:code": f"EPSG:{self.epsg}",
            "proj:bbox": list(self.bounds),
            "proj:shape": list(self.shape),
            "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        }

    @classmethod
    def from_stac(cls, props: dict) -> Grid:
        epsg = props.get("proj:epsg")
        if epsg is None and str(props.get("proj:code", "")).upper().startswith("EPSG:"):
            epsg = int(str(props["proj:code"]).split(":")[1])
        if epsg is None:
            raise InputError("the item has no EPSG code (proj:epsg or proj:code = EPSG:…)")
        t = props["proj:transform"]
        rows, cols = props["proj:shape"]
        left, top, res, yres = t[2], t[5], t[0], abs(t[4])
        return cls(int(epsg), (left, top - rows * yres, left + cols * res, top), res, None if yres == res else yres)


def reproject_geometry(geom: BaseGeometry, src_epsg: int | CRS, dst_epsg: int | CRS) -> BaseGeometry:
    """Reproject a shapely geometry, densifying edges first so rectangles bend correctly."""
    src, dst = CRS.from_user_input(src_epsg), CRS.from_user_input(dst_epsg)
    if src == dst:
        return geom
    tr = Transformer.from_crs(src, dst, always_xy=True)
    length = max(geom.bounds[2] - geom.bounds[0], geom.bounds[3] - geom.bounds[1]) or 1.0
    dense = geom.segmentize(length / 50.0) if hasattr(geom, "segmentize") else geom
    return shapely.transform(dense, lambda x, y: tr.transform(x, y), interleaved=False)


def transform_bounds(bounds: Iterable[float], src_epsg: int, dst_epsg: int) -> tuple[float, float, float, float]:
    return tuple(reproject_geometry(box(*bounds), src_epsg, dst_epsg).bounds)  # type: ignore[return-value]


@dataclass(frozen=True)
class Frame:
    """A region of interest from a vector file: all its features, in their own CRS."""

    path: Path
    geometry: BaseGeometry
    epsg_or_wkt: str

    @classmethod
    def read(cls, path: Path) -> Frame:
        from .vector import read_plain

        path = Path(path)
        plain = read_plain(path)  # a plain shapefile or GeoJSON: no geopandas (start-up time)
        crs: CRS | str | None
        if plain is not None:
            geometries, crs = plain
        else:
            geometries, crs = _read_with_geopandas(path)
        if not geometries or all(g is None for g in geometries):
            raise InputError(f"the frame {path} holds no geometry")
        if crs is None:
            raise InputError(f"the frame {path} has no coordinate system (.prj missing?)")
        for n, g in enumerate(geometries, 1):
            if g is None or g.is_empty:
                continue
            if not g.is_valid:
                # e.g. a "bowtie": corners listed across the box. A union of an invalid polygon
                # silently drops parts of it, so the region would shrink without a word.
                from shapely.validation import explain_validity

                reason = explain_validity(g)
                raise InputError(
                    f"the frame {path} is not a valid geometry (feature {n}: {reason})",
                    hint="list the polygon's corners in order around its outline, or repair it in a GIS "
                         "(e.g. QGIS 'Fix geometries')")
        geom = shapely.union_all(np.array(geometries, dtype=object))  # as geopandas' union_all (None: skipped)
        if geom.is_empty:
            raise InputError(f"the frame {path} holds no geometry")
        return cls(path, geom, CRS.from_user_input(crs).to_wkt())

    @property
    def crs(self) -> CRS:
        return CRS.from_user_input(self.epsg_or_wkt)

    def geometry_in(self, epsg: int | CRS) -> BaseGeometry:
        return reproject_geometry(self.geometry, self.crs, epsg)

    def bounds_in(self, epsg: int | CRS) -> tuple[float, float, float, float]:
        """The rectangle around all the frame's points, in `epsg` (as the seed defines the region)."""
        return tuple(self.geometry_in(epsg).bounds)  # type: ignore[return-value]

    def wgs84(self) -> BaseGeometry:
        return self.geometry_in(4326)

    def wgs84_rectangle(self) -> BaseGeometry:
        return box(*self.bounds_in(4326))


def _read_with_geopandas(path: Path) -> tuple[list[BaseGeometry | None], CRS | None]:
    """Any vector format GDAL reads: (one geometry per feature, None for a null one; its CRS)."""
    import geopandas as gpd

    try:
        df = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises its own DataSourceError types
        raise InputError(f"cannot read the frame {path}: {exc}") from exc
    return list(df.geometry), df.crs


def geometry_mask(geom: BaseGeometry, grid: Grid) -> np.ndarray:
    """Boolean (rows, cols) mask, True inside `geom` (given in the grid's CRS)."""
    from rasterio.features import geometry_mask as _gm

    return ~_gm([mapping(geom)], out_shape=grid.shape, transform=grid.transform, all_touched=False)


__all__ = ["Grid", "Frame", "reproject_geometry", "transform_bounds", "geometry_mask", "shape"]


def asset_grid(item, key: str) -> Grid:
    """The native grid of an item's asset from its projection metadata (asset level first,
    then item level), without opening the file."""
    a = item.assets[key].extra_fields
    p = item.properties
    merged = {k: a.get(k, p.get(k)) for k in ("proj:epsg", "proj:code", "proj:transform", "proj:shape")}
    return Grid.from_stac(merged)
