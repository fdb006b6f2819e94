"""Read a Landsat Collection 2 Level-2 archive in place: member list, MTL, raster headers.

Nothing is extracted: the tar's member table is read once with :mod:`tarfile` (headers only),
the MTL/ANG text members are read into memory from the same open archive, and the raster headers
through GDAL ``/vsitar/`` — once per distinct TIFF header: members whose first IFD has the same
tags (apart from where their pixel data lie) share the grid GDAL read for the first of them.
"""
from __future__ import annotations

import os
import re
import struct
import tarfile
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import rasterio

from ..errors import ImalysError
from affine import Affine
from pyproj import Transformer
from shapely.geometry import Polygon, mapping
from shapely.geometry.polygon import orient

from .bands import METADATA_MEMBERS, SENSORS, BandInfo
from .mtl import parse_odl


class ArchiveError(ImalysError):
    """An archive that cannot be catalogued; the message is ``"<file>: <reason>"``."""


PRODUCT_ID = re.compile(
    r"^(?P<sensor>L[CEOT]0[4-9])_(?P<correction>L2S[PR])_(?P<path>\d{3})(?P<row>\d{3})_"
    r"(?P<acquired>\d{8})_(?P<processed>\d{8})_(?P<number>\d{2})_(?P<category>T1|T2|RT|A1|A2)$"
)


@dataclass(frozen=True)
class Grid:
    """A raster member's pixel grid, read from its header."""

    shape: tuple[int, int]  # rows, cols
    transform: tuple[float, float, float, float, float, float]  # affine a, b, c, d, e, f
    epsg: int | None
    dtype: str
    nodata: float | None
    cog: bool = False  # laid out as a COG (tiled unless small, image data after the headers)

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in the grid's CRS."""
        t = Affine(*self.transform)
        rows, cols = self.shape
        xs, ys = zip(*(t @ (c, r) for c, r in ((0, 0), (cols, 0), (0, rows), (cols, rows))))
        return (min(xs), min(ys), max(xs), max(ys))


@dataclass(frozen=True)
class SceneMetadata:
    """Everything a STAC item needs about one archive."""

    archive: Path  # absolute path
    product_id: str
    sensor: str  # "LC08"
    platform: str  # "landsat-8"
    instruments: tuple[str, ...]
    path: int
    row: int
    acquired: date
    datetime: datetime  # scene centre, tz-aware UTC
    cloud_cover: float
    cloud_cover_land: float | None
    collection_category: str
    collection_number: str
    correction: str  # "L2SP"
    scene_id: str | None
    processed: datetime | None
    epsg: int
    members: dict[str, str]  # suffix ("SR_B2", "MTL.txt") -> member name
    bands: tuple[BandInfo, ...]  # raster members present, calibration from the MTL
    grids: dict[str, Grid]  # suffix -> grid of that raster member
    footprint: Polygon  # WGS84, counter-clockwise
    sun_azimuth: float | None
    sun_elevation: float | None
    mtl: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def href(self, suffix: str) -> str:
        """GDAL path of a member, read in place."""
        if self.archive.is_absolute():  # open_archive resolved it already: no resolve() per href
            return f"/vsitar/{self.archive.as_posix()}/{self.members[suffix]}"
        return vsitar(self.archive, self.members[suffix])

    @property
    def footprint_geojson(self) -> dict[str, Any]:
        return mapping(self.footprint)


def vsitar(archive: Path | str, member: str) -> str:
    """``/vsitar/`` path of an archive member (archive path made absolute)."""
    return f"/vsitar/{Path(archive).resolve().as_posix()}/{member}"


def _fail(path: Path, reason: str) -> ArchiveError:
    return ArchiveError(f"{path}: {reason}")


_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ", "xz"), (b"(\xb5/\xfd", "zstd"),
          (b"PK\x03\x04", "zip"))


