"""A compile product whose stack is stored (`compile format = int16`): the scaled 16-bit GeoTIFF
read back as the float32 cube (time, band, y, x) that the lazy stack over the imports gives —
value = DN · scale + offset from the file's band scale and offset, nodata → NaN, so every value is
within half a scale step of the float32 path. Layers in the file are date-major (date 1's bands,
then date 2's …), as compile writes them and as its VRT names them (`<yyyymmdd>_<band>`).

Each dask block reads one window of every layer from the file (all dates and bands, as the
compositing kernels take them), so a reduce decodes each stored tile once."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pystac

from .grid import Grid

if TYPE_CHECKING:
    import xarray as xr

    from .load import SceneGroup

#: the key of the stored stack's asset in a compile product's item
ASSET = "data"


def stored_stack_path(item: pystac.Item) -> Path | None:
    """The stored stack of a compile product (None: a lazy stack over the imports)."""
    asset = item.assets.get(ASSET)
    if asset is None:
        return None
    return Path(asset.get_absolute_href() or asset.href)


class _Layers:
    """What dask reads blocks from: the file as (time, band, y, x) float32, calibrated on read.
    A block opens the file itself (GDAL handles are not shared between threads)."""

    ndim = 4
    dtype = np.dtype(np.float32)

    def __init__(self, path: Path, ntime: int, nbands: int, shape: tuple[int, int], origin: tuple[int, int]):
        self.path, self.nbands, self.origin = str(path), nbands, origin
        self.shape = (ntime, nbands) + tuple(shape)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        import rasterio
        from rasterio.windows import Window

        t, b, ys, xs = (range(*k.indices(n)) for k, n in zip(key, self.shape))
        indexes = [ti * self.nbands + bi + 1 for ti in t for bi in b]
        r0, c0 = self.origin
        window = Window(c0 + xs.start, r0 + ys.start, len(xs), len(ys))
        with rasterio.open(self.path) as ds:
            dn = ds.read(indexes, window=window)
            scale = np.array([ds.scales[i - 1] for i in indexes], dtype=np.float64)[:, None, None]
            offset = np.array([ds.offsets[i - 1] for i in indexes], dtype=np.float64)[:, None, None]
            nodata = ds.nodata
        # the decoding of write.scaled.Scaling.decode: in float64, then float32
        out = (dn.astype(np.float64) * scale + offset).astype(np.float32)
        if nodata is not None:
            out[dn == nodata] = np.nan
        return out.reshape((len(t), len(b), len(ys), len(xs)))


def stored_cube(path: Path, groups: Sequence[SceneGroup], bands: Sequence[str], grid: Grid, *,
                chunksize: int | None = None, window: tuple[int, int, int, int] | None = None) -> xr.DataArray:
    """The cube of a stored stack at `path` on the compile's `grid` (or the `window` = (row0, row1,
    col0, col1) of it), with the coordinates of the lazy cube: time, band, y, x, quality, product
    (from the compile's input `groups`, in the compile's order)."""
    import dask.array as da
    import rasterio
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr
    from dask.base import tokenize

    from .fuse import auto_chunk

    ntime, nbands = len(groups), len(bands)
    with rasterio.open(path) as ds:
        if ds.count != ntime * nbands or ds.shape != grid.shape:
            raise ValueError(f"{path}: {ds.count} layers of {ds.shape[0]} × {ds.shape[1]} pixels, expected "
                             f"{ntime} dates × {nbands} bands of {grid.shape[0]} × {grid.shape[1]}")
        block = ds.block_shapes[0][0]
    part = grid if window is None else grid.window(*window)
    origin = (0, 0) if window is None else (window[0], window[2])
    ny, nx = part.shape
    # whole stored blocks per dask block (a window across block edges decodes those blocks again)
    side = chunksize or max(block, auto_chunk(ntime, nbands) // block * block)
    layers = _Layers(path, ntime, nbands, (ny, nx), origin)
    stat = os.stat(path)
    name = "imalys-stored-" + tokenize(str(path), stat.st_size, stat.st_mtime_ns, origin, (ny, nx), side)
    data = da.from_array(layers, chunks=(ntime, nbands, side, side), name=name, asarray=False, fancy=False,
                         meta=np.empty((0, 0, 0, 0), np.float32))
    t = part.transform
    cube = xr.DataArray(
        data, dims=("time", "band", "y", "x"),
        coords={
            "time": np.array([np.datetime64(g.datetime.replace(tzinfo=None), "ns") for g in groups]),
            "band": list(bands),
            "y": t.f + t.e * (np.arange(ny) + 0.5), "x": t.c + t.a * (np.arange(nx) + 0.5),
            "quality": ("time", np.array([np.nan if g.quality is None else g.quality for g in groups], dtype="float64")),
            "product": ("time", [g.name for g in groups]),
        },
    )
    cube = cube.rio.write_crs(grid.epsg)
    cube.attrs = {"_FillValue": np.nan}
    return cube
