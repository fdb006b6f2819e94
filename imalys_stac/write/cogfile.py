"""A COG assembled from tiles GDAL already compressed: no tile is decoded or compressed twice.

`write_cog` lets GDAL's GTiff driver compress the full-resolution tiles (in its worker threads)
while the blocks are still being computed, and the overview levels likewise; the COG driver
would then decode and compress every tile once more after the last block. Here the compressed
tiles are copied as they are into the COG layout GDAL's COG driver writes:

    header · ghost area (GDAL_STRUCTURAL_METADATA) · IFD of the full resolution, IFDs of the
    overviews (each followed by its out-of-line tag values) · tile data of the smallest overview
    first, the full resolution last; each tile led by its size (uint4) and followed by a repeat
    of its last 4 bytes (BLOCK_LEADER=SIZE_AS_UINT4, BLOCK_TRAILER=LAST_4_BYTES_REPEATED).

Every tag of a level is taken from the IFD GDAL wrote for it (geokeys, GDAL_METADATA with band
names, scales and tags, GDAL_NODATA, predictor...), so GDAL reads the COG as the one its COG
driver writes (`LAYOUT=COG`). Little-endian TIFF and BigTIFF sources; the output is BigTIFF only
when it would not fit 4 GiB.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

NEW_SUBFILE_TYPE, TILE_OFFSETS, TILE_BYTE_COUNTS = 254, 324, 325
#: georeferencing and dataset metadata: kept on the full resolution only, as GDAL's COG driver does
_MAIN_ONLY = {33550, 33922, 34264, 34735, 34736, 34737, 42112}
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}
_GHOST = ("LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
          "BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ")


@dataclass
class Level:
    """One image of a TIFF file: its tags (tag → (type, count, raw little-endian bytes)) and where
    its tiles are."""

    path: Path
    tags: dict[int, tuple[int, int, bytes]]
    offsets: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    def value(self, tag: int) -> int:
        typ, count, raw = self.tags[tag]
        return _ints(typ, count, raw)[0]


def _ints(typ: int, count: int, raw: bytes) -> list[int]:
    fmt = {3: "H", 4: "I", 16: "Q", 8: "h", 9: "i", 17: "q", 1: "B"}[typ]
    return list(struct.unpack(f"<{count}{fmt}", raw[:count * struct.calcsize(fmt)]))


def read_levels(path: str | os.PathLike) -> list[Level]:
    """Every IFD of a little-endian (Big)TIFF, in file order."""
    path = Path(path)
    out = []
    with open(path, "rb") as f:
        head = f.read(16)
        if head[:2] != b"II":
            raise ValueError(f"{path}: not a little-endian TIFF")
        big = struct.unpack_from("<H", head, 2)[0] == 43
        nxt = struct.unpack_from("<Q", head, 8)[0] if big else struct.unpack_from("<I", head, 4)[0]
        count_fmt, entry_fmt, entry_size, inline = ("<Q", "<HHQ8s", 20, 8) if big else ("<H", "<HHI4s", 12, 4)
        while nxt:
            f.seek(nxt)
            n = struct.unpack(count_fmt, f.read(struct.calcsize(count_fmt)))[0]
            body = f.read(n * entry_size + (8 if big else 4))
            tags: dict[int, tuple[int, int, bytes]] = {}
            for i in range(n):
                tag, typ, count, val = struct.unpack_from(entry_fmt, body, i * entry_size)
                size = _TYPE_SIZE[typ] * count
                if size <= inline:
                    raw = val[:size]
                else:
                    at = struct.unpack("<Q" if big else "<I", val)[0]
                    here = f.tell()
                    f.seek(at)
                    raw = f.read(size)
                    f.seek(here)
                tags[tag] = (typ, count, raw)
            nxt = struct.unpack_from("<Q" if big else "<I", body, n * entry_size)[0]
            level = Level(path, tags)
            level.offsets = _ints(*tags[TILE_OFFSETS])
            level.counts = _ints(*tags[TILE_BYTE_COUNTS])
            out.append(level)
    return out


def _ifd_bytes(tags: dict[int, tuple[int, int, bytes]], at: int, big: bool) -> bytes:
    """The IFD (next-IFD pointer left 0, patched later) at file offset `at`, its out-of-line values after it."""
    inline = 8 if big else 4
    n = len(tags)
    head = struct.pack("<Q", n) if big else struct.pack("<H", n)
    table_size = len(head) + n * (20 if big else 12) + inline
    extra = bytearray()
    entries = bytearray()
    for tag in sorted(tags):
        typ, count, raw = tags[tag]
        if len(raw) <= inline:
            val = raw.ljust(inline, b"\0")
        else:
            pos = at + table_size + len(extra)
            val = struct.pack("<Q" if big else "<I", pos)
            extra += raw
            if len(extra) % 2:
                extra += b"\0"
        entries += struct.pack("<HHQ" if big else "<HHI", tag, typ, count) + val
    return head + bytes(entries) + b"\0" * inline + bytes(extra)


def _level_tags(level: Level, main: bool, offsets: list[int], counts: list[int], big: bool) -> dict:
    tags = {t: v for t, v in level.tags.items() if main or t not in _MAIN_ONLY}
    if main:
        tags.pop(NEW_SUBFILE_TYPE, None)
    else:
        tags[NEW_SUBFILE_TYPE] = (4, 1, struct.pack("<I", 1))
    n = len(offsets)
    if big:
        tags[TILE_OFFSETS] = (16, n, struct.pack(f"<{n}Q", *offsets))
    else:
        tags[TILE_OFFSETS] = (4, n, struct.pack(f"<{n}I", *offsets))
    tags[TILE_BYTE_COUNTS] = (4, n, struct.pack(f"<{n}I", *counts))
    return tags


def _layout(levels: list[Level], big: bool) -> tuple[bytes, list[list[int]], int]:
    """Header, ghost area and IFDs with the final tile offsets; returns (head bytes, offsets per
    level, size of the file)."""
    ghost = _GHOST.encode()
    ghost = f"GDAL_STRUCTURAL_METADATA_SIZE={len(ghost):06d} bytes\n".encode() + ghost
    start = (16 if big else 8) + len(ghost)
    start += start % 2
    # tile data: smallest level first, full resolution last; each tile 4 + size + 4 bytes
    sizes = [sum(c + 8 for c in lv.counts if c) for lv in levels]
    # IFD sizes do not depend on the offsets' values, only on their count: measure with zeros
    ifd_sizes = [len(_ifd_bytes(_level_tags(lv, i == 0, [0] * len(lv.counts), lv.counts, big), 0, big))
                 for i, lv in enumerate(levels)]
    ifd_at, pos = [], start
    for s in ifd_sizes:
        ifd_at.append(pos)
        pos += s + s % 2
    data_at = [0] * len(levels)
    for i in reversed(range(len(levels))):
        data_at[i] = pos
        pos += sizes[i]
    offsets = []
    for i, lv in enumerate(levels):
        at, offs = data_at[i], []
        for c in lv.counts:
            if c:
                offs.append(at + 4)
                at += c + 8
            else:
                offs.append(0)
        offsets.append(offs)
    head = bytearray(b"II" + (struct.pack("<HHHQ", 43, 8, 0, ifd_at[0]) if big else struct.pack("<HI", 42, ifd_at[0])))
    head += ghost
    head += b"\0" * (start - len(head))
    for i, lv in enumerate(levels):
        ifd = bytearray(_ifd_bytes(_level_tags(lv, i == 0, offsets[i], lv.counts, big), ifd_at[i], big))
        if i + 1 < len(levels):  # the next-IFD pointer after the entries
            n = struct.unpack_from("<Q" if big else "<H", ifd)[0]
            at = (8 + n * 20) if big else (2 + n * 12)
            struct.pack_into("<Q" if big else "<I", ifd, at, ifd_at[i + 1])
        head += ifd
        if len(ifd) % 2:
            head += b"\0"
    return bytes(head), offsets, pos


def assemble(levels: list[Level], out: str | os.PathLike) -> None:
    """Write the COG of `levels` (full resolution first, then the overviews from large to small,
    each with compressed tiles in its file) to `out`."""
    small = _layout(levels, False)
    big = small[2] >= 2**32 - 2**20
    head, offsets, size = _layout(levels, True) if big else small
    files: dict[Path, int] = {}
    try:
        for lv in levels:
            if lv.path not in files:
                files[lv.path] = os.open(lv.path, os.O_RDONLY)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, head)
            for i in reversed(range(len(levels))):
                lv, src = levels[i], files[levels[i].path]
                for off, count, new in zip(lv.offsets, lv.counts, offsets[i]):
                    if not count:
                        continue
                    data = os.pread(src, count, off)
                    if len(data) != count:
                        raise OSError(f"{lv.path}: a tile ends early (offset {off}, {count} bytes)")
                    os.pwrite(fd, struct.pack("<I", count) + data + data[-4:], new - 4)
            if os.fstat(fd).st_size != size:
                raise OSError(f"{out}: {os.fstat(fd).st_size} bytes written, {size} planned")
        finally:
            os.close(fd)
    finally:
        for f in files.values():
            os.close(f)
