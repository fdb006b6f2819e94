"""Scaled WRS-2 placement, scene grids, the rotated swath and the sun.

Real WRS-2 scenes are ~185 km wide; test scenes may be 64 pixels. The placement is therefore
scaled to the scene size so that neighbours overlap as real ones do, whatever the size:

* path 193 / row 26 is anchored near Munich with its east edge just west of 12°E (the UTM
  32/33 border), so its centre is in zone 32 for every size;
* the next row of the same path lies 0.75 scene heights further *along the track* (the
  descending orbit heads SSW, ~12° west of south in UTM), so rows overlap by ~25 % and their
  swaths continue each other without gaps;
* the next path east (path − 1) lies 0.6 scene widths *across the track*: swaths overlap by
  ~30 %, as at 48°N, and path 192's centre falls east of 12°E, i.e. into zone 33.
  (0.6 rather than 0.8: with the ~0.84 W swath inside the raster, 0.8 would leave adjacent
  swaths almost without overlap.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

import numpy as np
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import Affine

#: swath rotation: ground track heading is ~192° in UTM around 48°N (descending orbit)
TRACK_ANGLE = 12.0
ROW_STEP = 0.75  # along-track distance between rows, in scene heights
PATH_STEP = 0.6  # across-track distance between paths, in scene widths
ANCHOR_PATH, ANCHOR_ROW = 193, 26
ANCHOR_LAT = 48.2
ANCHOR_EAST_LON = 12.0  # east edge of the anchor scene, minus a margin
EAST_MARGIN = 0.03  # scene widths between the anchor's east edge and 12°E

_REF_EPSG = 32632


@lru_cache(maxsize=64)
def _tr(src: int, dst: int) -> Transformer:
    return Transformer.from_crs(src, dst, always_xy=True)


def utm_epsg(lon: float, lat: float = 45.0) -> int:
    """EPSG code of the northern UTM zone holding ``lon`` (Collection 2 uses north zones)."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return 32600 + zone


def wrs_centre(path: int, row: int, size: int, pixel: float = 30.0) -> tuple[float, float]:
    """Scene centre (lon, lat) of a scaled WRS-2 ``path``/``row`` for ``size`` × ``size`` pixels of
    ``pixel`` metres. Path 193 / row 26 sits just west of 12°E at 48.2°N (Munich area)."""
    if size < 1 or pixel <= 0:
        raise ValueError(f"size must be >= 1 and pixel > 0, got size={size}, pixel={pixel}")
    extent = size * pixel
    to_utm = _tr(4326, _REF_EPSG)
    x12, y0 = to_utm.transform(ANCHOR_EAST_LON, ANCHOR_LAT)
    ax = x12 - (0.5 + EAST_MARGIN) * extent
    th = math.radians(TRACK_ANGLE)
    along = (row - ANCHOR_ROW) * ROW_STEP * extent  # towards SSW
    across = (ANCHOR_PATH - path) * PATH_STEP * extent  # towards ESE
    x = ax - along * math.sin(th) + across * math.cos(th)
    y = y0 - along * math.cos(th) - across * math.sin(th)
    lon, lat = _tr(_REF_EPSG, 4326).transform(x, y)
    return float(lon), float(lat)


@dataclass(frozen=True)
class SceneGrid:
    """A north-up UTM raster grid whose pixel centres are multiples of the pixel size (as
    USGS grids are: centres on 30 m multiples, edges on odd multiples of 15 m)."""

    epsg: int
    ix0: int  # column index of the UL pixel centre: x = ix0 * pixel
    iy0: int  # row index of the UL pixel centre: y = iy0 * pixel
    size: int
    pixel: float

    @property
    def crs(self) -> CRS:
        return CRS.from_epsg(self.epsg)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def transform(self) -> Affine:
        p = self.pixel
        return Affine(p, 0.0, self.ix0 * p - p / 2, 0.0, -p, self.iy0 * p + p / 2)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        p = self.pixel
        return (self.ix0 * p - p / 2, (self.iy0 - self.size) * p + p / 2,
                (self.ix0 + self.size) * p - p / 2, self.iy0 * p + p / 2)

    def xs(self) -> np.ndarray:
        """Pixel-centre x of each column (exact: integer × pixel)."""
        return (self.ix0 + np.arange(self.size)) * self.pixel

    def ys(self) -> np.ndarray:
        """Pixel-centre y of each row."""
        return (self.iy0 - np.arange(self.size)) * self.pixel


