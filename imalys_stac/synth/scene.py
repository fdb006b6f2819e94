"""Synthetic Landsat Collection 2 Level-2 archives, structured as USGS ships them.

``write_landsat_archive(folder, SceneSpec(...))`` draws one scene of a ``Landscape`` through a
synthetic atmosphere and writes ``<product id>.tar`` with the USGS member names (flat), COG
rasters (uint16, DEFLATE, 256 tiles, internal overviews when larger than a tile), MTL
txt/xml/json and ANG.txt. What was drawn is returned as ``SyntheticScene.truth`` so tests can
compare anything read back with what it must be.

Atmosphere, per scene (seeded by ``spec.seed`` and the scene's path/row/date/sensor):
clouds are smooth blobs thresholded so that exactly ``cloud_cover`` of the swath is cloud
(bright, 0.4–0.8 in every optical band, cold); a 3-pixel dilated-cloud ring (light haze);
shadows are the cloud mask displaced away from the sun by 10–20 pixels and darkened ×0.25–0.4;
thin cirrus (Landsat 8/9) adds a little haze; optional snow; water from the landscape.
Outside the rotated swath every band is 0 and QA_PIXEL is 1 (fill); Landsat 7 after
2003-05-31 also has the SLC-off wedge gaps as fill.
"""
from __future__ import annotations

import math
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from ..archives.bands import BandInfo
from ..providers.landsat import qa as Q
from ..providers.landsat.bands import SENSORS
from ..write.atomic import atomic_path
from . import metadata as M
from .landscape import Landscape
from .noise import grid_field, wave_table
from .wrs import (
    SceneGrid,
    earth_sun_distance,
    overpass_time,
    scene_grid,
    sun_position,
    swath_coordinates,
    swath_corners,
    wrs_centre,
)

SR_MULT, SR_ADD = 2.75e-5, -0.2
ST_MULT, ST_ADD = 0.00341802, 149.0
DILATION = 3  # pixels of the dilated-cloud ring (CFMask's default)
SLC_OFF = date(2003, 5, 31)
_OLI = ("LC08", "LC09")
ROW_BLOCK = 512  # rows evaluated at a time: bounds the float32 working memory for large scenes

#: cloud reflectance relative to its brightness, per common name (a little lower in the SWIR)
_CLOUD_SHAPE = {"coastal": 1.0, "blue": 1.0, "green": 1.0, "red": 1.0, "nir08": 0.98, "swir16": 0.94,
                "swir22": 0.9}
#: snow reflectance per common name
_SNOW = {"coastal": 0.86, "blue": 0.85, "green": 0.83, "red": 0.80, "nir08": 0.70, "swir16": 0.10,
         "swir22": 0.06}
_SPACECRAFT = {"LC09": ("LANDSAT_9", "OLI_TIRS"), "LC08": ("LANDSAT_8", "OLI_TIRS"),
               "LE07": ("LANDSAT_7", "ETM"), "LT05": ("LANDSAT_5", "TM"), "LT04": ("LANDSAT_4", "TM")}


