"""Read a Sentinel-2 Level-2A SAFE zip in place: member list, MTD_MSIL2A.xml, MTD_TL.xml, headers.

Nothing is extracted: the zip's central directory is read with :mod:`zipfile`, the two XML
metadata members are read into memory, and the raster headers through GDAL ``/vsizip/``.

Accepted: ESA/Copernicus ``S2[ABC]_MSIL2A_<start>_N<baseline>_R<orbit>_T<tile>_<generated>.zip``
holding one ``.SAFE`` folder with one granule (the compact naming used since December 2016).
The band files are JPEG 2000: GDAL must have a JPEG 2000 driver (``JP2OpenJPEG``, present in
rasterio's wheels) — an archive GDAL cannot read is refused with that reason. GeoTIFF members
with the same names and ``.tif`` are accepted as well.

Radiometry: reflectance = (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE, i.e. scale 1e-4 and
offset -0.1 from processing baseline 04.00 (25 January 2022) on, offset 0 before. DN 0 is no
data. The scene classification (SCL, 20 m) is the quality layer; :data:`SCL_FILL` and
:data:`SCL_DISTURBED` are the classes the cube treats as fill and as disturbed.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import rasterio
from pyproj import Transformer
from shapely.geometry import Polygon, box
from shapely.geometry.polygon import orient

from ...archives.bands import BandInfo
from ...archives.container import ArchiveError, MemberGrid, as_float, read_grid, read_zip_member, vsizip, zip_members
from ..base import SceneMetadata

COLLECTION = "sentinel-2-l2a"
JP2 = "image/jp2"
GEOTIFF = "image/tiff; application=geotiff"

#: compact product name (PSD 14.x): mission, level, start, baseline, relative orbit, tile, generated
PRODUCT_NAME = re.compile(
    r"^(?P<mission>S2[ABCD])_MSI(?P<level>L2A|L1C)_(?P<start>\d{8}T\d{6})_N(?P<baseline>\d{4})_"
    r"R(?P<orbit>\d{3})_T(?P<tile>\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2})_(?P<generated>\d{8}T\d{6})$"
)
#: a band file: ``T32UPU_20220615T102041_B02_10m.jp2`` (older names end the same way)
BAND_FILE = re.compile(r"_(?P<band>B\d\d|B8A|SCL|AOT|WVP|TCI)_(?P<res>10|20|60)m\.(?P<ext>jp2|tif|tiff)$",
                       re.IGNORECASE)

#: SCL classes (Sen2Cor; value, name, description)
SCL_CLASSES: tuple[tuple[int, str, str], ...] = (
    (0, "no_data", "No data"),
    (1, "saturated_defective", "Saturated or defective"),
    (2, "dark_area", "Dark area pixels (topographic or dark-feature shadows)"),
    (3, "cloud_shadow", "Cloud shadows"),
    (4, "vegetation", "Vegetation"),
    (5, "not_vegetated", "Not vegetated"),
    (6, "water", "Water"),
    (7, "unclassified", "Unclassified"),
    (8, "cloud_medium_probability", "Cloud medium probability"),
    (9, "cloud_high_probability", "Cloud high probability"),
    (10, "thin_cirrus", "Thin cirrus"),
    (11, "snow_ice", "Snow or ice"),
)
#: SCL classes that are outside the scene
SCL_FILL = frozenset({0})
#: SCL classes the cube masks as disturbed (analogue of the Landsat QA_PIXEL "flags" rule:
#: cloud, cloud shadow, cirrus; plus saturated/defective pixels). Dark area (2), unclassified
#: (7), snow (11) and water (6) count as clear, as snow and water do for Landsat.
SCL_DISTURBED = frozenset({1, 3, 8, 9, 10})


def scl_fill(scl: np.ndarray) -> np.ndarray:
    """True where an SCL value is no data (0) or missing (NaN in a float cube)."""
    scl = np.asarray(scl)
    if scl.dtype.kind == "f":
        nan = np.isnan(scl)
        return nan | np.isin(np.where(nan, 0, scl), list(SCL_FILL))
    return np.isin(scl, list(SCL_FILL))


def scl_disturbed(scl: np.ndarray) -> np.ndarray:
    """True where a non-fill SCL value is saturated, cloud shadow, cloud or cirrus."""
    scl = np.asarray(scl)
    v = np.where(np.isnan(scl), 0, scl) if scl.dtype.kind == "f" else scl
    return np.isin(v, list(SCL_DISTURBED)) & ~scl_fill(scl)


def scl_valid(scl: np.ndarray) -> np.ndarray:
    return ~scl_fill(scl) & ~scl_disturbed(scl)


def _b(band: str, key: str, cn: str, wl: float, fwhm: float, res: float, title: str) -> BandInfo:
    return BandInfo(band, key, f"{title} ({band}, {int(res)} m)", cn, wl, fwhm, 1e-4, -0.1, None, 0,
                    ("data", "reflectance"), res)


#: L2A bands in product order (S2A centre wavelength and FWHM, µm), at their native resolution
S2_BANDS: tuple[BandInfo, ...] = (
    _b("B01", "coastal", "coastal", 0.443, 0.027, 60.0, "Coastal aerosol"),
    _b("B02", "blue", "blue", 0.490, 0.098, 10.0, "Blue"),
    _b("B03", "green", "green", 0.560, 0.045, 10.0, "Green"),
    _b("B04", "red", "red", 0.665, 0.038, 10.0, "Red"),
    _b("B05", "rededge1", "rededge", 0.704, 0.019, 20.0, "Red edge 1"),
    _b("B06", "rededge2", "rededge", 0.740, 0.018, 20.0, "Red edge 2"),
    _b("B07", "rededge3", "rededge", 0.783, 0.028, 20.0, "Red edge 3"),
    _b("B08", "nir", "nir", 0.842, 0.145, 10.0, "Near infrared"),
    _b("B8A", "nir08", "nir08", 0.865, 0.033, 20.0, "Narrow near infrared"),
    _b("B09", "nir09", "nir09", 0.945, 0.026, 60.0, "Water vapour"),
    _b("B11", "swir16", "swir16", 1.610, 0.143, 20.0, "Short-wave infrared 1.6"),
    _b("B12", "swir22", "swir22", 2.190, 0.242, 20.0, "Short-wave infrared 2.2"),
)
SCL_BAND = BandInfo("SCL", "scl", "Scene classification (Sen2Cor SCL, 20 m)", nodata=0,
                    roles=("data-mask", "cloud", "cloud-shadow", "snow-ice", "water-mask"), gsd=20.0)
#: band id of BOA_ADD_OFFSET / Spectral_Information (physical band order, B10 absent in L2A)
BAND_IDS = {"B01": 0, "B02": 1, "B03": 2, "B04": 3, "B05": 4, "B06": 5, "B07": 6, "B08": 7, "B8A": 8,
            "B09": 9, "B10": 10, "B11": 11, "B12": 12}
#: non-raster members: key -> (asset key, media type, title)
S2_METADATA_MEMBERS: dict[str, tuple[str, str, str]] = {
    "MTD_MSIL2A.xml": ("product-metadata", "application/xml", "Product metadata (MTD_MSIL2A.xml)"),
    "MTD_TL.xml": ("granule-metadata", "application/xml", "Tile metadata (MTD_TL.xml)"),
}
#: Image_Content_QI element -> sentinel-2 extension field
_QI_FIELDS = {
    "NODATA_PIXEL_PERCENTAGE": "s2:nodata_pixel_percentage",
    "SATURATED_DEFECTIVE_PIXEL_PERCENTAGE": "s2:saturated_defective_pixel_percentage",
    "DARK_FEATURES_PERCENTAGE": "s2:dark_features_percentage",
    "CAST_SHADOW_PERCENTAGE": "s2:dark_features_percentage",
    "CLOUD_SHADOW_PERCENTAGE": "s2:cloud_shadow_percentage",
    "VEGETATION_PERCENTAGE": "s2:vegetation_percentage",
    "NOT_VEGETATED_PERCENTAGE": "s2:not_vegetated_percentage",
    "WATER_PERCENTAGE": "s2:water_percentage",
    "UNCLASSIFIED_PERCENTAGE": "s2:unclassified_percentage",
    "MEDIUM_PROBA_CLOUDS_PERCENTAGE": "s2:medium_proba_clouds_percentage",
    "HIGH_PROBA_CLOUDS_PERCENTAGE": "s2:high_proba_clouds_percentage",
    "THIN_CIRRUS_PERCENTAGE": "s2:thin_cirrus_percentage",
    "SNOW_ICE_PERCENTAGE": "s2:snow_ice_percentage",
    "DEGRADED_MSI_DATA_PERCENTAGE": "s2:degraded_msi_data_percentage",
}


@dataclass(frozen=True)
class Sentinel2Metadata(SceneMetadata):
    """Metadata of one Sentinel-2 L2A zip: the generic fields plus the MGRS tile, orbits,
    processing baseline, datatake and granule ids, angles and the Image_Content_QI percentages.

    ``members`` maps band names ("B02", "SCL") and "MTD_MSIL2A.xml"/"MTD_TL.xml" to zip members;
    ``grids`` maps band names to the grids of the chosen (native-resolution) files.
    """

    provider_name: ClassVar[str] = "sentinel-2"
    mgrs_tile: str = ""
    relative_orbit: int | None = None
    absolute_orbit: int | None = None
    orbit_state: str | None = None  # "descending"
    processing_baseline: str = ""  # "05.09"
    product_type: str = "S2MSI2A"
    datatake_id: str | None = None
    datatake_type: str | None = None
    datastrip_id: str | None = None
    granule_id: str | None = None
    tile_id: str | None = None
    generation_time: datetime | None = None
    sun_zenith: float | None = None
    view_incidence: float | None = None
    view_azimuth: float | None = None
    reflectance_conversion: float | None = None
    quality: dict[str, float] = field(default_factory=dict, compare=False)  # s2:* percentages

    def href(self, suffix: str) -> str:
        return vsizip(self.archive, self.members[suffix])

    def media_type(self, suffix: str) -> str:
        return JP2 if self.members[suffix].lower().endswith(".jp2") else GEOTIFF

    @property
    def grid_code(self) -> str:
        return f"MGRS-{self.mgrs_tile}"


def _fail(path: Path, reason: str) -> ArchiveError:
    return ArchiveError(f"{path}: {reason}")


# ------------------------------------------------------------------------------------------ XML
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _first(root: ET.Element, name: str) -> ET.Element | None:
    for el in root.iter():
        if _local(el.tag) == name:
            return el
    return None


def _all(root: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in root.iter() if _local(el.tag) == name]


def _text(root: ET.Element | None, name: str) -> str | None:
    if root is None:
        return None
    el = _first(root, name)
    return el.text.strip() if el is not None and el.text and el.text.strip() else None


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    t = text.strip().replace("Z", "+00:00")
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(.*)$", t)
    if not m:
        return None
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    try:
        dt = datetime.fromisoformat(f"{m.group(1)}.{frac}{m.group(3) or ''}")
    except ValueError:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _compact_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)


# ------------------------------------------------------------------------------------------ zip
def _parse_xml(path: Path, name: str) -> ET.Element:
    try:
        return ET.fromstring(read_zip_member(path, name))
    except ET.ParseError as exc:
        raise _fail(path, f"member {name} is not well-formed XML: {exc}") from None


def _jp2_driver() -> bool:
    with rasterio.Env() as env:
        return "JP2OpenJPEG" in env.drivers() or "JP2KAK" in env.drivers() or "JP2ECW" in env.drivers()


# ------------------------------------------------------------------------------------------ parts
def _tile_grids(tl: ET.Element) -> tuple[int | None, dict[int, MemberGrid]]:
    """EPSG and per-resolution grids from MTD_TL.xml's Tile_Geocoding (fallback for headers)."""
    code = _text(tl, "HORIZONTAL_CS_CODE")
    epsg = int(code.split(":")[1]) if code and code.upper().startswith("EPSG:") else None
    sizes: dict[int, tuple[int, int]] = {}
    for el in _all(tl, "Size"):
        r = int(float(el.get("resolution", "0")))
        rows, cols = _text(el, "NROWS"), _text(el, "NCOLS")
        if r and rows and cols:
            sizes[r] = (int(rows), int(cols))
    grids: dict[int, MemberGrid] = {}
    for el in _all(tl, "Geoposition"):
        r = int(float(el.get("resolution", "0")))
        ulx, uly, xd, yd = (as_float(_text(el, k)) for k in ("ULX", "ULY", "XDIM", "YDIM"))
        if r in sizes and ulx is not None and uly is not None and xd is not None and yd is not None:
            grids[r] = MemberGrid(sizes[r], (xd, 0.0, ulx, 0.0, yd, uly), epsg, "uint16", 0)
    return epsg, grids


