"""Read a Landsat Collection 2 Level-2 archive in place: member list, MTL, raster headers.

Nothing is extracted: the tar's member table is read once with :mod:`tarfile` (headers only),
the MTL/ANG text members are read into memory from the same open archive, and the raster headers
through GDAL ``/vsitar/`` — once per distinct TIFF header: members whose first IFD has the same
tags (apart from where their pixel data lie) share the grid GDAL read for the first of them.
"""
from __future__ import annotations

import re
import struct
import tarfile
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import rasterio
from pyproj import Transformer
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

from ...archives.bands import BandInfo
from ...archives.container import (
    ArchiveError,
    MemberGrid,
    as_float,
    compression_note,
    has_sidecars,
    read_grid,
    read_tar_member,
    tar_members,
    tiff_signature,
    vsitar,
)
from ..base import SceneMetadata
from .bands import SENSORS
from .mtl import parse_odl

PRODUCT_ID = re.compile(
    r"^(?P<sensor>L[CEOT]0[4-9])_(?P<correction>L2S[PR])_(?P<path>\d{3})(?P<row>\d{3})_"
    r"(?P<acquired>\d{8})_(?P<processed>\d{8})_(?P<number>\d{2})_(?P<category>T1|T2|RT|A1|A2)$"
)


@dataclass(frozen=True)
class LandsatMetadata(SceneMetadata):
    """Metadata of one Landsat C2 L2 archive: the generic fields plus the WRS-2 path/row, the
    collection and processing fields and the parsed MTL."""

    provider_name: ClassVar[str] = "landsat"

    sensor: str  # "LC08"
    path: int  # WRS-2 path
    row: int  # WRS-2 row
    cloud_cover_land: float | None
    collection_category: str
    collection_number: str
    correction: str  # "L2SP"
    scene_id: str | None
    processed: datetime | None
    mtl: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def href(self, suffix: str) -> str:
        """GDAL path of a member, read in place."""
        if self.archive.is_absolute():  # open_archive resolved it already: no resolve() per href
            return f"/vsitar/{self.archive.as_posix()}/{self.members[suffix]}"
        return vsitar(self.archive, self.members[suffix])


def _fail(path: Path, reason: str) -> ArchiveError:
    return ArchiveError(f"{path}: {reason}")


#: a file name that begins like a product id names a sensor (LT05_…)
_NAMED_SENSOR = re.compile(r"^(L[CEOT]0[1-9])_")
#: what the MTL says (SENSOR_ID) for each sensor code of the product id
_MTL_SENSOR = {"LC09": ("OLI_TIRS", "OLI", "TIRS"), "LC08": ("OLI_TIRS", "OLI", "TIRS"), "LE07": ("ETM",),
               "LT05": ("TM",), "LT04": ("TM",)}


def _check_mtl_sensor(path: Path, product_id: str, sensor: str, attrs: dict[str, Any], contents: dict[str, Any]) -> None:
    """Refuse an MTL that describes another product or sensor than its member names (a mixed-up
    or edited archive would be calibrated and masked with the wrong band table)."""
    pid = contents.get("LANDSAT_PRODUCT_ID")
    if pid and str(pid) != product_id:
        raise _fail(path, f"the MTL describes {pid}, the members are {product_id}; a mixed-up archive")
    craft = attrs.get("SPACECRAFT_ID")
    platform = SENSORS[sensor][0]
    if craft and str(craft).lower().replace("_", "-") != platform:
        raise _fail(path, f"the MTL says SPACECRAFT_ID = {craft}, the members are {sensor} ({platform}); "
                          "a mixed-up archive")
    sid = attrs.get("SENSOR_ID")
    if sid and str(sid).upper() not in _MTL_SENSOR.get(sensor, (str(sid).upper(),)):
        raise _fail(path, f"the MTL says SENSOR_ID = {sid}, the members are {sensor} "
                          f"({'/'.join(_MTL_SENSOR[sensor][:1])}); a mixed-up archive")


_ANG_CORNERS = re.compile(r"^[ \t]*(BAND01_L1T_IMAGE_CORNER_(?:LINES|SAMPS))[ \t]*=[ \t]*\([^)]*\)", re.MULTILINE)


