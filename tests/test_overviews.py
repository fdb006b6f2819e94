"""The ×2 `average` overview computed while a COG's blocks are written (write/overviews.py),
against a plain per-pixel loop of GDAL's rule, against GDAL's own overviews, and in write_cog."""
from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor these tests use)
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling

from imalys_stac.write import write_cog
from imalys_stac.write.cog import cog_errors
from imalys_stac.write.overviews import FirstLevelSink, average_level


def loop_average(src: np.ndarray, dh: int, dw: int, nodata: float | None) -> np.ndarray:
    """GDAL's average, one destination pixel at a time: pixel j covers [j·r, (j+1)·r) of the source,
    r = n_src / n_dst, each source pixel weighted by the length of it inside; invalid ones left out."""
    nb, h, w = src.shape
    ry, rx = h / dh, w / dw
    out = np.full((nb, dh, dw), np.nan, np.float32)
    for b in range(nb):
        for j in range(dh):
            for i in range(dw):
                num = den = 0.0
                for y in range(int(math.floor(j * ry)), min(h, int(math.ceil((j + 1) * ry)))):
                    wy = min(y + 1, (j + 1) * ry) - max(y, j * ry)
                    for x in range(int(math.floor(i * rx)), min(w, int(math.ceil((i + 1) * rx)))):
                        wx = min(x + 1, (i + 1) * rx) - max(x, i * rx)
                        v = float(src[b, y, x])
                        if wy > 0 and wx > 0 and not math.isnan(v) and (nodata is None or v != nodata):
                            num += wy * wx * v
                            den += wy * wx
                if den > 0:
                    out[b, j, i] = num / den
    return out


def _image(rng, shape, holes=0.3, nodata=np.nan):
    a = rng.normal(0.2, 0.1, shape).astype(np.float32)
    a[rng.random(shape) < holes] = nodata
    a[:, : shape[1] // 3, : shape[2] // 4] = nodata  # a whole empty corner: NaN overview pixels
    return a


@pytest.mark.parametrize("shape", [(2, 37, 29), (1, 16, 16), (3, 9, 40), (1, 1, 5)])
@pytest.mark.parametrize("nodata", [None, -9999.0])
def test_average_level_equals_the_per_pixel_rule(shape, nodata):
    rng = np.random.default_rng(sum(shape))
    src = _image(rng, shape, nodata=np.nan if nodata is None else nodata)
    dh, dw = -(-shape[1] // 2), -(-shape[2] // 2)
    got = average_level(src, nodata, (dh, dw))
    np.testing.assert_allclose(got, loop_average(src, dh, dw, nodata), rtol=2e-6, atol=1e-7)


def test_average_level_equals_gdal_on_even_sizes(tmp_path):
    """Where every footprint is whole pixels (even sizes) GDAL's kernel is exact too."""
    rng = np.random.default_rng(4)
    src = _image(rng, (2, 300, 260))
    path = tmp_path / "g.tif"
    with rasterio.open(path, "w", driver="GTiff", width=260, height=300, count=2, dtype="float32", nodata=np.nan,
                       transform=Affine(30, 0, 0, 0, -30, 0), crs="EPSG:32632", tiled=True, blockxsize=64,
                       blockysize=64) as dst:
        dst.write(src)
        dst.build_overviews([2], Resampling.average)
    with rasterio.open(path, overview_level=0) as ov:
        gdal = ov.read()
    np.testing.assert_allclose(average_level(src, None, (150, 130)), gdal, rtol=2e-6, atol=1e-7)


class _Dataset:
    """A numpy stand-in for a GTiff open in w+ mode (the sink writes and reads windows)."""

    def __init__(self, count, height, width):
        self.a = np.full((count, height, width), np.nan, np.float32)
        self.count, self.height, self.width, self.dtypes = count, height, width, ["float32"] * count

    def write(self, arr, indexes=None, window=None):
        (r0, r1), (c0, c1) = window.toranges()
        idx = [i - 1 for i in indexes] if indexes is not None else list(range(self.count))
        self.a[idx, r0:r1, c0:c1] = arr

    def read(self, window=None):
        (r0, r1), (c0, c1) = window.toranges()
        return self.a[:, r0:r1, c0:c1].copy()


def test_first_level_sink_with_blocks_in_any_order():
    """Blocks arriving in any order (a distributed scheduler), bands split across blocks: every
    strip is computed once its source rows are complete, and the level equals the whole-image one."""
    rng = np.random.default_rng(9)
    src = _image(rng, (3, 301, 257))
    full, level = _Dataset(3, 301, 257), _Dataset(3, 151, 129)
    sink = FirstLevelSink(full, level, float("nan"))
    keys = [(slice(b0, b1), slice(y, min(y + 50, 301)), slice(x, min(x + 70, 257)))
            for b0, b1 in ((0, 2), (2, 3)) for y in range(0, 301, 50) for x in range(0, 257, 70)]
    strips_written = []
    level_write = level.write
    level.write = lambda arr, indexes=None, window=None: (strips_written.append(window.row_off),
                                                          level_write(arr, indexes, window))
    for k in rng.permutation(len(keys)):
        sink[keys[k]] = src[keys[k]]
    sink.finish()
    assert sorted(strips_written) == [j0 for j0, _ in sink.strips]  # each strip once
    np.testing.assert_array_equal(full.a, src)
    np.testing.assert_array_equal(level.a, average_level(src, None, (151, 129)))


def test_first_level_sink_says_when_rows_were_never_written():
    sink = FirstLevelSink(_Dataset(1, 40, 40), _Dataset(1, 20, 20), None)
    sink[(slice(0, 1), slice(0, 20), slice(0, 40))] = np.zeros((1, 20, 40), np.float32)
    with pytest.raises(RuntimeError, match="never complete"):
        sink.finish()


def test_write_cog_holds_the_exact_first_level_and_gdal_levels_after_it(tmp_path):
    rng = np.random.default_rng(2)
    src = _image(rng, (2, 1101, 1337))
    arr = xr.DataArray(da.from_array(src, chunks=(2, 256, 256)), dims=("band", "y", "x"))
    arr = arr.rio.write_crs("EPSG:32632").rio.write_transform(Affine(30, 0, 500000, 0, -30, 5600000))
    out = write_cog(arr, tmp_path / "c.tif", blocksize=256)
    assert cog_errors(out)[0] == []
    with rasterio.open(out) as ds:
        assert ds.overviews(1) == [2, 4, 8]
        np.testing.assert_array_equal(ds.read(), src)
    with rasterio.open(out, overview_level=0) as ov:
        np.testing.assert_array_equal(ov.read(), average_level(src, None, (551, 669)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tif"]  # no .ovr or temporary left
