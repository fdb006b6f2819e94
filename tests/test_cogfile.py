"""The COG assembled from tiles compressed while the blocks come in (`write.cogfile`,
`write.tilerows`): pixels identical to the array written, the structure GDAL's COG driver writes
(checked with rio-cogeo and with GDAL's own view of every tile), each tile written whole once."""
from __future__ import annotations

import struct

import dask.array as dsa
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor these tests use)
import xarray as xr
from rio_cogeo.cogeo import cog_validate

from imalys_stac.write.cog import write_cog
from imalys_stac.write.scaled import Scaling
from imalys_stac.write.tilerows import TileRows

X0, Y0 = 500000.0, 5600000.0


def _array(bands: int, h: int, w: int, seed: int = 3) -> np.ndarray:
    """Reflectance-like float32 with NaN holes (clouds) and a NaN edge (outside the frame)."""
    rng = np.random.default_rng(seed)
    a = (rng.integers(7000, 20000, size=(bands, h, w)) * 2.75e-5 - 0.2).astype(np.float32)
    a[:, rng.random((h, w)) < 0.15] = np.nan
    a[:, :, :37] = np.nan
    return a


def _da(a: np.ndarray, chunks) -> xr.DataArray:
    data = dsa.from_array(a, chunks=chunks) if chunks else a
    _, h, w = a.shape
    return xr.DataArray(data, dims=("band", "y", "x"),
                        coords={"y": Y0 - 15 - 30 * np.arange(h), "x": X0 + 15 + 30 * np.arange(w)}).rio.write_crs(32632)


