"""Synthetic Sentinel-2 Level-2A SAFE zips, structured as ESA/Copernicus ships them.

``write_sentinel2_archive(folder, tile="32UPU", acquired=date(...), size=96)`` draws a window of
an MGRS tile from a :class:`~imalys_stac.synth.Landscape` through a synthetic atmosphere and
writes ``S2A_MSIL2A_<start>_N<baseline>_R<orbit>_T<tile>_<generated>.zip`` holding::

    <name>.SAFE/MTD_MSIL2A.xml                         product metadata
    <name>.SAFE/manifest.safe
    <name>.SAFE/GRANULE/L2A_T<tile>_A<orbit>_<time>/MTD_TL.xml       tile geocoding, sun angles
    <name>.SAFE/GRANULE/.../IMG_DATA/R10m/T<tile>_<start>_B02_10m.jp2   B02 B03 B04 B08
    <name>.SAFE/GRANULE/.../IMG_DATA/R20m/..._B05_20m.jp2             B05-B07 B8A B11 B12 SCL
                                                                     (+ B01-B04 resampled)
    <name>.SAFE/GRANULE/.../IMG_DATA/R60m/..._B01_60m.jp2             B01 B09
                                                                     (+ the others, SCL resampled)

Differences from a real product, on purpose: the rasters cover a ``size`` × ``size`` window of
10 m pixels (default centred in the 100 km square of the tile) instead of the full 109.8 km tile,
and ``MTD_TL.xml`` gives that window's geoposition; there are no TCI/AOT/WVP, QI_DATA,
DATASTRIP or HTML members. Band files are lossless JPEG 2000 written by GDAL's JP2OpenJPEG
(GMLJP2 georeferencing as in real products); if this GDAL cannot write JPEG 2000 the same names
end in ``.tif`` (GeoTIFF) instead — real SAFE zips always need GDAL with a JPEG 2000 driver.

Radiometry: DN = round((reflectance + 0.1) * 10000) for baseline >= 04.00 (BOA_ADD_OFFSET
-1000), DN = round(reflectance * 10000) before; DN 0 is no data, 65535 saturated. The scene
classification (SCL, 20 m; 60 m by nearest sampling) is drawn first and every band is drawn
consistently with it (10 m bands see the 20 m classes of the pixel they fall in).
"""
from __future__ import annotations

import math
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from pyproj import CRS as PCRS
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

from ..archives.bands import BandInfo
from ..providers.sentinel2.archive import S2_BANDS, SCL_CLASSES
from ..write.atomic import atomic_path
from .landscape import Landscape
from .noise import grid_field, wave_table
from .scene import _dilate, _shift, _top_fraction
from .wrs import sun_position

#: band -> (native resolution, how it is derived from the landscape's common names)
_NATIVE = {b.suffix: int(b.gsd) for b in S2_BANDS}
_CLOUD_SHAPE = {"B01": 1.0, "B02": 1.0, "B03": 1.0, "B04": 1.0, "B05": 1.0, "B06": 0.99, "B07": 0.98,
                "B08": 0.98, "B8A": 0.98, "B09": 0.9, "B11": 0.94, "B12": 0.9}
_SNOW = {"B01": 0.86, "B02": 0.85, "B03": 0.83, "B04": 0.80, "B05": 0.78, "B06": 0.76, "B07": 0.74,
         "B08": 0.70, "B8A": 0.69, "B09": 0.55, "B11": 0.10, "B12": 0.06}
_LAUNCH = {"S2A": date(2015, 6, 23), "S2B": date(2017, 3, 7), "S2C": date(2024, 9, 5)}
_ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"
_COL_SETS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
_BANDS_LETTERS = "CDEFGHJKLMNPQRSTUVWX"


def mgrs_tile_origin(tile: str) -> tuple[int, float, float]:
    """(EPSG, ULX, ULY) of a Sentinel-2 tile: the upper-left corner of its 100 km MGRS square
    (Sentinel-2 tiles extend 109.8 km right and down from there)."""
    tile = tile.upper()
    if len(tile) != 5 or not tile[:2].isdigit():
        raise ValueError(f"MGRS tile {tile!r} is not NNBCR (e.g. 32UPU)")
    zone, band, col, row = int(tile[:2]), tile[2], tile[3], tile[4]
    if not 1 <= zone <= 60 or band not in _BANDS_LETTERS:
        raise ValueError(f"MGRS tile {tile!r}: zone 1..60 and latitude band C..X expected")
    letters = _COL_SETS[(zone - 1) % 3]
    if col not in letters or row not in _ROW_LETTERS:
        raise ValueError(f"MGRS tile {tile!r}: column letter must be one of {letters}, row one of {_ROW_LETTERS}")
    easting = (letters.index(col) + 1) * 100000.0
    n_mod = ((_ROW_LETTERS.index(row) - (5 if zone % 2 == 0 else 0)) % 20) * 100000.0
    north = band >= "N"
    epsg = (32600 if north else 32700) + zone
    lat_min = -80.0 + 8.0 * _BANDS_LETTERS.index(band)
    tr = Transformer.from_crs(4326, epsg, always_xy=True)
    _, y_min = tr.transform(-183.0 + 6.0 * zone, lat_min)  # on the central meridian
    northing = n_mod
    while northing + 100000.0 <= y_min - 1.0:
        northing += 2000000.0
    return epsg, easting, northing + 100000.0