def scene_grid(path: int, row: int, size: int, pixel: float = 30.0) -> SceneGrid:
    """The grid of a scaled WRS scene: UTM zone of the centre, centre snapped to the pixel grid."""
    lon, lat = wrs_centre(path, row, size, pixel)
    epsg = utm_epsg(lon, lat)
    cx, cy = _tr(4326, epsg).transform(lon, lat)
    ix0 = int(round(cx / pixel - (size - 1) / 2))
    iy0 = int(round(cy / pixel + (size - 1) / 2))
    return SceneGrid(epsg, ix0, iy0, size, float(pixel))


def swath_corners(size: int, angle: float = TRACK_ANGLE) -> np.ndarray:
    """Corners of the imaged swath in (line, sample) pixel-centre coordinates, USGS order
    UL (top), UR (right), LR (bottom), LL (left): a square rotated by ``angle`` inscribed in
    the raster with a half-pixel margin, as the L1T corners of ANG.txt describe it."""
    th = math.radians(angle)
    c = (size - 1) / 2.0
    half = (size - 2) / (2.0 * (math.cos(th) + math.sin(th)))  # fits with ~a pixel to spare
    # unit vectors in (sample, line): along track (down, slightly west), across track (east)
    along = np.array([-math.sin(th), math.cos(th)])
    across = np.array([math.cos(th), math.sin(th)])
    pts = {
        "UL": c - half * along - half * across,
        "UR": c - half * along + half * across,
        "LR": c + half * along + half * across,
        "LL": c + half * along - half * across,
    }
    return np.array([[pts[k][1], pts[k][0]] for k in ("UL", "UR", "LR", "LL")])


def swath_mask(size: int, angle: float = TRACK_ANGLE, rows: slice | None = None) -> np.ndarray:
    """True for pixels whose centre lies inside the swath (optionally only for ``rows``)."""
    rows = rows or slice(0, size)
    th = math.radians(angle)
    c = (size - 1) / 2.0
    half = (size - 2) / (2.0 * (math.cos(th) + math.sin(th)))
    ln = np.arange(rows.start, rows.stop, dtype=np.float64)[:, None] - c
    sm = np.arange(size, dtype=np.float64)[None, :] - c
    a = -math.sin(th) * sm + math.cos(th) * ln  # along-track coordinate
    b = math.cos(th) * sm + math.sin(th) * ln  # across-track coordinate
    return (np.abs(a) <= half) & (np.abs(b) <= half)


def swath_coordinates(size: int, angle: float = TRACK_ANGLE) -> tuple[np.ndarray, np.ndarray, float]:
    """(along, across) pixel coordinates from the swath centre, and the half side."""
    th = math.radians(angle)
    c = (size - 1) / 2.0
    half = (size - 2) / (2.0 * (math.cos(th) + math.sin(th)))
    ln = np.arange(size, dtype=np.float64)[:, None] - c
    sm = np.arange(size, dtype=np.float64)[None, :] - c
    return -math.sin(th) * sm + math.cos(th) * ln, math.cos(th) * sm + math.sin(th) * ln, half


def overpass_time(acquired: date, lon: float, row: int, seed: int = 0) -> datetime:
    """Scene centre time (UTC): ~10:30 local solar time at 48°N, rows ~24 s apart along the orbit."""
    local = 10.5 * 3600 + (row - ANCHOR_ROW) * 24.0  # rows are ~24 s apart along the orbit
    utc = local - lon / 15.0 * 3600 + (seed % 1000) * 1e-3
    return datetime(acquired.year, acquired.month, acquired.day, tzinfo=timezone.utc) + timedelta(seconds=utc)


def sun_position(when: datetime, lon: float, lat: float) -> tuple[float, float]:
    """(azimuth, elevation) of the sun in degrees (NOAA low-precision formulas, ~0.1°)."""
    doy = when.timetuple().tm_yday
    hour = when.hour + when.minute / 60 + when.second / 3600
    g = 2 * math.pi / 365.0 * (doy - 1 + (hour - 12) / 24)
    eqtime = 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g)
                       - 0.014615 * math.cos(2 * g) - 0.040849 * math.sin(2 * g))
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g) - 0.006758 * math.cos(2 * g)
            + 0.000907 * math.sin(2 * g) - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
    tst = hour * 60 + eqtime + 4 * lon
    ha = math.radians(tst / 4 - 180)
    phi = math.radians(lat)
    cosz = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(ha)
    zen = math.acos(max(-1.0, min(1.0, cosz)))
    az = math.degrees(math.atan2(math.sin(ha), math.cos(ha) * math.sin(phi) - math.tan(decl) * math.cos(phi))) + 180
    return az % 360.0, 90.0 - math.degrees(zen)


def earth_sun_distance(day: date) -> float:
    """Earth–sun distance in AU."""
    doy = day.timetuple().tm_yday
    return 1.0 - 0.01672 * math.cos(math.radians(0.9856 * (doy - 4)))