@dataclass(frozen=True)
class SceneSpec:
    """What to draw. ``cloud_cover`` is the exact fraction of swath pixels that are cloud;
    ``snow`` the fraction of clear land that is snow; ``water=False`` leaves the QA water bit
    unset (the landscape's water is still drawn dark). ``processed`` (default: 3–7 days after
    acquisition) is the processing date of the product id. ``jitter`` (≤ 0.01) is a per-date
    multiplicative gain on every optical band (default 0: every date sees exactly the same
    ground reflectance). ``cirrus`` is the cirrus fraction (default min(0.1, cloud_cover/4),
    Landsat 8/9 only)."""

    sensor: str = "LC08"
    path: int = 193
    row: int = 26
    acquired: date = date(2022, 5, 15)
    size: int = 256
    pixel: float = 30.0
    cloud_cover: float = 0.3
    seed: int = 0
    processed: date | None = None
    tier: str = "T1"
    snow: float = 0.0
    water: bool = True
    jitter: float = 0.0
    cirrus: float | None = None

    def __post_init__(self) -> None:
        if self.sensor not in SENSORS:
            raise ValueError(f"unknown sensor {self.sensor!r}; accepted: {', '.join(sorted(SENSORS))}")
        if not (1 <= self.path <= 233 and 1 <= self.row <= 248):
            raise ValueError(f"WRS-2 path must be 1..233 and row 1..248, got {self.path}/{self.row}")
        if not isinstance(self.acquired, date):
            raise TypeError(f"acquired must be a datetime.date, got {type(self.acquired).__name__}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {self.size}")
        if self.pixel <= 0:
            raise ValueError(f"pixel must be > 0 metres, got {self.pixel}")
        for name in ("cloud_cover", "snow"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be a fraction in [0, 1], got {v}")
        if self.cirrus is not None and not 0.0 <= self.cirrus <= 1.0:
            raise ValueError(f"cirrus must be a fraction in [0, 1] or None, got {self.cirrus}")
        if not 0.0 <= self.jitter <= 0.01:
            raise ValueError(f"jitter must be in [0, 0.01] (at most 1 %), got {self.jitter}")
        if self.tier not in ("T1", "T2", "RT"):
            raise ValueError(f"tier must be T1, T2 or RT, got {self.tier!r}")
        if self.processed is not None and self.processed < self.acquired:
            raise ValueError(f"processed {self.processed} is before acquired {self.acquired}")

    @property
    def processed_date(self) -> date:
        return self.processed or self.acquired + timedelta(days=3 + self.seed % 5)

    @property
    def product_id(self) -> str:
        return (f"{self.sensor}_L2SP_{self.path:03d}{self.row:03d}_{self.acquired:%Y%m%d}_"
                f"{self.processed_date:%Y%m%d}_02_{self.tier}")

    @property
    def landsat8(self) -> bool:
        """True for the OLI/TIRS sensors (cirrus bits, coastal band, ST_B10, aerosol QA)."""
        return self.sensor in _OLI


@dataclass
class SyntheticScene:
    """A written archive and what was drawn in it.

    ``truth``: ``reflectance`` (SR bands in ``bands`` order, y, x) float32 — the ground TOA
    reflectance (× the date's jitter gain) before clouds and quantisation; ``temperature`` (y, x)
    K; ``qa`` uint16 QA_PIXEL; bool masks ``fill``, ``cloud``, ``dilated_cloud``, ``shadow``,
    ``cirrus``, ``snow``, ``water``.
    """

    path: Path
    spec: SceneSpec
    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    bands: list[tuple[str, str]]
    truth: dict[str, np.ndarray]
    cloud_cover: float = 0.0  # percent, as in the MTL
    sun_azimuth: float = 0.0
    sun_elevation: float = 0.0
    members: list[str] = field(default_factory=list)

    @property
    def product_id(self) -> str:
        return self.spec.product_id

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t, (h, w) = self.transform, self.shape
        return (t.c, t.f + h * t.e, t.c + w * t.a, t.f)

    def href(self, suffix: str) -> str:
        """GDAL path of a member, e.g. ``href("SR_B4")`` → ``/vsitar/…/…_SR_B4.TIF``."""
        name = suffix if "." in suffix else f"{suffix}.TIF"
        return f"/vsitar/{self.path}/{self.product_id}_{name}"


# --------------------------------------------------------------------------------------------
# masks


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a (2r+1)² square, separable (rows then columns)."""
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        for s in range(1, r + 1):
            if axis == 0:
                out[s:] |= src[:-s]
                out[:-s] |= src[s:]
            else:
                out[:, s:] |= src[:, :-s]
                out[:, :-s] |= src[:, s:]
    return out


def _shift(a: np.ndarray, dr: int, dc: int, fill: Any = 0) -> np.ndarray:
    """``a`` moved by dr rows and dc columns; uncovered cells get ``fill``."""
    out = np.full_like(a, fill)
    h, w = a.shape
    if abs(dr) >= h or abs(dc) >= w:
        return out
    out[max(dr, 0):h + min(dr, 0), max(dc, 0):w + min(dc, 0)] = a[max(-dr, 0):h - max(dr, 0),
                                                                   max(-dc, 0):w - max(dc, 0)]
    return out


def _top_fraction(values: np.ndarray, where: np.ndarray, fraction: float) -> tuple[np.ndarray, float]:
    """Mask of the ``fraction`` highest ``values`` among ``where`` (exact count), and the threshold."""
    n = int(where.sum())
    k = int(round(fraction * n))
    if k <= 0:
        return np.zeros_like(where), float("inf")
    vals = values[where]
    thr = float(np.partition(vals, n - k)[n - k])
    return where & (values >= thr), thr


def _slc_off_gaps(size: int, pixel: float) -> np.ndarray:
    """Landsat 7 SLC-off: wedge-shaped gaps, zero at the swath centre, ~14 px at its edges,
    repeating every ~32 lines (scaled with the pixel size) along the track."""
    along, across, half = swath_coordinates(size)
    period = max(8.0, 32.0 * 30.0 / pixel)
    width = 0.45 * period * np.abs(across) / half
    # scan lines are slightly tilted: the gap position drifts with the across-track position
    phase = np.mod(along + 0.08 * across, period)
    return phase < width


def _draw_masks(spec: SceneSpec, grid: SceneGrid, sun_az: float, sun_el: float,
                water_frac: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = spec.size
    along, across, half = swath_coordinates(n)
    fill = ~((np.abs(along) <= half) & (np.abs(across) <= half))
    if spec.sensor == "LE07" and spec.acquired > SLC_OFF:
        fill |= _slc_off_gaps(n, spec.pixel)
    valid = ~fill
    # clouds: blobs between n/16 and n/2 pixels with slightly ragged edges, thresholded to the
    # exact cover (compact blobs: the dilated ring and the shadow roughly double the disturbed area)
    cw = wave_table(rng, 14, max(8.0, n / 16), max(16.0, n / 2), 1.5)
    cfield = grid_field((n, n), cw) + 0.05 * grid_field((n, n), wave_table(rng, 6, 3.0, 8.0, 0.5))
    cloud, thr = _top_fraction(cfield, valid, spec.cloud_cover)
    thick = np.clip((cfield - thr) / 0.6, 0.0, 1.0) * cloud
    dilated = _dilate(cloud, DILATION) & ~cloud & valid
    # shadows: the clouds moved away from the sun; ~1.2 km cloud height, 10-20 px
    d = float(np.clip(1200.0 / math.tan(math.radians(max(sun_el, 5.0))) / spec.pixel, 10.0, 20.0))
    az = math.radians(sun_az)
    dr, dc = int(round(d * math.cos(az))), int(round(-d * math.sin(az)))  # rows grow southwards
    shadow = _shift(cloud, dr, dc, False) & ~cloud & valid
    shadow_thick = _shift(thick, dr, dc, 0.0)
    if spec.landsat8:
        frac = spec.cirrus if spec.cirrus is not None else min(0.1, spec.cloud_cover / 4)
        ciw = wave_table(rng, 10, max(8.0, n / 20), max(16.0, n), 1.0)
        cirrus, _ = _top_fraction(grid_field((n, n), ciw), valid, frac)
    else:
        cirrus = np.zeros((n, n), bool)
    open_land = valid & ~cloud & ~dilated & (water_frac < 0.5)
    if spec.snow > 0:
        sw = wave_table(rng, 10, max(6.0, n / 30), max(12.0, n / 2), 1.2)
        snow, _ = _top_fraction(grid_field((n, n), sw), open_land, spec.snow)
    else:
        snow = np.zeros((n, n), bool)
    water = valid & ~cloud & ~dilated & ~snow & (water_frac >= 0.5) if spec.water else np.zeros((n, n), bool)
    return {"fill": fill, "cloud": cloud, "dilated_cloud": dilated, "shadow": shadow, "cirrus": cirrus,
            "snow": snow, "water": water, "_thick": thick.astype(np.float32),
            "_shadow_thick": shadow_thick.astype(np.float32), "_shadow_offset": np.array([dr, dc])}


def encode_qa(m: dict[str, np.ndarray], landsat8: bool) -> np.ndarray:
    """QA_PIXEL from masks, with USGS's rules (vectorised ``providers.landsat.qa.encode``): clear unless
    cloud or dilated cloud; confidence pairs high where the class is drawn, cloud medium on the
    dilated ring, low elsewhere; cirrus bits only on Landsat 8/9; fill pixels are exactly 1."""
    b = Q.bit
    cloud, dil = m["cloud"], m["dilated_cloud"]
    qa = np.zeros(cloud.shape, np.uint16)
    qa |= np.where(dil, b(Q.DILATED_CLOUD), 0).astype(np.uint16)
    qa |= np.where(cloud, b(Q.CLOUD), 0).astype(np.uint16)
    qa |= np.where(m["shadow"], b(Q.CLOUD_SHADOW), 0).astype(np.uint16)
    qa |= np.where(m["snow"], b(Q.SNOW), 0).astype(np.uint16)
    qa |= np.where(~(cloud | dil), b(Q.CLEAR), 0).astype(np.uint16)
    qa |= np.where(m["water"], b(Q.WATER), 0).astype(np.uint16)
    conf = np.where(cloud, Q.CONF_HIGH, np.where(dil, Q.CONF_MEDIUM, Q.CONF_LOW)).astype(np.uint16)
    qa |= conf << Q.CLOUD_CONFIDENCE
    qa |= np.where(m["shadow"], Q.CONF_HIGH, Q.CONF_LOW).astype(np.uint16) << Q.SHADOW_CONFIDENCE
    qa |= np.where(m["snow"], Q.CONF_HIGH, Q.CONF_LOW).astype(np.uint16) << Q.SNOW_CONFIDENCE
    if landsat8:
        qa |= np.where(m["cirrus"], b(Q.CIRRUS), 0).astype(np.uint16)
        qa |= np.where(m["cirrus"], Q.CONF_HIGH, Q.CONF_LOW).astype(np.uint16) << Q.CIRRUS_CONFIDENCE
    qa[m["fill"]] = Q.QA_FILL_VALUE
    return qa


# --------------------------------------------------------------------------------------------
# radiometry


def _observe(ground: np.ndarray, names: list[str], m: dict[str, np.ndarray], rows: slice) -> np.ndarray:
    """Optical reflectance seen through the atmosphere for a block of rows (float32)."""
    obs = ground.copy()
    cl, di, sh, ci, sn = (m[k][rows] for k in ("cloud", "dilated_cloud", "shadow", "cirrus", "snow"))
    t, ts = m["_thick"][rows], m["_shadow_thick"][rows]
    for i, name in enumerate(names):
        o = obs[i]
        o[sn] = _SNOW[name]
        o[sh] *= (0.4 - 0.15 * ts[sh])  # darker under thicker clouds: x0.25..0.4
        cloud_r = (0.48 + 0.32 * t) * _CLOUD_SHAPE[name]
        o[di] += 0.2 * (0.5 * _CLOUD_SHAPE[name] - o[di])  # haze: 20 % towards a thin cloud
        o[ci] += 0.03 if name not in ("swir16", "swir22") else 0.015
        opacity = 0.9 + 0.1 * t  # cloud edges let a little ground through
        o[cl] = o[cl] * (1 - opacity[cl]) + cloud_r[cl] * opacity[cl]
    return obs


def _observe_thermal(kelvin: np.ndarray, m: dict[str, np.ndarray], rows: slice) -> np.ndarray:
    k = kelvin.copy()
    cl, di, sh, sn = (m[x][rows] for x in ("cloud", "dilated_cloud", "shadow", "snow"))
    t = m["_thick"][rows]
    k[sn] = 268.0
    k[sh] -= 3.0
    k[di] -= 2.0
    opacity = 0.85 + 0.15 * t
    k[cl] = k[cl] * (1 - opacity[cl]) + (262.0 - 15.0 * t[cl]) * opacity[cl]
    return k


def sr_dn(r: np.ndarray) -> np.ndarray:
    """Reflectance → SR DN (USGS C2 scaling, 1..65535; the caller sets fill to 0)."""
    return np.clip(np.rint((r - SR_ADD) / SR_MULT), 1, 65535).astype(np.uint16)


def st_dn(k: np.ndarray) -> np.ndarray:
    """Kelvin → ST DN (1..65535)."""
    return np.clip(np.rint((k - ST_ADD) / ST_MULT), 1, 65535).astype(np.uint16)


# --------------------------------------------------------------------------------------------
# files


def _write_cog(path: Path, data: np.ndarray, grid: SceneGrid, nodata: float | None, resampling: str,
               blocksize: int = 256, overviews: bool = True) -> None:
    """One COG: tiled (256 by default), DEFLATE, internal overviews when larger than a tile (unless
    `overviews` is False); tagged
    ``AREA_OR_POINT=Point`` like the USGS files (the geotransform still gives pixel corners)."""
    profile = dict(driver="GTiff", dtype=data.dtype.name, count=1, width=data.shape[1], height=data.shape[0],
                   crs=grid.crs, transform=grid.transform, nodata=nodata)
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.update_tags(AREA_OR_POINT="Point")
            ds.write(data, 1)
        with mem.open() as src:
            rasterio.shutil.copy(src, str(path), driver="COG", COMPRESS="DEFLATE", PREDICTOR="YES",
                                 BLOCKSIZE=blocksize, OVERVIEW_RESAMPLING=resampling, NUM_THREADS="ALL_CPUS",
                                 OVERVIEWS="AUTO" if overviews else "NONE")


def _corner_lonlat(grid: SceneGrid) -> dict[str, tuple[float, float, float, float]]:
    """Lat/lon and projected x/y of the corner pixel centres (what the MTL calls the product corners)."""
    p, n = grid.pixel, grid.size
    pts = {"UL": (grid.ix0 * p, grid.iy0 * p), "UR": ((grid.ix0 + n - 1) * p, grid.iy0 * p),
           "LL": (grid.ix0 * p, (grid.iy0 - n + 1) * p), "LR": ((grid.ix0 + n - 1) * p, (grid.iy0 - n + 1) * p)}
    tr = Transformer.from_crs(grid.epsg, 4326, always_xy=True)
    return {k: tr.transform(*v)[::-1] + v for k, v in pts.items()}  # (lat, lon, x, y)


def _reflectance_bands(table: tuple[BandInfo, ...]) -> list[tuple[str, str]]:
    """(member suffix, common name) of the surface-reflectance bands, in table order; the common
    name is what the landscape is drawn by, so a band without one is an error in the table."""
    bands = []
    for b in table:
        if "reflectance" not in b.roles:
            continue
        if b.common_name is None:
            raise ValueError(f"reflectance band {b.suffix} has no common name in the sensor table")
        bands.append((b.suffix, b.common_name))
    return bands


def _l1_bands(sensor: str) -> list[str]:
    if sensor in _OLI:
        return [str(i) for i in range(1, 12)]
    if sensor == "LE07":
        return ["1", "2", "3", "4", "5", "6_VCID_1", "6_VCID_2", "7", "8"]
    return ["1", "2", "3", "4", "5", "6", "7"]


# radiance scaling (W/m²/sr/µm per DN) and offsets of the L1 bands; OLI/TIRS values as in the
# real MTL, TM/ETM+ from the USGS calibration tables (rounded)
_RAD = {
    "OLI": ([1.2913e-2, 1.3223e-2, 1.2185e-2, 1.0275e-2, 6.2877e-3, 1.5637e-3, 5.2705e-4, 1.1628e-2, 2.4574e-3,
             3.3420e-4, 3.3420e-4],
            [-64.56431, -66.11464, -60.92407, -51.37461, -31.4387, -7.81852, -2.63526, -58.14192, -12.28696, 0.1, 0.1]),
    "TM": ([0.7658, 1.4481, 1.044, 0.8763, 0.1203, 0.0553, 0.0654], [-2.29, -4.29, -2.21, -2.39, -0.49, 1.18, -0.22]),
    "ETM": ([0.7787, 0.7988, 0.6217, 0.9693, 0.1260, 0.0672, 0.0372, 0.0439, 0.9713],
            [-6.98, -7.2, -5.62, -6.07, -1.13, -0.07, 3.16, -0.39, -5.68]),
}
_K = {"LC08": [("10", 774.8853, 1321.0789), ("11", 480.8883, 1201.1442)],
      "LC09": [("10", 799.0284, 1329.2405), ("11", 475.6581, 1198.3494)],
      "LE07": [("6_VCID_1", 666.09, 1282.71), ("6_VCID_2", 666.09, 1282.71)],
      "LT05": [("6", 607.76, 1260.56)], "LT04": [("6", 671.62, 1284.30)]}


def _mtl(spec: SceneSpec, grid: SceneGrid, members: dict[str, str], info: dict[str, Any]) -> M.Doc:
    pid, s = spec.product_id, spec.sensor
    craft, sensor_id = _SPACECRAFT[s]
    oli = spec.landsat8
    l1_id = pid.replace("_L2SP_", "_L1TP_")
    gen2 = datetime.combine(spec.processed_date, datetime.min.time()) + timedelta(hours=1, seconds=spec.seed % 3600)
    gen1 = gen2 - timedelta(minutes=9, seconds=38)
    sr = info["sr"]
    st = info["st"]
    pc: dict[str, M.Value] = {
        "ORIGIN": M.Q("Image courtesy of the U.S. Geological Survey"),
        "DIGITAL_OBJECT_IDENTIFIER": M.Q("https://doi.org/10.5066/P9OGBGM6" if oli else "https://doi.org/10.5066/P9IAXOVV"),
        "LANDSAT_PRODUCT_ID": M.Q(pid), "PROCESSING_LEVEL": M.Q("L2SP"), "COLLECTION_NUMBER": "02",
        "COLLECTION_CATEGORY": M.Q(spec.tier), "OUTPUT_FORMAT": M.Q("GEOTIFF"),
    }
    for suffix, _ in sr:
        pc[f"FILE_NAME_BAND_{suffix[4:]}"] = M.Q(members[suffix])
    pc[f"FILE_NAME_BAND_{st}"] = M.Q(members[st])
    if oli:
        pc["FILE_NAME_QUALITY_L2_AEROSOL"] = M.Q(members["SR_QA_AEROSOL"])
    else:
        pc["FILE_NAME_ATMOSPHERIC_OPACITY"] = M.Q(members["SR_ATMOS_OPACITY"])
        pc["FILE_NAME_QUALITY_L2_SURFACE_REFLECTANCE_CLOUD"] = M.Q(members["SR_CLOUD_QA"])
    pc["FILE_NAME_QUALITY_L1_PIXEL"] = M.Q(members["QA_PIXEL"])
    pc["FILE_NAME_QUALITY_L1_RADIOMETRIC_SATURATION"] = M.Q(members["QA_RADSAT"])
    pc["FILE_NAME_ANGLE_COEFFICIENT"] = M.Q(members["ANG.txt"])
    pc["FILE_NAME_METADATA_ODL"] = M.Q(members["MTL.txt"])
    pc["FILE_NAME_METADATA_XML"] = M.Q(members["MTL.xml"])
    for suffix, _ in sr:
        pc[f"DATA_TYPE_BAND_{suffix[4:]}"] = M.Q("UINT16")
    pc[f"DATA_TYPE_BAND_{st}"] = M.Q("UINT16")
    if oli:
        pc["DATA_TYPE_QUALITY_L2_AEROSOL"] = M.Q("UINT8")
    else:
        pc["DATA_TYPE_ATMOSPHERIC_OPACITY"] = M.Q("INT16")
        pc["DATA_TYPE_QUALITY_L2_SURFACE_REFLECTANCE_CLOUD"] = M.Q("UINT8")
    pc["DATA_TYPE_QUALITY_L1_PIXEL"] = M.Q("UINT16")
    pc["DATA_TYPE_QUALITY_L1_RADIOMETRIC_SATURATION"] = M.Q("UINT16")

    when: datetime = info["time"]
    ia: dict[str, M.Value] = {
        "SPACECRAFT_ID": M.Q(craft), "SENSOR_ID": M.Q(sensor_id), "WRS_TYPE": "2",
        "WRS_PATH": str(spec.path), "WRS_ROW": str(spec.row), "NADIR_OFFNADIR": M.Q("NADIR"),
        "TARGET_WRS_PATH": str(spec.path), "TARGET_WRS_ROW": str(spec.row),
        "DATE_ACQUIRED": f"{spec.acquired:%Y-%m-%d}",
        "SCENE_CENTER_TIME": M.Q(f"{when:%H:%M:%S}.{when.microsecond:06d}0Z"),
        "STATION_ID": M.Q("LGN"), "CLOUD_COVER": f"{info['cloud_cover']:.2f}",
        "CLOUD_COVER_LAND": f"{info['cloud_cover_land']:.2f}",
    }
    if oli:
        ia.update({"IMAGE_QUALITY_OLI": "9", "IMAGE_QUALITY_TIRS": "9"})
        ia.update({f"SATURATION_BAND_{i}": M.Q("N") for i in range(1, 10)})
        ia["ROLL_ANGLE"] = "-0.001"
    else:
        ia["IMAGE_QUALITY"] = "9"
        ia.update({f"SATURATION_BAND_{b}": M.Q("N") for b in _l1_bands(s) if not b.startswith("6")})
    ia.update({"SUN_AZIMUTH": f"{info['sun_azimuth']:.8f}", "SUN_ELEVATION": f"{info['sun_elevation']:.8f}",
               "EARTH_SUN_DISTANCE": f"{earth_sun_distance(spec.acquired):.7f}"})
    if oli:
        ia.update({"TRUNCATION_OLI": M.Q("UPPER"), "TIRS_SSM_MODEL": M.Q("FINAL"),
                   "TIRS_SSM_POSITION_STATUS": M.Q("ESTIMATED")})

    c = info["corners"]
    pa: dict[str, M.Value] = {
        "MAP_PROJECTION": M.Q("UTM"), "DATUM": M.Q("WGS84"), "ELLIPSOID": M.Q("WGS84"),
        "UTM_ZONE": str(grid.epsg - 32600),
        "GRID_CELL_SIZE_REFLECTIVE": f"{grid.pixel:.2f}", "GRID_CELL_SIZE_THERMAL": f"{grid.pixel:.2f}",
        "REFLECTIVE_LINES": str(grid.size), "REFLECTIVE_SAMPLES": str(grid.size),
        "THERMAL_LINES": str(grid.size), "THERMAL_SAMPLES": str(grid.size), "ORIENTATION": M.Q("NORTH_UP"),
    }
    for k in ("UL", "UR", "LL", "LR"):
        pa[f"CORNER_{k}_LAT_PRODUCT"] = f"{c[k][0]:.5f}"
        pa[f"CORNER_{k}_LON_PRODUCT"] = f"{c[k][1]:.5f}"
    for k in ("UL", "UR", "LL", "LR"):
        pa[f"CORNER_{k}_PROJECTION_X_PRODUCT"] = f"{c[k][2]:.3f}"
        pa[f"CORNER_{k}_PROJECTION_Y_PRODUCT"] = f"{c[k][3]:.3f}"

    l2: dict[str, M.Value] = {
        "ORIGIN": pc["ORIGIN"], "DIGITAL_OBJECT_IDENTIFIER": pc["DIGITAL_OBJECT_IDENTIFIER"],
        "REQUEST_ID": M.Q("L2"), "LANDSAT_PRODUCT_ID": M.Q(pid), "PROCESSING_LEVEL": M.Q("L2SP"),
        "OUTPUT_FORMAT": M.Q("GEOTIFF"), "DATE_PRODUCT_GENERATED": f"{gen2:%Y-%m-%dT%H:%M:%S}Z",
        "PROCESSING_SOFTWARE_VERSION": M.Q("LPGS_15.6.0"),
        "ALGORITHM_SOURCE_SURFACE_REFLECTANCE": M.Q("LaSRC_1.5.0" if oli else "LEDAPS_3.4.0"),
        "DATA_SOURCE_OZONE": M.Q("MODIS" if oli else "TOMS"), "DATA_SOURCE_PRESSURE": M.Q("Calculated" if oli else "NCEP"),
        "DATA_SOURCE_WATER_VAPOR": M.Q("MODIS" if oli else "NCEP"), "DATA_SOURCE_AIR_TEMPERATURE": M.Q("MODIS" if oli else "NCEP"),
        "ALGORITHM_SOURCE_SURFACE_TEMPERATURE": M.Q("st_1.3.0"), "DATA_SOURCE_REANALYSIS": M.Q("GEOS-5 FP-IT"),
    }
    srp: dict[str, M.Value] = {}
    for suffix, _ in sr:
        n = suffix[4:]
        srp[f"REFLECTANCE_MAXIMUM_BAND_{n}"] = "1.602213"
        srp[f"REFLECTANCE_MINIMUM_BAND_{n}"] = "-0.199972"
    for suffix, _ in sr:
        n = suffix[4:]
        srp[f"QUANTIZE_CAL_MAX_BAND_{n}"] = "65535"
        srp[f"QUANTIZE_CAL_MIN_BAND_{n}"] = "1"
    for suffix, _ in sr:
        srp[f"REFLECTANCE_MULT_BAND_{suffix[4:]}"] = "2.75e-05"
    for suffix, _ in sr:
        srp[f"REFLECTANCE_ADD_BAND_{suffix[4:]}"] = "-0.2"
    stp: dict[str, M.Value] = {
        f"TEMPERATURE_MAXIMUM_BAND_{st}": "372.999941", f"TEMPERATURE_MINIMUM_BAND_{st}": "149.003418",
        f"QUANTIZE_CAL_MAXIMUM_BAND_{st}": "65535", f"QUANTIZE_CAL_MINIMUM_BAND_{st}": "1",
        f"TEMPERATURE_MULT_BAND_{st}": "0.00341802", f"TEMPERATURE_ADD_BAND_{st}": "149.0",
    }
    l1b = _l1_bands(s)
    doy = spec.acquired.timetuple().tm_yday
    l1: dict[str, M.Value] = {
        "ORIGIN": pc["ORIGIN"], "DIGITAL_OBJECT_IDENTIFIER": M.Q("https://doi.org/10.5066/P975CC9B"),
        "REQUEST_ID": M.Q("L2"),
        "LANDSAT_SCENE_ID": M.Q(f"L{s[1]}{s[3]}{spec.path:03d}{spec.row:03d}{spec.acquired.year}{doy:03d}LGN00"),
        "LANDSAT_PRODUCT_ID": M.Q(l1_id), "PROCESSING_LEVEL": M.Q("L1TP"), "COLLECTION_CATEGORY": M.Q(spec.tier),
        "OUTPUT_FORMAT": M.Q("GEOTIFF"), "DATE_PRODUCT_GENERATED": f"{gen1:%Y-%m-%dT%H:%M:%S}Z",
        "PROCESSING_SOFTWARE_VERSION": M.Q("LPGS_15.6.0"),
    }
    for b in l1b:
        l1[f"FILE_NAME_BAND_{b}"] = M.Q(f"{l1_id}_B{b.replace('_VCID_', '_VCID_')}.TIF")
    l1.update({
        "FILE_NAME_QUALITY_L1_PIXEL": M.Q(f"{l1_id}_QA_PIXEL.TIF"),
        "FILE_NAME_QUALITY_L1_RADIOMETRIC_SATURATION": M.Q(f"{l1_id}_QA_RADSAT.TIF"),
        "FILE_NAME_ANGLE_COEFFICIENT": M.Q(f"{l1_id}_ANG.txt"),
        "FILE_NAME_METADATA_ODL": M.Q(f"{l1_id}_MTL.txt"), "FILE_NAME_METADATA_XML": M.Q(f"{l1_id}_MTL.xml"),
        "DATA_SOURCE_ELEVATION": M.Q("GLS2000"), "GROUND_CONTROL_POINTS_VERSION": "5",
        "GROUND_CONTROL_POINTS_MODEL": str(300 + spec.seed % 400), "GEOMETRIC_RMSE_MODEL": "4.512",
        "GEOMETRIC_RMSE_MODEL_Y": "3.301", "GEOMETRIC_RMSE_MODEL_X": "3.076",
    })
    mult, add = _RAD["OLI" if oli else ("ETM" if s == "LE07" else "TM")]
    radmm: dict[str, M.Value] = {}
    pixmm: dict[str, M.Value] = {}
    resc: dict[str, M.Value] = {}
    for b, m_, a_ in zip(l1b, mult, add):
        radmm[f"RADIANCE_MAXIMUM_BAND_{b}"] = f"{m_ * 65535 + a_ if oli else m_ * 254 + a_:.5f}"
        radmm[f"RADIANCE_MINIMUM_BAND_{b}"] = f"{m_ + a_:.5f}"
        pixmm[f"QUANTIZE_CAL_MAX_BAND_{b}"] = "65535" if oli else "255"
        pixmm[f"QUANTIZE_CAL_MIN_BAND_{b}"] = "1"
    for b, m_ in zip(l1b, mult):
        resc[f"RADIANCE_MULT_BAND_{b}"] = f"{m_:.4E}"
    for b, a_ in zip(l1b, add):
        resc[f"RADIANCE_ADD_BAND_{b}"] = f"{a_:.5f}"
    thermal = {k for k, _, _ in _K[s]}
    reflb = [b for b in l1b if b not in thermal]
    reflmm: dict[str, M.Value] = {}
    for b in reflb:
        reflmm[f"REFLECTANCE_MAXIMUM_BAND_{b}"] = "1.210700"
        reflmm[f"REFLECTANCE_MINIMUM_BAND_{b}"] = "-0.099980"
    for b in reflb:
        resc[f"REFLECTANCE_MULT_BAND_{b}"] = "2.0000E-05"
    for b in reflb:
        resc[f"REFLECTANCE_ADD_BAND_{b}"] = "-0.100000"
    kc: dict[str, M.Value] = {}
    for b, k1, _ in _K[s]:
        kc[f"K1_CONSTANT_BAND_{b}"] = f"{k1:.4f}"
    for b, _, k2 in _K[s]:
        kc[f"K2_CONSTANT_BAND_{b}"] = f"{k2:.4f}"
    l1p: dict[str, M.Value] = {"MAP_PROJECTION": M.Q("UTM"), "DATUM": M.Q("WGS84"), "ELLIPSOID": M.Q("WGS84"),
                               "UTM_ZONE": str(grid.epsg - 32600)}
    if oli or s == "LE07":
        l1p["GRID_CELL_SIZE_PANCHROMATIC"] = f"{grid.pixel / 2:.2f}"
    l1p.update({"GRID_CELL_SIZE_REFLECTIVE": f"{grid.pixel:.2f}", "GRID_CELL_SIZE_THERMAL": f"{grid.pixel:.2f}",
                "ORIENTATION": M.Q("NORTH_UP"), "RESAMPLING_OPTION": M.Q("CUBIC_CONVOLUTION")})
    return {
        "PRODUCT_CONTENTS": pc, "IMAGE_ATTRIBUTES": ia, "PROJECTION_ATTRIBUTES": pa,
        "LEVEL2_PROCESSING_RECORD": l2, "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS": srp,
        "LEVEL2_SURFACE_TEMPERATURE_PARAMETERS": stp, "LEVEL1_PROCESSING_RECORD": l1,
        "LEVEL1_MIN_MAX_RADIANCE": radmm, "LEVEL1_MIN_MAX_REFLECTANCE": reflmm,
        "LEVEL1_MIN_MAX_PIXEL_VALUE": pixmm, "LEVEL1_RADIOMETRIC_RESCALING": resc,
        "LEVEL1_THERMAL_CONSTANTS": kc, "LEVEL1_PROJECTION_PARAMETERS": l1p,
    }


def _ang(spec: SceneSpec, grid: SceneGrid, when: datetime) -> str:
    """ANG.txt: header, projection, a short ephemeris and, per L1 band, the swath corners
    (L1T_IMAGE_CORNER_LINES/SAMPS, pixel-centre indices from the UL pixel) that USGS and
    stactools use as the footprint."""
    s = spec.sensor
    bands = _l1_bands(s)
    craft = _SPACECRAFT[s][0]
    doy = spec.acquired.timetuple().tm_yday
    p, n = grid.pixel, grid.size
    ul, lr = (grid.ix0 * p, grid.iy0 * p), ((grid.ix0 + n - 1) * p, (grid.iy0 - n + 1) * p)
    corners = swath_corners(n)
    secs = when.hour * 3600 + when.minute * 60 + when.second + when.microsecond / 1e6 - 26.0
    doc: M.Doc = {
        "FILE_HEADER": {
            "LANDSAT_SCENE_ID": M.Q(f"L{s[1]}{s[3]}{spec.path:03d}{spec.row:03d}{spec.acquired.year}{doy:03d}LGN00"),
            "SPACECRAFT_ID": M.Q(craft), "NUMBER_OF_BANDS": str(len(bands)),
            "BAND_LIST": "(" + ", ".join(b.split("_")[0] for b in bands) + ")",
        },
        "PROJECTION": {
            "ELLIPSOID_AXES": "(6378137.000000, 6356752.314200)", "MAP_PROJECTION": M.Q("UTM"),
            "PROJECTION_UNITS": M.Q("METERS"), "DATUM": M.Q("WGS84"), "ELLIPSOID": M.Q("WGS84"),
            "UTM_ZONE": str(grid.epsg - 32600),
            "PROJECTION_PARAMETERS": M.odl_list([0.0] * 15, "{:.6f}"),
            "UL_CORNER": f"({ul[0]:11.3f}, {ul[1]:12.3f})", "UR_CORNER": f"({lr[0]:11.3f}, {ul[1]:12.3f})",
            "LL_CORNER": f"({ul[0]:11.3f}, {lr[1]:12.3f})", "LR_CORNER": f"({lr[0]:11.3f}, {lr[1]:12.3f})",
        },
        "EPHEMERIS": {
            "EPHEMERIS_EPOCH_YEAR": str(spec.acquired.year), "EPHEMERIS_EPOCH_DAY": str(doy),
            "EPHEMERIS_EPOCH_SECONDS": f"{secs:.6f}", "NUMBER_OF_POINTS": "4",
            "EPHEMERIS_TIME": M.odl_list([0.0, 1.0, 2.0, 3.0], "{:10.6f}"),
        },
    }
    for i, _b in enumerate(bands, 1):
        tag = f"BAND{i:02d}"
        doc[f"RPC_{tag}"] = {
            f"{tag}_NUMBER_OF_SCAS": "14" if spec.landsat8 else "1",
            f"{tag}_NUM_L1T_LINES": str(n), f"{tag}_NUM_L1T_SAMPS": str(n),
            f"{tag}_L1T_IMAGE_CORNER_LINES": M.odl_list(list(corners[:, 0])),
            f"{tag}_L1T_IMAGE_CORNER_SAMPS": M.odl_list(list(corners[:, 1])),
            f"{tag}_PIXEL_SIZE": f"{p:.3f}", f"{tag}_MEAN_HEIGHT": "520.000",
            f"{tag}_MEAN_L1T_LINE_SAMP": f"({(n - 1) / 2:.3f}, {(n - 1) / 2:.3f})",
        }
    return M.to_odl(doc, root=None)


def _scene_rng(spec: SceneSpec) -> np.random.Generator:
    return np.random.default_rng([spec.seed, spec.path, spec.row, spec.acquired.toordinal(),
                                  sorted(SENSORS).index(spec.sensor)])


def write_landsat_archive(folder: str | Path, spec: SceneSpec, landscape: Landscape | None = None, *,
                          truth: bool = True, blocksize: int = 256, overviews: bool = True) -> SyntheticScene:
    """Draw ``spec`` from ``landscape`` (default ``Landscape(spec.seed)``) and write
    ``folder/<product id>.tar``. Returns the scene and its truth (``truth=False`` leaves out the
    float arrays ``reflectance``/``temperature`` to save memory on very large scenes).
    ``blocksize`` and ``overviews`` set the members' internal tiling and overviews (USGS ships
    512-px tiles without overviews; the default is 256 with overviews)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    landscape = landscape if landscape is not None else Landscape(spec.seed)
    platform, _, table = SENSORS[spec.sensor]
    sr = _reflectance_bands(table)
    st = next(b.suffix for b in table if "temperature" in b.roles)
    names = [cn for _, cn in sr]
    grid = scene_grid(spec.path, spec.row, spec.size, spec.pixel)
    lon, lat = wrs_centre(spec.path, spec.row, spec.size, spec.pixel)
    when = overpass_time(spec.acquired, lon, spec.row, spec.seed)
    sun_az, sun_el = sun_position(when, lon, lat)
    rng = _scene_rng(spec)
    gain = 1.0 + spec.jitter * rng.uniform(-1.0, 1.0, len(names))  # per-date calibration drift
    n = spec.size
    xs, ys = grid.xs(), grid.ys()
    idx = Landscape.channel_index(names + ["lwir11"])

    # the ground first (water is needed by the masks), in row blocks
    ground = np.empty((len(names) + 1, n, n), np.float32)
    water_frac = np.empty((n, n), np.float32)
    for r0 in range(0, n, ROW_BLOCK):
        ev = landscape.evaluate_grid(xs, ys[r0:r0 + ROW_BLOCK], grid.crs)
        ground[:, r0:r0 + ROW_BLOCK] = ev[idx]
        water_frac[r0:r0 + ROW_BLOCK] = ev[8]
    ground[:-1] *= gain[:, None, None].astype(np.float32)
    masks = _draw_masks(spec, grid, sun_az, sun_el, water_frac, rng)
    fill = masks["fill"]

    dn = np.empty((len(names), n, n), np.uint16)
    st_arr = np.empty((n, n), np.uint16)
    for r0 in range(0, n, ROW_BLOCK):
        rows = slice(r0, min(n, r0 + ROW_BLOCK))
        dn[:, rows] = sr_dn(_observe(ground[:-1, rows], names, masks, rows))
        st_arr[rows] = st_dn(_observe_thermal(ground[-1, rows], masks, rows))
    dn[:, fill] = 0
    st_arr[fill] = 0
    qa = encode_qa(masks, spec.landsat8)

    valid = ~fill
    nvalid = max(1, int(valid.sum()))
    land = valid & (water_frac < 0.5)
    cover = 100.0 * masks["cloud"].sum() / nvalid
    cover_land = 100.0 * (masks["cloud"] & land).sum() / max(1, int(land.sum()))

    pid = spec.product_id
    members = {s: f"{pid}_{s}.TIF" for s, _ in sr}
    members[st] = f"{pid}_{st}.TIF"
    for s in ("QA_PIXEL", "QA_RADSAT"):
        members[s] = f"{pid}_{s}.TIF"
    extra = ["SR_QA_AEROSOL"] if spec.landsat8 else ["SR_ATMOS_OPACITY", "SR_CLOUD_QA"]
    for s in extra:
        members[s] = f"{pid}_{s}.TIF"
    for s in ("MTL.txt", "MTL.xml", "MTL.json", "ANG.txt"):
        members[s] = f"{pid}_{s}"

    info = {"sr": sr, "st": st, "time": when, "cloud_cover": cover, "cloud_cover_land": cover_land,
            "sun_azimuth": sun_az, "sun_elevation": sun_el, "corners": _corner_lonlat(grid)}
    doc = _mtl(spec, grid, members, info)

    layout = (blocksize, overviews)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".synth-") as tmp:
        t = Path(tmp)
        for i, (s, _) in enumerate(sr):
            _write_cog(t / members[s], dn[i], grid, 0, "AVERAGE", *layout)
        _write_cog(t / members[st], st_arr, grid, 0, "AVERAGE", *layout)
        _write_cog(t / members["QA_PIXEL"], qa, grid, None, "NEAREST", *layout)
        _write_cog(t / members["QA_RADSAT"], np.zeros((n, n), np.uint16), grid, None, "NEAREST", *layout)
        cl, di, sh, wa, sn = (masks[k] for k in ("cloud", "dilated_cloud", "shadow", "water", "snow"))
        if spec.landsat8:
            _write_cog(t / members["SR_QA_AEROSOL"], _aerosol_qa(masks, water_frac, rng), grid, None, "NEAREST")
        else:
            opacity = np.where(cl | di, 2000, np.rint(50 + 250 * (0.5 + 0.5 * grid_field(
                (n, n), wave_table(rng, 8, n / 8, n, 1.0)) / 3))).astype(np.int16)
            opacity[fill] = -9999
            _write_cog(t / members["SR_ATMOS_OPACITY"], opacity, grid, -9999, "NEAREST")
            red, nir = ground[names.index("red")], ground[names.index("nir08")]
            ddv = valid & ~cl & ~di & (nir > 0.3) & (red < 0.05)
            cqa = (ddv * 1 + cl * 2 + sh * 4 + di * 8 + sn * 16 + wa * 32).astype(np.uint8)
            cqa[fill] = 0
            _write_cog(t / members["SR_CLOUD_QA"], cqa, grid, None, "NEAREST")
        (t / members["MTL.txt"]).write_text(M.to_odl(doc))
        (t / members["MTL.xml"]).write_text(M.to_xml(doc))
        (t / members["MTL.json"]).write_text(M.to_json(doc))
        (t / members["ANG.txt"]).write_text(_ang(spec, grid, when))
        target = folder / f"{pid}.tar"
        mtime = datetime.combine(spec.processed_date, datetime.min.time(), tzinfo=timezone.utc).timestamp()
        # atomic: readers never see a half-written archive
        with atomic_path(target) as part, tarfile.open(part, "w", format=tarfile.USTAR_FORMAT) as tar:
            for name in sorted(members.values()):
                ti = tar.gettarinfo(str(t / name), arcname=name)
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = ""
                ti.mode = 0o644
                ti.mtime = int(mtime)
                with open(t / name, "rb") as fh:
                    tar.addfile(ti, fh)

    truth_d: dict[str, np.ndarray] = {k: v for k, v in masks.items() if not k.startswith("_")}
    truth_d["qa"] = qa
    if truth:
        truth_d["reflectance"] = ground[:-1]
        truth_d["temperature"] = ground[-1]
    return SyntheticScene(path=target, spec=spec, crs=grid.crs, transform=grid.transform, shape=(n, n),
                          bands=sr, truth=truth_d, cloud_cover=round(cover, 2), sun_azimuth=sun_az,
                          sun_elevation=sun_el, members=sorted(members.values()))


def _aerosol_qa(m: dict[str, np.ndarray], water_frac: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SR_QA_AEROSOL (Landsat 8/9) as LaSRC writes it: bit 0 fill, 1 valid retrieval, 2 water,
    5 interpolated, 6-7 aerosol level (1 low, 2 medium, 3 high). High and interpolated over
    clouds, interpolated over water, a smooth low/medium pattern elsewhere."""
    n = water_frac.shape[0]
    haze = grid_field((n, n), wave_table(rng, 8, max(8.0, n / 8), max(16.0, n), 1.0))
    level = np.where(haze > 0.8, 2, 1).astype(np.uint8)
    bad = m["cloud"] | m["dilated_cloud"] | m["cirrus"]
    level[bad] = 3
    water = water_frac >= 0.5
    v = (level << 6).astype(np.uint8)
    v |= np.where(bad | water | m["shadow"], 32, 0).astype(np.uint8)
    v |= np.where(~bad & ~water & ~m["shadow"], 2, 0).astype(np.uint8)
    v |= np.where(water, 4, 0).astype(np.uint8)
    v[m["fill"]] = 1
    return v