def _compression_note(path: Path) -> str:
    """What a file that is no tar really is, from its first bytes (a renamed .tar.gz, a zip…)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return ""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return f"; the file is {kind}-compressed, not a plain tar as USGS ships it (incomplete download or renamed .tar.{kind.replace('gzip', 'gz')}?)"
    if not head.strip(b"\0"):
        return "; the file starts with zero bytes (an incomplete download?)"
    return ""


def _members(path: Path, tar: tarfile.TarFile | None = None) -> list[tarfile.TarInfo]:
    """Regular file members of a tar, refusing truncated archives (``tar``: already open)."""
    size = path.stat().st_size
    try:
        if tar is None:
            with tarfile.open(path, "r:*") as t:
                infos = [m for m in t.getmembers() if m.isfile()]
        else:
            infos = [m for m in tar.getmembers() if m.isfile()]
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[-1].strip(" -") if str(exc) else exc.__class__.__name__
        raise _fail(path, f"not a readable tar archive ({reason}){_compression_note(path)}") from None
    if not infos:
        raise _fail(path, "empty or not a tar archive (no file members)")
    # A truncated uncompressed tar lists its members but the last one's data runs past the end.
    if not path.name.lower().endswith((".gz", ".tgz", ".bz2", ".xz")):
        last = max(infos, key=lambda m: m.offset_data + m.size)
        if last.offset_data + last.size > size:
            raise _fail(path, f"truncated archive: member {last.name} ends at byte "
                              f"{last.offset_data + last.size}, file has {size}")
    return infos


def _read_member(path: Path, name: str | tarfile.TarInfo, tar: tarfile.TarFile | None = None) -> str:
    """A text member (``tar``: the archive already open, else it is opened for this read)."""
    label = name.name if isinstance(name, tarfile.TarInfo) else name
    try:
        if tar is None:
            with tarfile.open(path, "r:*") as t:
                return _read_member(path, name, t)
        fh = tar.extractfile(name)
        if fh is None:
            raise _fail(path, f"member {label} is not a regular file")
        return fh.read().decode("utf-8", errors="replace")
    except (tarfile.TarError, EOFError, OSError, KeyError) as exc:
        raise _fail(path, f"cannot read member {label}: {exc}") from None


# ---------------------------------------------------------------------------------------- TIFF headers
#: TIFF field types -> bytes per value (classic + BigTIFF)
_TIFF_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
                   16: 8, 17: 8, 18: 8}
#: tags that only say where a member's pixel data lie: left out of the header signature
_TIFF_DATA_TAGS = frozenset({273, 279, 324, 325})  # StripOffsets, StripByteCounts, TileOffsets, TileByteCounts
#: sidecar files GDAL would consult for a raster's georeferencing or nodata (then no reuse)
_SIDECARS = (".aux.xml", ".tfw", ".tifw", ".wld", ".tab", ".ovr", ".msk")
_HEAD = 4096


def tiff_signature(fd: int, start: int, size: int) -> tuple | None:
    """The first IFD of a TIFF stored at bytes ``start .. start + size`` of file ``fd``: every
    tag (id, type, count, value bytes) except the strip/tile offsets and byte counts, or None if
    the bytes are not a TIFF this parser understands.

    Two members with equal signatures have the same size, data type, nodata, georeferencing and
    compression as far as GDAL's GTiff driver can tell from the file itself, hence the same
    :class:`Grid`; a None only means "read this one with GDAL".
    """
    if size < 16:
        return None
    head = os.pread(fd, min(size, _HEAD), start)

    def read(off: int, n: int) -> bytes | None:
        if off < 0 or off + n > size:
            return None
        if off + n <= len(head):
            return head[off:off + n]
        b = os.pread(fd, n, start + off)
        return b if len(b) == n else None

    if len(head) < 16:
        return None
    bo = {b"II": "<", b"MM": ">"}.get(head[:2])
    if bo is None:
        return None
    magic = struct.unpack(bo + "H", head[2:4])[0]
    if magic == 42:
        big, ifd = False, struct.unpack(bo + "I", head[4:8])[0]
        cnt_fmt, cnt_size, entry_fmt, entry_size, inline = "H", 2, "HHI4s", 12, 4
    elif magic == 43:
        if struct.unpack(bo + "HH", head[4:8]) != (8, 0):
            return None
        big, ifd = True, struct.unpack(bo + "Q", head[8:16])[0]
        cnt_fmt, cnt_size, entry_fmt, entry_size, inline = "Q", 8, "HHQ8s", 20, 8
    else:
        return None
    raw = read(ifd, cnt_size)
    if raw is None:
        return None
    n = struct.unpack(bo + cnt_fmt, raw)[0]
    if not 0 < n < 4096:
        return None
    table = read(ifd + cnt_size, n * entry_size)
    if table is None:
        return None
    tags = []
    for i in range(n):
        tag, typ, count, value = struct.unpack_from(bo + entry_fmt, table, i * entry_size)
        if tag in _TIFF_DATA_TAGS:
            continue
        width = _TIFF_TYPE_SIZE.get(typ)
        if width is None:
            return None
        nbytes = width * count
        if nbytes > inline:
            off = struct.unpack(bo + ("Q" if big else "I"), value)[0]
            value = read(off, nbytes)
            if value is None:
                return None
        else:
            value = value[:nbytes]
        tags.append((tag, typ, count, value))
    return (bo, big, tuple(tags))


def _has_sidecars(names: list[str]) -> bool:
    return any(n.lower().endswith(_SIDECARS) for n in names)


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
        if lines and samps and len(lines) == 4 and len(samps) == 4 and None not in (ulx, uly, cell):
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


def read_grid(href: str) -> Grid:
    """Header of one raster (any GDAL path)."""
    with rasterio.open(href) as ds:
        return Grid(
            shape=(ds.height, ds.width),
            transform=tuple(ds.transform)[:6],
            epsg=ds.crs.to_epsg() if ds.crs else None,
            dtype=ds.dtypes[0],
            nodata=ds.nodata,
            cog=_cog_layout(ds),
        )


def _cog_layout(ds) -> bool:
    """Whether an open GeoTIFF is laid out as a Cloud Optimized GeoTIFF as rio-cogeo judges it:
    tiled unless small, the first image block after the header (read from the header GDAL
    already parsed, no extra I/O)."""
    if ds.driver != "GTiff":
        return False
    bh, bw = ds.block_shapes[0]
    if max(ds.width, ds.height) > 512 and bw == ds.width and bh < ds.height:
        return False  # striped: a reader of one window reads whole rows
    try:
        ifd = int(ds.get_tag_item("IFD_OFFSET", "TIFF", bidx=1) or 0)
        block = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1) or 0)
    except (ValueError, TypeError):
        return False
    return 0 < ifd < block


def _float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def open_archive(path: str | Path) -> SceneMetadata:
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
            raise _fail(path, f"not a readable tar archive ({reason}){_compression_note(path)}") from None
        with tar:
            # an uncompressed tar reads from ``fh`` itself: its TIFF headers can be read in place
            return _open_tar(path, tar, fh.fileno() if tar.fileobj is fh else None)


def _open_tar(path: Path, tar: tarfile.TarFile, fd: int | None) -> SceneMetadata:
    infos = _members(path, tar)
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
        mtl = parse_odl(_read_member(path, by_name[mtl_name], tar))
    except ValueError as exc:
        raise _fail(path, f"unreadable MTL.txt: {exc}") from None
    root = mtl.get("LANDSAT_METADATA_FILE")
    if not isinstance(root, dict):
        raise _fail(path, "MTL.txt has no LANDSAT_METADATA_FILE group")
    attrs = root.get("IMAGE_ATTRIBUTES") or {}
    contents = root.get("PRODUCT_CONTENTS") or {}
    ang = None
    if "ANG.txt" in members:
        try:
            ang = _parse_ang(_read_member(path, by_name[members["ANG.txt"]], tar))
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
    grids: dict[str, Grid] = {}
    seen: dict[tuple, Grid] = {}  # TIFF header signature -> grid GDAL read for it
    reuse = not _has_sidecars(names)
    root_posix = path.as_posix()
    for info in table:
        if info.suffix not in members:
            continue
        if info.mtl_band is not None:
            if info.suffix.startswith("SR_"):
                scale = _float(sr.get(f"REFLECTANCE_MULT_BAND_{info.mtl_band}"))
                offset = _float(sr.get(f"REFLECTANCE_ADD_BAND_{info.mtl_band}"))
            else:
                scale = _float(st.get(f"TEMPERATURE_MULT_BAND_{info.mtl_band}"))
                offset = _float(st.get(f"TEMPERATURE_ADD_BAND_{info.mtl_band}"))
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
    cloud = _float(attrs.get("CLOUD_COVER"))
    if cloud is None:
        raise _fail(path, "MTL has no CLOUD_COVER")
    return SceneMetadata(
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
        cloud_cover_land=_float(attrs.get("CLOUD_COVER_LAND")),
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
        sun_azimuth=_float(attrs.get("SUN_AZIMUTH")),
        sun_elevation=_float(attrs.get("SUN_ELEVATION")),
        mtl=mtl,
    )


__all__ = ["ArchiveError", "Grid", "SceneMetadata", "open_archive", "read_grid", "tiff_signature", "vsitar",
           "METADATA_MEMBERS"]
