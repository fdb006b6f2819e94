"""What every writer needs from a DataArray: pixels (lazy or not), grid, band names, nodata."""
from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from ..gdalnames import gdal_name

if TYPE_CHECKING:  # imported by as_raster: the disk and validity helpers below serve commands without a cube
    import xarray as xr


@dataclass
class Raster:
    """A (band, y, x) array with its grid. `data` stays dask-backed when the input was."""

    data: Any
    crs: CRS | None
    transform: Affine
    band_names: list[str] | None
    nodata: float | int | None
    tags: dict[str, str]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def count(self) -> int:
        return int(self.data.shape[0])

    @property
    def height(self) -> int:
        return int(self.data.shape[1])

    @property
    def width(self) -> int:
        return int(self.data.shape[2])

    @property
    def is_float(self) -> bool:
        return np.issubdtype(self.dtype, np.floating)


def as_raster(da: xr.DataArray, *, band_names: Sequence[str] | None = None,
              tags: dict[str, Any] | None = None) -> Raster:
    """Check and unpack a DataArray with dims (band, y, x) or (y, x), georeferenced by rioxarray.

    Band names: `band_names` when given, else the `band` coordinate when it holds strings."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    if not isinstance(da, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    if da.ndim == 2:
        da = da.expand_dims("band")
    if da.ndim != 3:
        raise ValueError(f"expected dims (band, y, x) or (y, x), got {da.dims}")
    try:
        ydim, xdim = da.rio.y_dim, da.rio.x_dim
    except Exception as exc:
        raise ValueError(f"cannot find the spatial dims of an array with dims {da.dims}: "
                         "name them (y, x) or (latitude, longitude)") from exc
    band_dim = next(d for d in da.dims if d not in (ydim, xdim))
    da = da.transpose(band_dim, ydim, xdim)
    crs = da.rio.crs
    transform = da.rio.transform(recalc=True) if da.sizes[xdim] > 1 and da.sizes[ydim] > 1 else da.rio.transform()
    names: list[str] | None
    if band_names is not None:
        names = [str(b) for b in band_names]
        if len(names) != da.shape[0]:
            raise ValueError(f"{len(names)} band names given for {da.shape[0]} bands")
    elif band_dim in da.coords and da[band_dim].dtype.kind in "UO":
        names = [str(b) for b in da[band_dim].values]
    else:
        names = None
    if np.issubdtype(da.dtype, np.floating):
        nodata: float | int | None = float("nan")
    else:
        nodata = da.rio.nodata if da.rio.nodata is not None else da.rio.encoded_nodata
    return Raster(da.data, crs, transform, names, nodata, {str(k): str(v) for k, v in (tags or {}).items()})


#: below this much free space a failed write is taken for a full disk (GDAL writes blocks of a
#: few MB at most, and says only "Write failed")
FULL_DISK_BYTES = 64 * 2**20


def as_disk_error(exc: BaseException, folder: str | os.PathLike) -> BaseException:
    """A failed write as the operating system would have said it: GDAL reports a full disk as
    "Write failed. See previous exception" (the reason only went to its log). Asked while the
    partial file still fills the disk (before any clean-up frees it): an OSError(ENOSPC) naming
    `folder` when it is (nearly) full or an OSError(EROFS) when it is read-only; else `exc`.
    `exc` may also be one of GDAL's own errors (rasterio's CPLE_*: "IO error writing tag data")."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    try:
        st = os.statvfs(folder)
    except OSError:
        return exc
    if st.f_flag & os.ST_RDONLY:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), str(Path(folder)))
    if st.f_bavail * st.f_frsize < FULL_DISK_BYTES:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(folder)))
    return exc


def has_valid_pixel(path: str | os.PathLike) -> bool:
    """Whether a written raster holds at least one pixel that is not nodata (NaN, or its nodata
    value), read from its coarsest overview: an average overview pixel is valid wherever one pixel
    under it is, so the answer is exact at a small fraction of the reading."""
    import numpy as np
    import rasterio

    with rasterio.open(gdal_name(path)) as ds:
        levels = ds.overviews(1)
    options = {"OVERVIEW_LEVEL": len(levels) - 1} if levels else {}
    with rasterio.open(gdal_name(path), **options) as ds:
        a = ds.read(masked=True)
    data = np.ma.masked_invalid(a) if np.issubdtype(a.dtype, np.floating) else a
    return bool(np.ma.count(data))


def gdal_errors() -> tuple[type[BaseException], ...]:
    """The exception classes a GDAL write fails with: OSError (rasterio's RasterioIOError) and
    GDAL's own errors (rasterio._err.CPLE_BaseError, raised e.g. when a file is closed)."""
    try:
        from rasterio._err import CPLE_BaseError
    except ImportError:  # pragma: no cover - a rasterio without it
        return (OSError,)
    return (OSError, CPLE_BaseError)


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes free for this user in the file system of `folder`."""
    import shutil

    return shutil.disk_usage(folder).free


def cog_scratch_bytes(shape: tuple[int, int, int], dtype: Any) -> int:
    """Temporary space write_cog needs for a (band, y, x) result: its uncompressed tiled source
    and that source's overviews (a third more); the compressed COG comes after on top of it."""
    bands, rows, cols = (int(n) for n in shape)
    return int(bands * rows * cols * np.dtype(dtype).itemsize * 4 // 3)


def check_room_for(shape: tuple[int, int, int], dtype: Any, folder: str | os.PathLike, *, what: str,
                   pixel: str) -> None:
    """Refuse, before any computing, a result whose temporary files cannot fit the free disk of
    `folder` (GDAL would refuse it only when the last step starts, naming a temporary and one of
    its options). `pixel`: the grid's pixel size as the user reads it ("30 m of EPSG:32632")."""
    from ..errors import ResourceError

    need = cog_scratch_bytes(shape, dtype)
    try:
        free = free_bytes(folder)
    except OSError:
        return
    if need <= free:
        return
    bands, rows, cols = shape
    raise ResourceError(
        f"{what} would be {cols:,} × {rows:,} pixels ({rows * cols:.2g} per band) × {bands} band(s) at {pixel}; "
        f"writing it needs about {_size(need)} of temporary space in {folder}, which has {_size(free)} free",
        hint="choose a larger pixel size or a smaller frame, or free space (or move the working directory)")


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.1f} kB"
