"""Generic container helpers every provider uses: tar and zip member tables read in place, text
members read into memory, TIFF header signatures (members with equal headers share one GDAL
read), raster member grids and the GDAL ``/vsitar/`` and ``/vsizip/`` paths of members.

Nothing here knows a product line; the providers (``imalys_stac.providers``) build on it.
"""
from __future__ import annotations

import os
import struct
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from affine import Affine

from ..errors import ImalysError
from ..gdalnames import gdal_name, shown


class ArchiveError(ImalysError):
    """An archive that cannot be catalogued; the message is ``"<file>: <reason>"``."""


def fail(path: Path, reason: str) -> ArchiveError:
    return ArchiveError(f"{path}: {reason}")


@dataclass(frozen=True)
class MemberGrid:
    """A raster member's pixel grid, read from its header (not the cube's :class:`~imalys_stac.cube.grid.Grid`)."""

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


def vsitar(archive: Path | str, member: str) -> str:
    """``/vsitar/`` path of an archive member (archive path made absolute)."""
    return f"/vsitar/{Path(archive).resolve().as_posix()}/{member}"


def vsizip(archive: Path | str, member: str) -> str:
    """``/vsizip/`` path of an archive member (archive path made absolute)."""
    return f"/vsizip/{Path(archive).resolve().as_posix()}/{member}"


def as_float(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def read_head(path: Path, n: int = 512) -> bytes:
    """The first ``n`` bytes of a file (b"" when it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


# ---------------------------------------------------------------------------------------------- tar
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ", "xz"), (b"(\xb5/\xfd", "zstd"),
          (b"PK\x03\x04", "zip"))


_EXT = {"gzip": "gz", "bzip2": "bz2", "xz": "xz", "zstd": "zst", "zip": "zip"}
_COMPRESSED_ENDINGS = (".gz", ".tgz", ".bz2", ".xz", ".zst")


def compressed_as(path: Path) -> str | None:
    """The compression a file's first bytes show (gzip, bzip2, xz, zstd, zip), or None."""
    head = read_head(path, 8)
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)


def compression_note(path: Path) -> str:
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


def tar_members(path: Path, tar: tarfile.TarFile | None = None) -> list[tarfile.TarInfo]:
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
        raise fail(path, f"not a readable tar archive ({reason}){compression_note(path)}") from None
    if not infos:
        raise fail(path, "empty or not a tar archive (no file members)")
    kind = compressed_as(path)
    if kind is not None and not path.name.lower().endswith(_COMPRESSED_ENDINGS):
        # tarfile reads it, but GDAL's /vsitar/ and the in-place header reads take the name's word
        # for a plain tar (and its member offsets would be read as "past the end": "truncated")
        ext = _EXT[kind]
        raise fail(path, f"the file is {kind}-compressed but named {path.suffix} (USGS ships plain tars); "
                         f"rename it to {path.stem}{path.suffix}.{ext} to read it as it is, or decompress it")
    # A truncated uncompressed tar lists its members but the last one's data runs past the end.
    if kind is None:
        last = max(infos, key=lambda m: m.offset_data + m.size)
        if last.offset_data + last.size > size:
            raise fail(path, f"truncated archive: member {last.name} ends at byte "
                             f"{last.offset_data + last.size}, file has {size}")
    return infos


def read_tar_member(path: Path, name: str | tarfile.TarInfo, tar: tarfile.TarFile | None = None) -> str:
    """A text member (``tar``: the archive already open, else it is opened for this read)."""
    label = name.name if isinstance(name, tarfile.TarInfo) else name
    try:
        if tar is None:
            with tarfile.open(path, "r:*") as t:
                return read_tar_member(path, name, t)
        fh = tar.extractfile(name)
        if fh is None:
            raise fail(path, f"member {label} is not a regular file")
        return fh.read().decode("utf-8", errors="replace")
    except (tarfile.TarError, EOFError, OSError, KeyError) as exc:
        raise fail(path, f"cannot read member {label}: {exc}") from None


def split_member_href(href: str) -> tuple[str, str] | None:
    """(archive, member) of a ``/vsitar/`` or ``/vsizip/`` path, or None for other paths."""
    for prefix in ("/vsitar/", "/vsizip/"):
        if href.startswith(prefix):
            rest = href[len(prefix):]
            low = rest.lower()
            for ending in (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip"):
                i = low.find(ending + "/")
                if i >= 0:
                    cut = i + len(ending)
                    return rest[:cut], rest[cut + 1:]
    return None


def _gdal_reasons(exc: BaseException) -> list[str]:
    """GDAL's own messages in an error's chain, the innermost (most specific) first, without
    rasterio's "See previous exception" wrapper."""
    out: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(out) < 8:
        text = shown(str(seen.args[-1] if seen.args else seen)).strip()  # the user's path, not a link
        if text and "See previous exception" not in text and text not in out:
            out.append(text)
        seen = seen.__cause__ or seen.__context__
    return out[::-1]


def unreadable_pixels(href: str, exc: BaseException) -> ArchiveError:
    """The error of a raster whose pixels cannot be read (corrupt tiles, a member cut short),
    naming the archive and the member instead of GDAL's "Read failed"."""
    reasons = _gdal_reasons(exc)
    detail = f" ({reasons[0]})" if reasons else ""
    parts = split_member_href(href)
    if parts is not None:
        archive, member = parts
        err = ArchiveError(f"{archive}: member {member} has damaged pixel data{detail}; the archive is corrupt "
                           "(an incomplete or damaged download?)")
    else:
        err = ArchiveError(f"{href}: cannot read its pixel data{detail}; the file is damaged or was changed")
    err.hint = "download the archive again (or remove it from the folder) and run import again"
    return err


# ---------------------------------------------------------------------------------------------- zip
def zip_members(path: Path) -> list[zipfile.ZipInfo]:
    """File members of a zip, refusing truncated archives."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise fail(path, f"not a readable zip archive ({exc or exc.__class__.__name__})") from None
    if not infos:
        raise fail(path, "empty zip archive (no file members)")
    for i in infos:  # a zip cut short loses its central directory; a damaged one may not
        if i.header_offset + len(i.filename) + 30 + i.compress_size > size:
            raise fail(path, f"truncated archive: member {i.filename} runs past the end of the file")
    return infos


def read_zip_member(path: Path, name: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.read(name)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise fail(path, f"cannot read member {name}: {exc}") from None


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
    :class:`MemberGrid`; a None only means "read this one with GDAL".
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


def has_sidecars(names: list[str]) -> bool:
    """Whether a member list holds files GDAL would read beside a raster (then no header reuse)."""
    return any(n.lower().endswith(_SIDECARS) for n in names)


def read_grid(href: str) -> MemberGrid:
    """Header of one raster (any GDAL path)."""
    with rasterio.open(gdal_name(href)) as ds:
        return MemberGrid(
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


__all__ = ["ArchiveError", "MemberGrid", "as_float", "compressed_as", "compression_note", "fail", "split_member_href",
           "unreadable_pixels", "has_sidecars", "read_grid",
           "read_head", "read_tar_member", "read_zip_member", "tar_members", "tiff_signature", "vsitar", "vsizip",
           "zip_members"]