def _tiles_framed_by_leader_and_trailer(path) -> int:
    """Every tile of every level, as GDAL locates it (BLOCK_OFFSET/BLOCK_SIZE), is led by its
    size as uint4 and followed by its last 4 bytes — what the COG's ghost area promises."""
    checked = 0
    with rasterio.open(path) as ds:
        levels = [None] + list(range(len(ds.overviews(1))))
    with open(path, "rb") as f:
        for level in levels:
            with rasterio.open(path, **({} if level is None else {"overview_level": level})) as ds:
                bh, bw = ds.block_shapes[0]
                for ty in range(-(-ds.height // bh)):
                    for tx in range(-(-ds.width // bw)):
                        off = int(ds.get_tag_item(f"BLOCK_OFFSET_{tx}_{ty}", "TIFF", bidx=1))
                        size = int(ds.get_tag_item(f"BLOCK_SIZE_{tx}_{ty}", "TIFF", bidx=1))
                        f.seek(off - 4)
                        raw = f.read(size + 8)
                        assert struct.unpack("<I", raw[:4])[0] == size
                        assert raw[-4:] == raw[-8:-4]
                        checked += 1
    return checked


@pytest.mark.parametrize("compress,chunks", [("zstd", (3, 300, 275)), ("deflate", (3, 1024, 1024)), ("none", None)])
def test_assembled_cog_is_the_array(tmp_path, compress, chunks):
    """Odd sizes, chunks that straddle the 512-px tiles (as a frame at any offset makes them):
    every pixel is the array's, rio-cogeo finds no error, GDAL calls it a COG, and the overviews
    are those GDAL's COG driver would copy (same levels, every level tiled)."""
    a = _array(3, 1100, 1301)
    out = write_cog(_da(a, chunks), tmp_path / "a.tif", compress=compress)
    ok, errors, _ = cog_validate(str(out), quiet=True)
    assert ok and not errors
    with rasterio.open(out) as ds:
        np.testing.assert_array_equal(ds.read(), a)
        st = ds.tags(ns="IMAGE_STRUCTURE")
        assert st["LAYOUT"] == "COG" and st["INTERLEAVE"] == "PIXEL"
        assert st.get("COMPRESSION", "NONE") == compress.upper() if compress != "none" else "COMPRESSION" not in st
        assert ds.overviews(1) == [2, 4]
        assert ds.crs.to_epsg() == 32632 and ds.transform.c == X0 and ds.transform.f == Y0
        assert ds.tags()["OVR_RESAMPLING_ALG"] == "AVERAGE"
    assert _tiles_framed_by_leader_and_trailer(out) == 3 * 3 + 2 * 2 + 1


def test_assembled_overviews_are_averages_of_the_level_before(tmp_path):
    """Each level is the area-weighted mean of the valid pixels of the level before (a plain loop
    over 2 × 2 footprints: even sizes, so every footprint is whole), NaN where none is valid."""
    a = _array(2, 2048, 1536, seed=8)
    out = write_cog(_da(a, (2, 512, 512)), tmp_path / "b.tif", check=False)
    parent = a.astype(np.float64)
    with rasterio.open(out) as ds:
        for level, _ in enumerate(ds.overviews(1)):
            with rasterio.open(out, overview_level=level) as ov:
                got = ov.read()
            b, h, w = parent.shape
            quads = parent.reshape(b, h // 2, 2, w // 2, 2)
            valid = ~np.isnan(quads)
            n = valid.sum(axis=(2, 4))
            with np.errstate(invalid="ignore"):
                want = np.where(n > 0, np.nansum(quads, axis=(2, 4)) / np.maximum(n, 1), np.nan)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
            assert np.array_equal(np.isnan(got), np.isnan(want))
            parent = got.astype(np.float64)


def test_assembled_scaled_int16(tmp_path):
    """Scaled int16 through the assembled path: the integers are the encoded array, calibration
    recorded as GDAL records it."""
    a = _array(2, 900, 700)
    scaling = Scaling()
    out = write_cog(_da(a, (2, 333, 333)), tmp_path / "s.tif", scaling=scaling)
    assert cog_validate(str(out), quiet=True)[0]
    with rasterio.open(out) as ds:
        assert ds.dtypes[0] == "int16" and ds.nodata == scaling.nodata
        np.testing.assert_array_equal(ds.read(), scaling.encode(a))
        assert ds.scales == (scaling.scale,) * 2 and ds.offsets == (scaling.offset,) * 2


class _Recorder:
    """A dataset stand-in recording the windows written."""

    def __init__(self, bands: int, h: int, w: int):
        self.data = np.full((bands, h, w), -1, np.int32)
        self.windows: list[tuple[int, int]] = []

    def write(self, rows, window) -> None:
        r0, c0 = int(window.row_off), int(window.col_off)
        self.windows.append((r0, r0 + int(window.height), c0, c0 + int(window.width)))
        assert (self.data[:, r0:r0 + rows.shape[1], c0:c0 + rows.shape[2]] == -1).all(), "written twice"
        self.data[:, r0:r0 + rows.shape[1], c0:c0 + rows.shape[2]] = rows


@pytest.mark.parametrize("seed", [0, 1])
def test_tile_rows_writes_each_row_of_tiles_once_whole(seed):
    """Blocks in any order (a distributed scheduler delivers them as they finish): the dataset
    gets whole tiles (smaller only at the image's edges), each once, row of tiles after row of
    tiles, with the blocks' values; the buffer never holds the whole image."""
    bands, h, w, tile = 2, 1000, 300, 128
    truth = np.arange(bands * h * w, dtype=np.int32).reshape(bands, h, w)
    keys = [(slice(0, bands), slice(y, min(y + 90, h)), slice(x, min(x + 70, w)))
            for y in range(0, h, 90) for x in range(0, w, 70)]
    rng = np.random.default_rng(seed)
    # shuffled within bands of rows: nearly in order, as streaming delivers them
    order = sorted(range(len(keys)), key=lambda i: keys[i][1].start + rng.integers(0, 200))
    dst = _Recorder(bands, h, w)
    rows = TileRows(dst, bands, h, w, np.int32, tile)
    held = 0
    for i in order:
        rows[keys[i]] = truth[keys[i]]
        held = max(held, rows.buf.shape[1])
    rows.finish()
    starts = [(a, c) for a, _, c, _ in dst.windows]
    assert starts == sorted(starts)  # row after row of tiles
    # each call one whole tile: tile-aligned, a full tile unless at the image's edge
    assert all(a % tile == 0 and c % tile == 0 and b == min(a + tile, h) and d == min(c + tile, w)
               for a, b, c, d in dst.windows)
    np.testing.assert_array_equal(dst.data, truth)
    assert held < h


def test_tile_rows_refuses_a_row_written_after_its_flush():
    rows = TileRows(_Recorder(1, 256, 10), 1, 256, 10, np.int32, 128)
    rows[(slice(0, 1), slice(0, 128), slice(0, 10))] = np.zeros((1, 128, 10), np.int32)
    with pytest.raises(RuntimeError, match="written again"):
        rows[(slice(0, 1), slice(100, 110), slice(0, 10))] = np.zeros((1, 10, 10), np.int32)