def _footprint(mtd: ET.Element, grid: MemberGrid, epsg: int) -> Polygon:
    """Valid-data outline in WGS84: EXT_POS_LIST (lat lon pairs) of the product footprint,
    else the tile raster's bounds (densified edges, projected)."""
    text = _text(mtd, "EXT_POS_LIST")
    if text:
        vals = [float(v) for v in text.split()]
        if len(vals) >= 8 and len(vals) % 2 == 0:
            pts = [(vals[i + 1], vals[i]) for i in range(0, len(vals), 2)]
            poly = Polygon(pts)
            lons = [x for x, _ in pts]
            if max(lons) - min(lons) > 180:
                return poly  # crosses the antimeridian: split there by stac.items.footprint, not "repaired"
            if not poly.is_valid:
                poly = poly.buffer(0)
            if isinstance(poly, Polygon) and poly.area > 0:
                return orient(poly, 1.0)
    xmin, ymin, xmax, ymax = grid.bbox
    ring = np.asarray(box(xmin, ymin, xmax, ymax).segmentize(max(xmax - xmin, ymax - ymin) / 16).exterior.coords)
    lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(ring[:, 0], ring[:, 1])
    return orient(Polygon(list(zip(lon, lat))), 1.0)


def _choose_members(names: list[str]) -> dict[str, tuple[str, int]]:
    """Per band the member at its native resolution (else the finest present): name, res."""
    found: dict[str, dict[int, str]] = {}
    for n in names:
        if "/IMG_DATA/" not in f"/{n}":
            continue
        m = BAND_FILE.search(n)
        if m:
            found.setdefault(m["band"].upper(), {})[int(m["res"])] = n
    native = {b.suffix: int(b.gsd) for b in S2_BANDS}
    native["SCL"] = 20
    out: dict[str, tuple[str, int]] = {}
    for band, by_res in found.items():
        if band not in native:
            continue  # AOT, WVP, TCI
        res = native[band] if native[band] in by_res else min(by_res)
        out[band] = (by_res[res], res)
    return out