def _parse_ang(text: str) -> dict[str, Any]:
    """The ANG.txt values the footprint uses (the band 1 image corners).

    A real ANG.txt is ~120 KB of ephemeris and RPC tables; when each corner key occurs exactly
    once only those two assignments are parsed, otherwise the whole file (as before).
    """
    found = _ANG_CORNERS.findall(text)
    if sorted(found) == ["BAND01_L1T_IMAGE_CORNER_LINES", "BAND01_L1T_IMAGE_CORNER_SAMPS"]:
        return parse_odl("\n".join(m.group(0) for m in _ANG_CORNERS.finditer(text)))
    return parse_odl(text)


def _get(d: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _find(d: Any, key: str) -> Any:
    """First value of ``key`` anywhere in nested dicts."""
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            found = _find(v, key)
            if found is not None:
                return found
    return None


def _scene_datetime(acquired: date, centre: str | None) -> datetime:
    if not centre:
        return datetime(acquired.year, acquired.month, acquired.day, 12, tzinfo=timezone.utc)
    m = re.match(r"(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?", centre)
    if not m:
        raise ValueError(f"SCENE_CENTER_TIME {centre!r} is not HH:MM:SS[.f]Z")
    micro = int((m.group(4) or "0")[:6].ljust(6, "0"))  # USGS gives 7 digits
    return datetime(acquired.year, acquired.month, acquired.day, int(m.group(1)), int(m.group(2)),
                    int(m.group(3)), micro, tzinfo=timezone.utc)


def _footprint(mtl: dict[str, Any], ang: dict[str, Any] | None, epsg: int) -> Polygon:
    """The scene's valid-data outline in WGS84.

    Preferred: the L1T image corners from ANG.txt (the rotated swath, as USGS and stactools use
    them) on the MTL's product grid. Fallback: the product corners' lat/lon from the MTL.
    """
    proj = _get(mtl, "LANDSAT_METADATA_FILE", "PROJECTION_ATTRIBUTES") or {}
    if ang is not None:
        lines = _find(ang, "BAND01_L1T_IMAGE_CORNER_LINES")
        samps = _find(ang, "BAND01_L1T_IMAGE_CORNER_SAMPS")
        ulx = proj.get("CORNER_UL_PROJECTION_X_PRODUCT")
        uly = proj.get("CORNER_UL_PROJECTION_Y_PRODUCT")
        cell = proj.get("GRID_CELL_SIZE_REFLECTIVE")
        if lines and samps and len(lines) == 4 and len(samps) == 4 and ulx is not None and uly is not None \
                and cell is not None:
            xs = [float(ulx) + float(s) * float(cell) for s in samps]
            ys = [float(uly) - float(ln) * float(cell) for ln in lines]
            tr = Transformer.from_crs(epsg, 4326, always_xy=True)
            lon, lat = tr.transform(xs, ys)
            poly = Polygon(list(zip(lon, lat)))
            if poly.is_valid and poly.area > 0:
                return orient(poly, 1.0)
    corners = []
    for c in ("UL", "UR", "LR", "LL"):
        lat, lon = proj.get(f"CORNER_{c}_LAT_PRODUCT"), proj.get(f"CORNER_{c}_LON_PRODUCT")
        if lat is None or lon is None:
            raise ValueError(f"MTL has no CORNER_{c}_LAT/LON_PRODUCT and no usable ANG.txt")
        corners.append((float(lon), float(lat)))
    return orient(Polygon(corners), 1.0)


def _epsg_from_mtl(mtl: dict[str, Any]) -> int | None:
    proj = _get(mtl, "LANDSAT_METADATA_FILE", "PROJECTION_ATTRIBUTES") or {}
    if proj.get("MAP_PROJECTION") == "UTM" and proj.get("UTM_ZONE"):
        return 32600 + int(proj["UTM_ZONE"])  # C2 uses northern zones everywhere
    if proj.get("MAP_PROJECTION") == "PS":
        return 3031
    return None


def open_archive(path: str | Path) -> LandsatMetadata:
    """Read one Landsat 4/5/7/8/9 Collection 2 Level-2 archive in place.

    Raises :class:`ArchiveError` (``"<file>: <reason>"``) for unreadable, truncated or foreign
    archives.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise _fail(path, "no such file")
    with open(path, "rb") as fh:
        try:
            tar = tarfile.open(fileobj=fh, mode="r:*")
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            reason = str(exc).splitlines()[-1].strip(" -") if str(exc) else exc.__class__.__name__
            raise _fail(path, f"not a readable tar archive ({reason}){compression_note(path)}") from None
        with tar:
            # an uncompressed tar reads from ``fh`` itself: its TIFF headers can be read in place
            return _open_tar(path, tar, fh.fileno() if tar.fileobj is fh else None)


def _open_tar(path: Path, tar: tarfile.TarFile, fd: int | None) -> LandsatMetadata:
    infos = tar_members(path, tar)
    names = [m.name for m in infos]
    by_name = {m.name: m for m in infos}
    mtl_names = [n for n in names if n.endswith("_MTL.txt")]
    if not mtl_names:
        raise _fail(path, "no *_MTL.txt member: not a Landsat Collection 2 archive "
                          "(accepted: Landsat 4/5/7/8/9 C2 Level-2 .tar as shipped by USGS)")
    mtl_name = mtl_names[0]
    product_id = Path(mtl_name).name[: -len("_MTL.txt")]
    m = PRODUCT_ID.match(product_id)
    if not m:
        raise _fail(path, f"product id {product_id!r} is not a Landsat 4/5/7/8/9 Collection 2 "
                          "Level-2 id (LXSS_L2SP_PPPRRR_YYYYMMDD_YYYYMMDD_CC_TX)")
    sensor = m["sensor"]
    if sensor not in SENSORS:
        raise _fail(path, f"sensor {sensor} not supported; accepted: {', '.join(SENSORS)}")
    platform, instruments, table = SENSORS[sensor]
    named = _NAMED_SENSOR.match(path.name)
    if named and named[1] != sensor:
        raise _fail(path, f"the file is named as a {named[1]} ({SENSORS.get(named[1], ('?',))[0]}) archive but its "
                          f"members are {sensor} ({platform}): {product_id}; a renamed or mixed-up download")

    members: dict[str, str] = {}
    prefix = product_id + "_"
    for n in names:
        base = n.rsplit("/", 1)[-1]
        if not base.startswith(prefix):
            continue
        rest = base[len(prefix):]
        suffix = rest[: -len(".TIF")] if rest.upper().endswith(".TIF") else rest
        members[suffix] = n

    try:
        mtl = parse_odl(read_tar_member(path, by_name[mtl_name], tar))
    except ValueError as exc:
        raise _fail(path, f"unreadable MTL.txt: {exc}") from None
    root = mtl.get("LANDSAT_METADATA_FILE")
    if not isinstance(root, dict):
        raise _fail(path, "MTL.txt has no LANDSAT_METADATA_FILE group")
    attrs = root.get("IMAGE_ATTRIBUTES") or {}
    contents = root.get("PRODUCT_CONTENTS") or {}
    _check_mtl_sensor(path, product_id, sensor, attrs, contents)
    ang = None
    if "ANG.txt" in members:
        try:
            ang = _parse_ang(read_tar_member(path, by_name[members["ANG.txt"]], tar))
        except ValueError:
            ang = None  # footprint falls back to the MTL corners

    try:
        acquired = date.fromisoformat(str(attrs.get("DATE_ACQUIRED")))
    except ValueError:
        raise _fail(path, f"MTL DATE_ACQUIRED {attrs.get('DATE_ACQUIRED')!r} is not YYYY-MM-DD") from None
    try:
        when = _scene_datetime(acquired, attrs.get("SCENE_CENTER_TIME"))
    except ValueError as exc:
        raise _fail(path, str(exc)) from None

    # calibration from the MTL, falling back to the USGS constants of the table
    sr = root.get("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS") or {}
    st = root.get("LEVEL2_SURFACE_TEMPERATURE_PARAMETERS") or {}
    bands: list[BandInfo] = []
    grids: dict[str, MemberGrid] = {}
    seen: dict[tuple, MemberGrid] = {}  # TIFF header signature -> grid GDAL read for it
    reuse = not has_sidecars(names)
    root_posix = path.as_posix()
    for info in table:
        if info.suffix not in members:
            continue
        if info.mtl_band is not None:
            if info.suffix.startswith("SR_"):
                scale = as_float(sr.get(f"REFLECTANCE_MULT_BAND_{info.mtl_band}"))
                offset = as_float(sr.get(f"REFLECTANCE_ADD_BAND_{info.mtl_band}"))
            else:
                scale = as_float(st.get(f"TEMPERATURE_MULT_BAND_{info.mtl_band}"))
                offset = as_float(st.get(f"TEMPERATURE_ADD_BAND_{info.mtl_band}"))
            info = info.with_calibration(scale if scale is not None else info.scale,
                                         offset if offset is not None else info.offset)
        member = members[info.suffix]
        sig = None
        if fd is not None and reuse:
            ti = by_name[member]
            try:
                sig = tiff_signature(fd, ti.offset_data, ti.size)
            except (OSError, struct.error):
                sig = None
        if sig is not None and sig in seen:
            grids[info.suffix] = seen[sig]
        else:
            try:
                grids[info.suffix] = read_grid(f"/vsitar/{root_posix}/{member}")
            except rasterio.errors.RasterioError as exc:
                raise _fail(path, f"member {member} is not a readable raster: {exc}") from None
            if sig is not None:
                seen[sig] = grids[info.suffix]
        bands.append(info)
    if not any(b.suffix.startswith("SR_B") for b in bands) or "QA_PIXEL" not in members:
        raise _fail(path, "no SR_B* and QA_PIXEL raster members: not a Level-2 surface reflectance archive")

    epsgs = {g.epsg for g in grids.values() if g.epsg}
    if len(epsgs) > 1:
        raise _fail(path, f"members have different CRSs: {sorted(epsgs)}")
    epsg = epsgs.pop() if epsgs else _epsg_from_mtl(mtl)
    if epsg is None:
        raise _fail(path, "no EPSG code in the raster headers or the MTL")
    try:
        footprint = _footprint(mtl, ang, epsg)
    except ValueError as exc:
        raise _fail(path, str(exc)) from None

    l1 = root.get("LEVEL1_PROCESSING_RECORD") or {}
    l2 = root.get("LEVEL2_PROCESSING_RECORD") or {}
    processed = l2.get("DATE_PRODUCT_GENERATED")
    try:
        processed_dt = datetime.fromisoformat(str(processed).replace("Z", "+00:00")) if processed else None
    except ValueError:
        processed_dt = None
    cloud = as_float(attrs.get("CLOUD_COVER"))
    if cloud is None:
        raise _fail(path, "MTL has no CLOUD_COVER")
    return LandsatMetadata(
        archive=path,
        product_id=product_id,
        sensor=sensor,
        platform=platform,
        instruments=instruments,
        path=int(attrs.get("WRS_PATH") or m["path"]),
        row=int(attrs.get("WRS_ROW") or m["row"]),
        acquired=acquired,
        datetime=when,
        cloud_cover=cloud,
        cloud_cover_land=as_float(attrs.get("CLOUD_COVER_LAND")),
        collection_category=str(contents.get("COLLECTION_CATEGORY") or m["category"]),
        collection_number=str(contents.get("COLLECTION_NUMBER") or m["number"]).zfill(2),
        correction=m["correction"],
        scene_id=l1.get("LANDSAT_SCENE_ID"),
        processed=processed_dt,
        epsg=int(epsg),
        members=members,
        bands=tuple(bands),
        grids=grids,
        footprint=footprint,
        sun_azimuth=as_float(attrs.get("SUN_AZIMUTH")),
        sun_elevation=as_float(attrs.get("SUN_ELEVATION")),
        mtl=mtl,
    )


__all__ = ["ArchiveError", "LandsatMetadata", "PRODUCT_ID", "open_archive"]