@dataclass
class SyntheticS2Scene:
    """A written Sentinel-2 L2A zip and what was drawn in it.

    ``transforms``/``shapes``: the grid per resolution (10, 20, 60). ``truth``:
    ``reflectance`` {band: ground reflectance (float32) at the band's native resolution, before
    the atmosphere}; ``observed`` {band: what the DN encode (before quantisation)}; ``scl``
    (uint8, 20 m) and ``scl60``; bool masks at 20 m: ``fill``, ``saturated``, ``dark``,
    ``shadow``, ``vegetation``, ``not_vegetated``, ``water``, ``unclassified``,
    ``cloud_medium``, ``cloud_high``, ``cirrus``, ``snow``.
    """

    path: Path
    product_id: str
    tile: str
    crs: CRS
    transform: Affine  # 10 m
    shape: tuple[int, int]  # 10 m
    transforms: dict[int, Affine]
    shapes: dict[int, tuple[int, int]]
    truth: dict
    datetime: datetime
    baseline: str
    cloud_cover: float  # percent, as in the metadata
    sun_azimuth: float
    sun_zenith: float
    footprint: Polygon
    members: dict[str, str] = field(default_factory=dict)  # "B02_10m" -> member name

    @property
    def epsg(self) -> int:
        return int(self.crs.to_epsg())

    def href(self, band: str, res: int | None = None) -> str:
        """GDAL ``/vsizip/`` path of a band file (native resolution unless ``res`` is given)."""
        res = res or (20 if band == "SCL" else _NATIVE[band])
        return f"/vsizip/{self.path}/{self.members[f'{band}_{res}m']}"

    def dn(self, value: np.ndarray) -> np.ndarray:
        """Reflectance -> DN of this product's baseline."""
        return _dn(value, self.baseline)


def _offset(baseline: str) -> float:
    return -1000.0 if tuple(int(p) for p in baseline.split(".")) >= (4, 0) else 0.0


def _dn(r: np.ndarray, baseline: str) -> np.ndarray:
    return np.clip(np.rint(np.asarray(r, np.float64) * 10000.0 - _offset(baseline)), 1, 65534).astype(np.uint16)


def _jp2_writable() -> bool:
    with rasterio.Env() as env:
        return "JP2OpenJPEG" in env.drivers()


def _write_band(path: Path, data: np.ndarray, crs: CRS, transform: Affine, jp2: bool) -> None:
    profile = dict(driver="GTiff", dtype=data.dtype.name, count=1, width=data.shape[1], height=data.shape[0],
                   crs=crs, transform=transform)
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data, 1)
        with mem.open() as src:
            if jp2:  # lossless, GMLJP2 georeferencing, no nodata (as in real products)
                rasterio.shutil.copy(src, str(path), driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES",
                                     YCC="NO")
            else:
                rasterio.shutil.copy(src, str(path), driver="GTiff", COMPRESS="DEFLATE", TILED="YES")


def _block_mean(a: np.ndarray, k: int, fill: np.ndarray) -> np.ndarray:
    """k×k aggregate of DN (float mean, rounded), 0 where any input pixel is fill."""
    h, w = a.shape[0] // k, a.shape[1] // k
    m = a[:h * k, :w * k].reshape(h, k, w, k).astype(np.float64).mean(axis=(1, 3))
    out = np.rint(m).astype(np.uint16)
    out[fill] = 0
    return out