def _extra_members(names: list[str]) -> dict[str, str]:
    """Rasters beside the bands (no calibration, not read): the true colour image ``TCI`` (10 m),
    the aerosol ``AOT`` and water vapour ``WVP`` maps (20 m, else the finest), and the preview
    ``PVI`` (QI_DATA) — assets as stactools-sentinel2 lists them."""
    found: dict[str, dict[int, str]] = {}
    out: dict[str, str] = {}
    for n in names:
        m = BAND_FILE.search(n)
        if m and "/IMG_DATA/" in f"/{n}" and m["band"].upper() in ("TCI", "AOT", "WVP"):
            found.setdefault(m["band"].upper(), {})[int(m["res"])] = n
        elif n.upper().endswith("_PVI.JP2") and "/QI_DATA/" in f"/{n}":
            out["PVI"] = n
    native = {"TCI": 10, "AOT": 20, "WVP": 20}  # the resolutions stactools-sentinel2 lists unsuffixed
    for band, by_res in found.items():
        out[band] = by_res[native[band]] if native[band] in by_res else by_res[min(by_res)]
    return out


def _offsets(mtd: ET.Element, baseline: str) -> tuple[float, dict[str, float]]:
    """BOA quantification value and the add offset per band (DN units)."""
    q = as_float(_text(mtd, "BOA_QUANTIFICATION_VALUE")) or 10000.0
    by_id: dict[int, float] = {}
    for el in _all(mtd, "BOA_ADD_OFFSET"):
        v = as_float(el.text)
        band_id = el.get("band_id")
        if v is not None and band_id is not None:
            by_id[int(band_id)] = v
    names: dict[int, str] = {}
    for el in _all(mtd, "Spectral_Information"):
        physical, bid = el.get("physicalBand"), el.get("bandId")
        if physical and bid is not None:
            pb = physical.upper()
            names[int(bid)] = "B" + pb[1:].zfill(2) if pb[1:].isdigit() else pb
    default = -1000.0 if _baseline_at_least(baseline, "04.00") and not by_id else 0.0
    out = {}
    for band, band_number in BAND_IDS.items():
        ids = [i for i, n in names.items() if n == band] or [band_number]
        out[band] = by_id.get(ids[0], default)
    return q, out