# ---------------------------------------------------------------------------------------- masks
def _draw_classes(n: int, ground: dict[str, np.ndarray], water_frac: np.ndarray, sun_az: float, sun_el: float,
                  cloud_cover: float, cirrus: float, snow: float, dark: float, saturated: float, nodata: float,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Class masks on the n × n 20 m grid (exclusive, SCL priority order)."""
    rows, cols = np.mgrid[0:n, 0:n]
    if nodata > 0:  # the swath's western edge cuts the tile diagonally
        edge = cols + 0.35 * (n - 1 - rows)
        fill = edge < np.quantile(edge, nodata)
    else:
        fill = np.zeros((n, n), bool)
    valid = ~fill
    cw = wave_table(rng, 14, max(6.0, n / 16), max(12.0, n / 2), 1.5)
    cfield = grid_field((n, n), cw) + 0.05 * grid_field((n, n), wave_table(rng, 6, 2.0, 6.0, 0.5))
    cloud, thr = _top_fraction(cfield, valid, cloud_cover)
    thick = np.clip((cfield - thr) / 0.6, 0.0, 1.0) * cloud
    high = cloud & (thick >= 0.3)
    medium = cloud & ~high
    ring = _dilate(cloud, 1) & ~cloud & valid  # hazy margin Sen2Cor leaves unclassified
    d = float(np.clip(1200.0 / math.tan(math.radians(max(sun_el, 5.0))) / 20.0, 4.0, 15.0))
    az = math.radians(sun_az)
    dr, dc = int(round(d * math.cos(az))), int(round(-d * math.sin(az)))
    shadow_all = _shift(cloud, dr, dc, False) & valid
    free = valid & ~cloud
    ciw = wave_table(rng, 10, max(8.0, n / 20), max(16.0, n), 1.0)
    cir, _ = _top_fraction(grid_field((n, n), ciw), free, cirrus)
    shadow = shadow_all & free & ~cir
    ring &= ~cir & ~shadow
    open_ = free & ~cir & ~shadow & ~ring
    sat = np.zeros((n, n), bool)
    if saturated > 0:
        idx = np.flatnonzero(open_)
        k = max(1, int(round(saturated * valid.sum())))
        sat.flat[rng.choice(idx, size=min(k, idx.size), replace=False)] = True
    open_ &= ~sat
    if snow > 0:
        sw = wave_table(rng, 10, max(6.0, n / 30), max(12.0, n / 2), 1.2)
        sn, _ = _top_fraction(grid_field((n, n), sw), open_ & (water_frac < 0.5), snow)
    else:
        sn = np.zeros((n, n), bool)
    water = open_ & ~sn & (water_frac >= 0.5)
    land = open_ & ~sn & ~water
    if dark > 0:
        dw = wave_table(rng, 8, max(4.0, n / 24), max(8.0, n / 4), 1.2)
        dk, _ = _top_fraction(grid_field((n, n), dw), land, dark)
    else:
        dk = np.zeros((n, n), bool)
    rest = land & ~dk
    ndvi = (ground["nir08"] - ground["red"]) / np.maximum(ground["nir08"] + ground["red"], 1e-6)
    veg = rest & (ndvi >= 0.4)
    return {"fill": fill, "saturated": sat, "dark": dk, "shadow": shadow, "vegetation": veg,
            "not_vegetated": rest & ~veg, "water": water, "unclassified": ring, "cloud_medium": medium,
            "cloud_high": high, "cirrus": cir, "snow": sn, "_thick": thick.astype(np.float32),
            "_shadow_thick": _shift(thick, dr, dc, 0.0).astype(np.float32)}


def encode_scl(m: dict[str, np.ndarray]) -> np.ndarray:
    """SCL values from the class masks."""
    scl = np.zeros(m["fill"].shape, np.uint8)
    for value, key in ((1, "saturated"), (2, "dark"), (3, "shadow"), (4, "vegetation"), (5, "not_vegetated"),
                       (6, "water"), (7, "unclassified"), (8, "cloud_medium"), (9, "cloud_high"),
                       (10, "cirrus"), (11, "snow")):
        scl[m[key]] = value
    return scl


def _observe(band: str, g: np.ndarray, m: dict[str, np.ndarray]) -> np.ndarray:
    """Reflectance seen through the atmosphere (masks already on g's grid)."""
    o = g.astype(np.float32).copy()
    o[m["snow"]] = _SNOW[band]
    o[m["dark"]] *= 0.35
    ts = m["_shadow_thick"]
    o[m["shadow"]] *= (0.4 - 0.15 * ts[m["shadow"]])
    o[m["unclassified"]] += 0.1 * (0.5 * _CLOUD_SHAPE[band] - o[m["unclassified"]])
    o[m["cirrus"]] += 0.03 if band not in ("B11", "B12") else 0.015
    t = m["_thick"]
    cl = m["cloud_medium"] | m["cloud_high"]
    cloud_r = (0.48 + 0.32 * t) * _CLOUD_SHAPE[band]
    opacity = 0.9 + 0.1 * t
    o[cl] = o[cl] * (1 - opacity[cl]) + cloud_r[cl] * opacity[cl]
    return o


def _ground(landscape: Landscape, xs: np.ndarray, ys: np.ndarray, crs: CRS) -> dict[str, np.ndarray]:
    ev = landscape.evaluate_grid(xs, ys, crs)
    names = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22")
    out = {nm: ev[i] for i, nm in enumerate(names)}
    out["water"] = ev[8]
    return out


def _bands_from(g: dict[str, np.ndarray], bands: list[str]) -> dict[str, np.ndarray]:
    red, nir = g["red"], g["nir08"]
    recipes = {
        "B01": lambda: g["coastal"], "B02": lambda: g["blue"], "B03": lambda: g["green"], "B04": lambda: red,
        "B05": lambda: red + 0.2 * (nir - red), "B06": lambda: red + 0.7 * (nir - red),
        "B07": lambda: red + 0.92 * (nir - red), "B08": lambda: nir, "B8A": lambda: 1.02 * nir,
        "B09": lambda: 0.55 * nir, "B11": lambda: g["swir16"], "B12": lambda: g["swir22"],
    }
    return {b: np.asarray(recipes[b](), np.float32) for b in bands}


# ---------------------------------------------------------------------------------------- XML
def _centre_and_width(band: BandInfo | None) -> tuple[float, float]:
    """Centre wavelength and FWHM (nm) of a band for the metadata's spectral table; B10 (cirrus,
    not among the L2A bands) gets its nominal values."""
    if band is None:
        return 1373.5, 75.0
    if band.wavelength is None or band.fwhm is None:
        raise ValueError(f"Sentinel-2 band {band.suffix} has no wavelength in S2_BANDS")
    return band.wavelength * 1000, band.fwhm * 1000


def _product_xml(name: str, start: datetime, generated: datetime, craft: str, baseline: str, rel_orbit: int,
                 datatake: str, granule: str, datastrip: str, files: list[str], cloud: float,
                 footprint: Polygon, qi: dict[str, float], reflectance_u: float) -> str:
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"  # noqa: E731
    offsets = "".join(f'\n          <BOA_ADD_OFFSET band_id="{i}">{int(_offset(baseline))}</BOA_ADD_OFFSET>'
                      for i in range(13))
    offsets_block = (f"\n        <BOA_ADD_OFFSET_VALUES_LIST>{offsets}\n        </BOA_ADD_OFFSET_VALUES_LIST>"
                     if _offset(baseline) else "")
    phys = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    res = [60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20]
    wl = {b.suffix: b for b in S2_BANDS}
    spectral = []
    for i, (p, r) in enumerate(zip(phys, res)):
        key = "B" + p[1:].zfill(2) if p[1:].isdigit() else p
        c, f = _centre_and_width(wl.get(key))
        spectral.append(
            f'        <Spectral_Information bandId="{i}" physicalBand="{p}">\n'
            f"          <RESOLUTION>{r}</RESOLUTION>\n"
            f'          <Wavelength>\n            <MIN unit="nm">{c - f / 2:.0f}</MIN>\n'
            f'            <MAX unit="nm">{c + f / 2:.0f}</MAX>\n            <CENTRAL unit="nm">{c:.1f}</CENTRAL>\n'
            f"          </Wavelength>\n        </Spectral_Information>")
    scl = "".join(
        f"\n          <Scene_Classification_ID>\n            <SCENE_CLASSIFICATION_TEXT>SC_{n.upper()}"
        f"</SCENE_CLASSIFICATION_TEXT>\n            <SCENE_CLASSIFICATION_INDEX>{v}</SCENE_CLASSIFICATION_INDEX>\n"
        f"          </Scene_Classification_ID>" for v, n, _ in SCL_CLASSES)
    ring = list(orient(footprint, 1.0).exterior.coords)
    pos = " ".join(f"{lat:.10f} {lon:.10f}" for lon, lat in ring)
    image_files = "".join(f"\n              <IMAGE_FILE>{escape(f)}</IMAGE_FILE>" for f in files)
    qi_xml = "".join(f"\n      <{k}>{v:.6f}</{k}>" for k, v in qi.items())
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{iso(start)}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{iso(start)}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{name}.SAFE</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-2A</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
      <PRODUCT_DOI>https://doi.org/10.5270/S2_-znk9xsj</PRODUCT_DOI>
      <GENERATION_TIME>{generated.strftime('%Y-%m-%dT%H:%M:%S')}.000000Z</GENERATION_TIME>
      <PREVIEW_IMAGE_URL>Not applicable</PREVIEW_IMAGE_URL>
      <PREVIEW_GEO_INFO>Not applicable</PREVIEW_GEO_INFO>
      <Datatake datatakeIdentifier="{datatake}">
        <SPACECRAFT_NAME>{craft}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{iso(start)}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>{rel_orbit}</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Query_Options completeSingleTile="true">
        <PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>
      </Query_Options>
      <Product_Organisation>
        <Granule_List>
          <Granule datastripIdentifier="{datastrip}" granuleIdentifier="{granule}" imageFormat="JPEG2000">{image_files}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Image_Display_Order>
        <RED_CHANNEL>3</RED_CHANNEL>
        <GREEN_CHANNEL>2</GREEN_CHANNEL>
        <BLUE_CHANNEL>1</BLUE_CHANNEL>
      </Image_Display_Order>
      <QUANTIFICATION_VALUES_LIST>
        <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>
        <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>
        <WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>
      </QUANTIFICATION_VALUES_LIST>{offsets_block}
      <Reflectance_Conversion>
        <U>{reflectance_u:.15f}</U>
      </Reflectance_Conversion>
      <Spectral_Information_List>
{chr(10).join(spectral)}
      </Spectral_Information_List>
      <Scene_Classification_List>{scl}
      </Scene_Classification_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Product_Footprint>
      <Product_Footprint>
        <Global_Footprint>
          <EXT_POS_LIST>{pos}</EXT_POS_LIST>
        </Global_Footprint>
      </Product_Footprint>
      <RASTER_CS_TYPE>POINT</RASTER_CS_TYPE>
      <PIXEL_ORIGIN>1</PIXEL_ORIGIN>
    </Product_Footprint>
    <Coordinate_Reference_System>
      <GEO_TABLES version="1">EPSG</GEO_TABLES>
      <HORIZONTAL_CS_TYPE>GEOGRAPHIC</HORIZONTAL_CS_TYPE>
    </Coordinate_Reference_System>
  </n1:Geometric_Info>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>{cloud:.6f}</Cloud_Coverage_Assessment>
    <Technical_Quality_Assessment>
      <DEGRADED_ANC_DATA_PERCENTAGE>0.0</DEGRADED_ANC_DATA_PERCENTAGE>
      <DEGRADED_MSI_DATA_PERCENTAGE>0</DEGRADED_MSI_DATA_PERCENTAGE>
    </Technical_Quality_Assessment>
    <Image_Content_QI>{qi_xml}
    </Image_Content_QI>
  </n1:Quality_Indicators_Info>
</n1:Level-2A_User_Product>
"""


def _tile_xml(tile_id: str, datastrip: str, sensing: datetime, epsg: int, crs_name: str,
              grids: dict[int, tuple[tuple[int, int], Affine]], sun_zen: float, sun_az: float,
              view: list[tuple[float, float]], cloud: float, qi: dict[str, float]) -> str:
    sizes = "".join(f'\n      <Size resolution="{r}">\n        <NROWS>{s[0]}</NROWS>\n        <NCOLS>{s[1]}</NCOLS>\n'
                    f"      </Size>" for r, (s, _) in grids.items())
    geo = "".join(f'\n      <Geoposition resolution="{r}">\n        <ULX>{t.c:.0f}</ULX>\n        <ULY>{t.f:.0f}</ULY>\n'
                  f"        <XDIM>{t.a:.0f}</XDIM>\n        <YDIM>{t.e:.0f}</YDIM>\n      </Geoposition>"
                  for r, (_, t) in grids.items())
    vw = "".join(f'\n        <Mean_Viewing_Incidence_Angle bandId="{i}">\n          <ZENITH_ANGLE unit="deg">{z:.6f}'
                 f'</ZENITH_ANGLE>\n          <AZIMUTH_ANGLE unit="deg">{a:.6f}</AZIMUTH_ANGLE>\n'
                 f"        </Mean_Viewing_Incidence_Angle>" for i, (z, a) in enumerate(view))
    qi_xml = "".join(f"\n      <{k}>{v:.6f}</{k}>" for k, v in qi.items())
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-2A_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-2A_Tile_Metadata.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <n1:General_Info>
    <TILE_ID metadataLevel="Brief">{tile_id}</TILE_ID>
    <DATASTRIP_ID metadataLevel="Standard">{datastrip}</DATASTRIP_ID>
    <DOWNLINK_PRIORITY metadataLevel="Standard">NOMINAL</DOWNLINK_PRIORITY>
    <SENSING_TIME metadataLevel="Standard">{sensing.strftime('%Y-%m-%dT%H:%M:%S.')}{sensing.microsecond:06d}Z</SENSING_TIME>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_NAME>{crs_name}</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>EPSG:{epsg}</HORIZONTAL_CS_CODE>{sizes}{geo}
    </Tile_Geocoding>
    <Tile_Angles metadataLevel="Standard">
      <Mean_Sun_Angle>
        <ZENITH_ANGLE unit="deg">{sun_zen:.10f}</ZENITH_ANGLE>
        <AZIMUTH_ANGLE unit="deg">{sun_az:.10f}</AZIMUTH_ANGLE>
      </Mean_Sun_Angle>
      <Mean_Viewing_Incidence_Angle_List>{vw}
      </Mean_Viewing_Incidence_Angle_List>
    </Tile_Angles>
  </n1:Geometric_Info>
  <n1:Quality_Indicators_Info metadataLevel="Standard">
    <Image_Content_QI>
      <CLOUDY_PIXEL_PERCENTAGE>{cloud:.6f}</CLOUDY_PIXEL_PERCENTAGE>{qi_xml}
    </Image_Content_QI>
  </n1:Quality_Indicators_Info>
</n1:Level-2A_Tile_ID>
"""


_MANIFEST = """<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" version="esa/safe/sentinel/1.1/sentinel-2/msi/archive_l2a_user_product">
  <informationPackageMap>
    <xfdu:contentUnit unitType="Product_Level-2A" textInfo="SENTINEL-2 MSI Level-2A User Product"/>
  </informationPackageMap>
</xfdu:XFDU>
"""


# ---------------------------------------------------------------------------------------- writer
def write_sentinel2_archive(
    folder: str | Path,
    *,
    tile: str = "32UPU",
    acquired: date = date(2022, 6, 15),
    size: int = 96,
    cloud_cover: float = 0.2,
    seed: int = 0,
    landscape: Landscape | None = None,
    baseline: str = "05.09",
    spacecraft: str = "S2A",
    relative_orbit: int = 65,
    origin: tuple[float, float] | None = None,
    cirrus: float | None = None,
    snow: float = 0.0,
    dark: float = 0.02,
    saturated: float = 0.002,
    nodata: float = 0.0,
    resampled: bool = True,
    jp2: bool | None = None,
) -> SyntheticS2Scene:
    """Draw a Sentinel-2 L2A product and write ``folder/<product name>.zip``.

    ``size``: 10 m pixels per side (a multiple of 6, so the 20 m and 60 m grids nest).
    ``cloud_cover``: exact fraction of valid 20 m pixels that are cloud (SCL 8 + 9); the
    metadata's Cloud_Coverage_Assessment adds thin cirrus, as Sen2Cor does. ``cirrus`` (default
    min(0.05, cloud_cover/4)), ``snow``, ``dark``, ``saturated``: fractions of the remaining valid
    pixels. ``nodata``: fraction of the window west of the swath edge (SCL 0, DN 0; the
    footprint then follows the edge). ``origin``: upper-left (x, y) of the window in the tile's
    UTM zone (snapped to the 60 m grid of the tile); default centred in the tile's 100 km
    square. ``resampled``: also write the coarser copies real products carry (B02-B04 at 20 m,
    the 20 m bands and SCL at 60 m). ``jp2``: JPEG 2000 members (default: when GDAL can write
    them), else GeoTIFF members named ``.tif``.
    """
    if size < 12 or size % 6:
        raise ValueError(f"size must be a multiple of 6 and >= 12 (10 m pixels), got {size}")
    for nm, v in (("cloud_cover", cloud_cover), ("snow", snow), ("dark", dark), ("saturated", saturated),
                  ("nodata", nodata)):
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{nm} must be a fraction in [0, 1], got {v}")
    if nodata > 0.6:
        raise ValueError(f"nodata must be <= 0.6 (the swath must cover part of the window), got {nodata}")
    if spacecraft not in _LAUNCH:
        raise ValueError(f"spacecraft must be one of {', '.join(_LAUNCH)}, got {spacecraft!r}")
    parts = baseline.split(".")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError(f"baseline must be NN.NN (e.g. 05.09), got {baseline!r}")
    if not 1 <= relative_orbit <= 143:
        raise ValueError(f"relative_orbit must be 1..143, got {relative_orbit}")
    if not isinstance(acquired, date):
        raise TypeError(f"acquired must be a datetime.date, got {type(acquired).__name__}")
    jp2 = _jp2_writable() if jp2 is None else jp2
    ext = "jp2" if jp2 else "tif"
    cirrus = min(0.05, cloud_cover / 4) if cirrus is None else cirrus

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    landscape = landscape if landscape is not None else Landscape(seed)
    epsg, tx, ty = mgrs_tile_origin(tile)
    crs = CRS.from_epsg(epsg)
    ext_m = size * 10.0
    if origin is None:
        ox, oy = tx + 50000.0 - ext_m / 2, ty - 50000.0 + ext_m / 2
    else:
        ox, oy = origin
    ox = tx + round((ox - tx) / 60.0) * 60.0
    oy = ty + round((oy - ty) / 60.0) * 60.0
    transforms = {r: Affine(float(r), 0.0, ox, 0.0, -float(r), oy) for r in (10, 20, 60)}
    shapes = {r: (size * 10 // r, size * 10 // r) for r in (10, 20, 60)}

    def centres(r: int) -> tuple[np.ndarray, np.ndarray]:
        k = np.arange(shapes[r][0]) + 0.5
        return ox + k * r, oy - k * r

    rng = np.random.default_rng([seed, int(tile[:2]), ord(tile[2]), ord(tile[3]), ord(tile[4]),
                                 acquired.toordinal(), relative_orbit])
    # time and sun: ~10:30 local solar time
    cx, cy = ox + ext_m / 2, oy - ext_m / 2
    lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(cx, cy)
    start = datetime.combine(acquired, time(10, 20, 41, 24000), tzinfo=timezone.utc) \
        + timedelta(seconds=round((9.0 - lon) / 15.0 * 3600))
    start = start.replace(microsecond=24000)
    sensing = start + timedelta(minutes=9, seconds=31, microseconds=(seed % 1000) * 1000)
    generated = (datetime.combine(acquired, time(0), tzinfo=timezone.utc) + timedelta(hours=14)
                 + timedelta(seconds=seed % 3600))
    sun_az, sun_el = sun_position(sensing, lon, lat)
    sun_zen = 90.0 - sun_el

    # ground and classes (20 m), then every band at its resolution
    n20 = shapes[20][0]
    g20 = _ground(landscape, *centres(20), crs)
    m20 = _draw_classes(n20, g20, g20["water"], sun_az, sun_el, cloud_cover, cirrus, snow, dark, saturated,
                        nodata, rng)
    scl = encode_scl(m20)
    up = {k: np.repeat(np.repeat(v, 2, 0), 2, 1) for k, v in m20.items()}  # 20 m -> 10 m
    down = {k: v[1::3, 1::3] for k, v in m20.items()}  # 20 m -> 60 m, nearest (centre pixel)
    scl60 = scl[1::3, 1::3]
    g10 = _ground(landscape, *centres(10), crs)
    g60 = _ground(landscape, *centres(60), crs)
    by_res = {10: (g10, up), 20: (g20, m20), 60: (g60, down)}
    ground: dict[str, np.ndarray] = {}
    observed: dict[str, np.ndarray] = {}
    dn: dict[tuple[str, int], np.ndarray] = {}
    for band in _NATIVE:
        r = _NATIVE[band]
        g, m = by_res[r]
        ground[band] = _bands_from(g, [band])[band]
        observed[band] = _observe(band, ground[band], m)
        d = _dn(observed[band], baseline)
        d[m["saturated"]] = 65535
        d[m["fill"]] = 0
        dn[(band, r)] = d
    if resampled:
        for band in ("B02", "B03", "B04"):
            dn[(band, 20)] = _block_mean(dn[(band, 10)], 2, m20["fill"])
        for band in ("B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12"):
            src = dn[(band, 20)]
            dn[(band, 60)] = _block_mean(src, 3, down["fill"])

    # footprint: the valid part of the window (swath edge), in WGS84
    n10 = size
    if nodata > 0:
        edge = np.arange(n20)[None, :] + 0.35 * (n20 - 1 - np.arange(n20))[:, None]
        thr = np.quantile(edge, nodata)  # same rule as _draw_classes, at pixel corners
        t20 = transforms[20]
        # the edge line col + 0.35*(n-1-row) = thr through the 20 m pixel-centre coordinates
        def pt(row: float) -> tuple[float, float]:
            col = thr - 0.35 * (n20 - 1 - row)
            return t20 @ (col + 0.5, row + 0.5)
        top, bottom = pt(-0.5), pt(n20 - 0.5)
        poly = Polygon([(top[0], oy), (ox + ext_m, oy), (ox + ext_m, oy - ext_m), (bottom[0], oy - ext_m)])
    else:
        poly = Polygon([(ox, oy), (ox + ext_m, oy), (ox + ext_m, oy - ext_m), (ox, oy - ext_m)])
    tr = Transformer.from_crs(epsg, 4326, always_xy=True)
    ring = np.asarray(poly.segmentize(ext_m / 4).exterior.coords)
    flon, flat = tr.transform(ring[:, 0], ring[:, 1])
    footprint = orient(Polygon(list(zip(flon, flat))), 1.0)

    # statistics as Sen2Cor reports them (percent of valid pixels; no data of all)
    valid = ~m20["fill"]
    nval = max(1, int(valid.sum()))
    pct = lambda k: 100.0 * float(m20[k].sum()) / nval  # noqa: E731
    cloud = pct("cloud_medium") + pct("cloud_high") + pct("cirrus")
    qi = {
        "NODATA_PIXEL_PERCENTAGE": 100.0 * float(m20["fill"].mean()),
        "SATURATED_DEFECTIVE_PIXEL_PERCENTAGE": pct("saturated"),
        "DARK_FEATURES_PERCENTAGE": pct("dark"), "CLOUD_SHADOW_PERCENTAGE": pct("shadow"),
        "VEGETATION_PERCENTAGE": pct("vegetation"), "NOT_VEGETATED_PERCENTAGE": pct("not_vegetated"),
        "WATER_PERCENTAGE": pct("water"), "UNCLASSIFIED_PERCENTAGE": pct("unclassified"),
        "MEDIUM_PROBA_CLOUDS_PERCENTAGE": pct("cloud_medium"), "HIGH_PROBA_CLOUDS_PERCENTAGE": pct("cloud_high"),
        "THIN_CIRRUS_PERCENTAGE": pct("cirrus"), "SNOW_ICE_PERCENTAGE": pct("snow"),
    }

    # names
    launch = _LAUNCH[spacecraft]
    abs_orbit = max(1, int((acquired - launch).days * 143 / 10) + 1)
    b = baseline.replace(".", "")
    name = (f"{spacecraft}_MSIL2A_{start:%Y%m%dT%H%M%S}_N{b}_R{relative_orbit:03d}_T{tile}_"
            f"{generated:%Y%m%dT%H%M%S}")
    safe = f"{name}.SAFE"
    ds_time = start + timedelta(seconds=2)
    granule_dir = f"L2A_T{tile}_A{abs_orbit:06d}_{ds_time:%Y%m%dT%H%M%S}"
    tile_id = (f"{spacecraft}_OPER_MSI_L2A_TL_2APS_{generated:%Y%m%dT%H%M%S}_A{abs_orbit:06d}_T{tile}_"
               f"N{baseline}")
    datastrip = f"{spacecraft}_OPER_MSI_L2A_DS_2APS_{generated:%Y%m%dT%H%M%S}_S{ds_time:%Y%m%dT%H%M%S}_N{baseline}"
    datatake = f"G{spacecraft}_{start:%Y%m%dT%H%M%S}_{abs_orbit:06d}_N{baseline}"
    stem = f"T{tile}_{start:%Y%m%dT%H%M%S}"
    img = f"{safe}/GRANULE/{granule_dir}/IMG_DATA"
    rasters: dict[str, np.ndarray] = {}
    members: dict[str, str] = {}
    for (band, r), d in sorted(dn.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        members[f"{band}_{r}m"] = f"{img}/R{r}m/{stem}_{band}_{r}m.{ext}"
        rasters[members[f"{band}_{r}m"]] = d
    for r, s in ((20, scl), (60, scl60)):
        if r == 60 and not resampled:
            continue
        members[f"SCL_{r}m"] = f"{img}/R{r}m/{stem}_SCL_{r}m.{ext}"
        rasters[members[f"SCL_{r}m"]] = s
    mtd_tl = f"{safe}/GRANULE/{granule_dir}/MTD_TL.xml"
    members["MTD_MSIL2A.xml"] = f"{safe}/MTD_MSIL2A.xml"
    members["MTD_TL.xml"] = mtd_tl
    files = [m[len(safe) + 1:].rsplit(".", 1)[0] for k, m in members.items() if k.endswith("m")]
    crs_name = PCRS.from_epsg(epsg).name
    view = [(4.5 + 0.1 * i + 0.5 * (seed % 7) / 7, 100.0 + 2.0 * i) for i in range(13)]
    doy = acquired.timetuple().tm_yday
    u = 1.0 / (1.0 - 0.01672 * math.cos(math.radians(0.9856 * (doy - 4)))) ** 2
    product_xml = _product_xml(name, start, generated, f"Sentinel-2{spacecraft[2]}", baseline, relative_orbit,
                               datatake, f"{spacecraft}_OPER_MSI_L2A_TL_2APS_{generated:%Y%m%dT%H%M%S}_A{abs_orbit:06d}_T{tile}_N{baseline}",
                               datastrip, files, cloud, footprint, qi, u)
    tile_xml = _tile_xml(tile_id, datastrip, sensing, epsg, crs_name,
                         {r: (shapes[r], transforms[r]) for r in (10, 20, 60)}, sun_zen, sun_az, view, cloud, qi)

    target = folder / f"{name}.zip"
    with tempfile.TemporaryDirectory(dir=folder, prefix=".synth-s2-") as tmp:
        t = Path(tmp)
        stamp = (generated.year, generated.month, generated.day, generated.hour, generated.minute, generated.second)
        with atomic_path(target) as part, zipfile.ZipFile(part, "w") as zf:  # readers never see half an archive
            dirs = sorted({p for m in members.values() for p in _parents(m)})
            for dname in dirs:
                zf.writestr(zipfile.ZipInfo(dname + "/", stamp), b"")
            for arc, text in ((members["MTD_MSIL2A.xml"], product_xml), (f"{safe}/manifest.safe", _MANIFEST),
                              (mtd_tl, tile_xml)):
                zi = zipfile.ZipInfo(arc, stamp)
                zi.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(zi, text.encode("utf-8"))
            for arc, data in rasters.items():
                r = int(arc.rsplit("_", 1)[1][:2])
                f = t / Path(arc).name
                _write_band(f, data, crs, transforms[r], jp2)
                zi = zipfile.ZipInfo(arc, stamp)
                zi.compress_type = zipfile.ZIP_STORED
                with open(f, "rb") as fh:
                    zf.writestr(zi, fh.read())
                f.unlink()

    truth: dict[str, np.ndarray | dict[str, np.ndarray]] = {k: v for k, v in m20.items() if not k.startswith("_")}
    truth.update({"scl": scl, "scl60": scl60, "reflectance": ground, "observed": observed})
    return SyntheticS2Scene(
        path=target.resolve(), product_id=name, tile=tile, crs=crs, transform=transforms[10],
        shape=(n10, n10), transforms=transforms, shapes=shapes, truth=truth, datetime=sensing,
        baseline=baseline, cloud_cover=round(cloud, 6), sun_azimuth=sun_az, sun_zenith=sun_zen,
        footprint=footprint, members=members,
    )


def _parents(member: str) -> list[str]:
    parts = member.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


__all__ = ["SyntheticS2Scene", "encode_scl", "mgrs_tile_origin", "write_sentinel2_archive"]