def _baseline_at_least(baseline: str, ref: str) -> bool:
    try:
        return tuple(int(p) for p in baseline.split(".")) >= tuple(int(p) for p in ref.split("."))
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------ main
def open_sentinel2_archive(path: str | Path) -> Sentinel2Metadata:
    """Read one Sentinel-2 L2A SAFE zip in place.

    Raises :class:`ArchiveError` (``"<file>: <reason>"``) for unreadable, truncated, foreign or
    Level-1C archives, and for JPEG 2000 members when GDAL has no JPEG 2000 driver.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise _fail(path, "no such file")
    infos = zip_members(path)
    names = [i.filename for i in infos]
    mtd_names = [n for n in names if re.search(r"(^|/)(MTD_MSIL2A|[^/]*MTD_SAFL2A[^/]*)\.xml$", n)]
    if not mtd_names:
        if any(re.search(r"(^|/)(MTD_MSIL1C|[^/]*MTD_SAFL1C[^/]*)\.xml$", n) for n in names):
            raise _fail(path, "Sentinel-2 Level-1C product: only Level-2A (surface reflectance with "
                              "the SCL scene classification) is catalogued")
        raise _fail(path, "no MTD_MSIL2A.xml member: not a Sentinel-2 L2A SAFE zip (accepted: "
                          "S2A/S2B/S2C_MSIL2A_*.zip as distributed by ESA/Copernicus, or a Landsat "
                          "C2 L2 .tar)")
    mtd_name = mtd_names[0]
    tl_names = [n for n in names if re.search(r"(^|/)GRANULE/[^/]+/(MTD_TL|[^/]*MTD_L2A_TL[^/]*)\.xml$", n)]
    if len(tl_names) != 1:
        raise _fail(path, f"{len(tl_names)} granule metadata files (GRANULE/*/MTD_TL.xml); exactly one "
                          "granule per product is supported")
    tl_name = tl_names[0]
    mtd = _parse_xml(path, mtd_name)
    tl = _parse_xml(path, tl_name)
    if _text(mtd, "PRODUCT_TYPE") not in (None, "S2MSI2A", "S2MSI2Ap"):
        raise _fail(path, f"product type {_text(mtd, 'PRODUCT_TYPE')} is not S2MSI2A")

    safe = mtd_name.split("/")[0] if "/" in mtd_name else path.stem
    uri = _text(mtd, "PRODUCT_URI") or safe
    product_id = re.sub(r"\.SAFE$", "", uri.rsplit("/", 1)[-1])
    m = PRODUCT_NAME.match(product_id) or PRODUCT_NAME.match(re.sub(r"\.SAFE$", "", safe)) \
        or PRODUCT_NAME.match(path.stem)
    if m and m["level"] != "L2A":
        raise _fail(path, "Sentinel-2 Level-1C product: only Level-2A is catalogued")

    craft = _text(mtd, "SPACECRAFT_NAME") or (f"Sentinel-2{m['mission'][2]}" if m else None)
    if not craft or not re.match(r"^Sentinel-2[A-D]$", craft):
        raise _fail(path, f"spacecraft {craft!r} is not Sentinel-2A/B/C/D")
    platform = craft.lower()
    baseline = _text(mtd, "PROCESSING_BASELINE") or (f"{m['baseline'][:2]}.{m['baseline'][2:]}" if m else "")
    if not re.match(r"^\d\d\.\d\d$", baseline):
        raise _fail(path, f"processing baseline {baseline!r} is not NN.NN")

    # tile, orbit, time
    tile_id = _text(tl, "TILE_ID")
    tile = m["tile"] if m else None
    if tile is None and tile_id:
        t = re.search(r"_T(\d{2}[A-Z]{3})_", tile_id)
        tile = t.group(1) if t else None
    if tile is None:
        raise _fail(path, "no MGRS tile in the product name or TILE_ID")
    rel = _text(mtd, "SENSING_ORBIT_NUMBER") or (m["orbit"] if m else None)
    rel_orbit = int(rel) if rel and rel.isdigit() else None
    granule_dir = tl_name.rsplit("/", 2)[-2]
    a = re.search(r"_A(\d{6})_", f"{granule_dir}_{tile_id or ''}_")
    abs_orbit = int(a.group(1)) if a else None
    # the datatake's sensing start, as stactools-sentinel2 (and the product name) date the product;
    # the granule's own SENSING_TIME is the fallback
    when = _parse_time(_text(mtd, "PRODUCT_START_TIME")) or _parse_time(_text(tl, "SENSING_TIME")) \
        or (_compact_time(m["start"]) if m else None)
    if when is None:
        raise _fail(path, "no SENSING_TIME / PRODUCT_START_TIME and no product name to take it from")
    generated = _parse_time(_text(mtd, "GENERATION_TIME")) or (_compact_time(m["generated"]) if m else None)
    cloud = as_float(_text(mtd, "Cloud_Coverage_Assessment"))
    if cloud is None:
        cloud = as_float(_text(tl, "CLOUDY_PIXEL_PERCENTAGE"))
    if cloud is None:
        raise _fail(path, "no Cloud_Coverage_Assessment in MTD_MSIL2A.xml (nor CLOUDY_PIXEL_PERCENTAGE)")

    # bands and grids
    chosen = _choose_members(names)
    if "SCL" not in chosen or not any(b.suffix in chosen for b in S2_BANDS):
        raise _fail(path, "no IMG_DATA band files (B02_10m, SCL_20m, ...): not a complete L2A product")
    if any(n.lower().endswith(".jp2") for n, _ in chosen.values()) and not _jp2_driver():
        raise _fail(path, "band files are JPEG 2000 but this GDAL has no JPEG 2000 driver "
                          "(JP2OpenJPEG); install a GDAL/rasterio build with OpenJPEG")
    tl_epsg, tl_grids = _tile_grids(tl)
    q, add = _offsets(mtd, baseline)
    nodata = 0
    for el in _all(mtd, "Special_Values"):
        if _text(el, "SPECIAL_VALUE_TEXT") == "NODATA":
            nodata = int(as_float(_text(el, "SPECIAL_VALUE_INDEX")) or 0)
    members: dict[str, str] = {}
    grids: dict[str, MemberGrid] = {}
    bands: list[BandInfo] = []
    for info in (*S2_BANDS, SCL_BAND):
        if info.suffix not in chosen:
            continue
        member, res = chosen[info.suffix]
        try:
            g = read_grid(vsizip(path, member))
        except rasterio.errors.RasterioError as exc:
            raise _fail(path, f"member {member} is not a readable raster: {exc}") from None
        if g.epsg is None or tuple(g.transform) == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
            fb = tl_grids.get(res)  # header without georeferencing: use MTD_TL's geocoding
            if fb is None or fb.shape != g.shape:
                raise _fail(path, f"member {member} has no georeferencing and MTD_TL.xml none for {res} m")
            g = MemberGrid(g.shape, fb.transform, g.epsg or fb.epsg, g.dtype, g.nodata)
        if info.suffix != "SCL":
            info = BandInfo(info.suffix, info.key, info.title, info.common_name, info.wavelength, info.fwhm,
                            1.0 / q, add.get(info.suffix, 0.0) / q, None, nodata, info.roles, float(res))
        members[info.suffix] = member
        grids[info.suffix] = g
        bands.append(info)
    members["MTD_MSIL2A.xml"] = mtd_name
    members["MTD_TL.xml"] = tl_name
    members.update(_extra_members(names))

    epsgs = {g.epsg for g in grids.values() if g.epsg}
    if len(epsgs) > 1:
        raise _fail(path, f"members have different CRSs: {sorted(epsgs)}")
    epsg = epsgs.pop() if epsgs else tl_epsg
    if epsg is None:
        raise _fail(path, "no EPSG code in the raster headers or MTD_TL.xml")
    ref = next(grids[b.suffix] for b in bands if "reflectance" in b.roles)
    try:
        footprint = _footprint(mtd, ref, epsg)
    except ValueError as exc:
        raise _fail(path, f"unusable footprint: {exc}") from None

    # angles and quality indicators
    sun = _first(tl, "Mean_Sun_Angle")
    sun_zen, sun_az = as_float(_text(sun, "ZENITH_ANGLE")), as_float(_text(sun, "AZIMUTH_ANGLE"))
    inc = [(as_float(_text(el, "ZENITH_ANGLE")), as_float(_text(el, "AZIMUTH_ANGLE")))
           for el in _all(tl, "Mean_Viewing_Incidence_Angle")]
    inc = [(z, az) for z, az in inc if z is not None and az is not None]
    quality: dict[str, float] = {}
    for src in (tl, mtd):
        qi = _first(src, "Image_Content_QI")
        if qi is None:
            continue
        for el in qi:
            key = _QI_FIELDS.get(_local(el.tag))
            v = as_float(el.text)
            if key and v is not None and key not in quality:
                quality[key] = min(100.0, max(0.0, v))
    datatake = _first(mtd, "Datatake")
    granule = _first(mtd, "Granule")
    direction = _text(mtd, "SENSING_ORBIT_DIRECTION")
    return Sentinel2Metadata(
        archive=path,
        product_id=product_id,
        platform=platform,
        instruments=("msi",),
        acquired=when.date(),
        datetime=when,
        cloud_cover=min(100.0, max(0.0, cloud)),
        epsg=int(epsg),
        members=members,
        bands=tuple(bands),
        grids=grids,
        footprint=footprint,
        sun_azimuth=sun_az,
        sun_elevation=None if sun_zen is None else 90.0 - sun_zen,
        mgrs_tile=tile,
        relative_orbit=rel_orbit,
        absolute_orbit=abs_orbit,
        orbit_state=direction.lower() if direction and direction.lower() in ("ascending", "descending") else None,
        processing_baseline=baseline,
        product_type=_text(mtd, "PRODUCT_TYPE") or "S2MSI2A",
        datatake_id=datatake.get("datatakeIdentifier") if datatake is not None else None,
        datatake_type=_text(mtd, "DATATAKE_TYPE"),
        datastrip_id=granule.get("datastripIdentifier") if granule is not None else None,
        granule_id=granule.get("granuleIdentifier") if granule is not None else None,
        tile_id=tile_id,
        generation_time=generated,
        sun_zenith=sun_zen,
        view_incidence=float(np.mean([z for z, _ in inc])) if inc else None,
        view_azimuth=float(np.mean([az for _, az in inc])) % 360.0 if inc else None,
        reflectance_conversion=as_float(_text(mtd, "U")),
        quality=quality,
    )


def scl_classes() -> list[dict[str, Any]]:
    """``classification:classes`` of the SCL asset."""
    return [{"value": v, "name": n, "description": d} for v, n, d in SCL_CLASSES]


__all__ = ["COLLECTION", "S2_BANDS", "SCL_BAND", "SCL_CLASSES", "SCL_DISTURBED", "SCL_FILL",
           "Sentinel2Metadata", "open_sentinel2_archive", "scl_classes", "scl_disturbed", "scl_fill",
           "scl_valid"]
