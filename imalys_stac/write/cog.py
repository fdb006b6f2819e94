"""Cloud Optimized GeoTIFF: streamed from Dask, overviews built and checked, atomic."""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import xarray as xr
from rasterio.enums import Resampling
from rasterio.windows import Window

from ..errors import ImalysError
from ..gdalnames import gdal_name
from .atomic import atomic_path, remove, temp_name
from .blocks import DatasetSink, Parts, active_client, stream
from .cogfile import Level, assemble, read_levels
from .raster import Raster, as_raster
from .scaled import ScaledSink, Scaling

COMPRESSIONS = ("deflate", "zstd", "lzw", "none")

# Float reflectance has noisy low mantissa bits: measured on a 6×4096² bestof-like image, DEFLATE
# level 6 is 2.2× slower than level 1 for a file 0.4 % smaller (ZSTD 3 vs 1: 1.9×, 0.1 %).
# Integer bands compress well, so they get the codecs' usual levels.
_LEVEL = {("deflate", True): 1, ("deflate", False): 6, ("zstd", True): 1, ("zstd", False): 9}


def overview_factors(width: int, height: int, blocksize: int) -> list[int]:
    """GDAL's COG `OVERVIEWS=AUTO` rule: halve until the image fits in one block."""
    factors, f = [], 2
    while math.ceil(max(width, height) / (f // 2)) > blocksize:
        factors.append(f)
        f *= 2
    return factors


def write_gtiff_source(r: Raster, path: Path, *, blocksize: int, extra_tags: dict[str, str] | None = None,
                       first_level: bool = False, scaling: Scaling | None = None) -> bool:
    """Uncompressed tiled GeoTIFF, filled block by block: the fast intermediate the COG driver reads.
    `first_level`: also write its ×2 `average` overview into `<path>.ovr` while the blocks come in
    (float rasters only; returns whether it did). `scaling`: the float blocks are written as
    scaled integers, with the band scale/offset and nodata that calibrate them back."""
    profile: dict[str, Any] = dict(
        driver="GTiff", width=r.width, height=r.height, count=r.count,
        dtype=scaling.dtype if scaling else r.dtype.name,
        crs=r.crs, transform=r.transform, nodata=scaling.nodata if scaling else r.nodata, tiled=True,
        blockxsize=blocksize, blockysize=blocksize, compress="none", bigtiff="if_needed",
        # band interleave: GDAL builds the overviews of such a file band by band, 1.8× faster than
        # its multi-band path over pixel-interleaved tiles (6 × 3558 × 3635 float32: 1.0 vs 1.9 s),
        # and the COG copy reads it faster too (1.7 vs 1.9 s); the COG itself stays pixel-interleaved
        interleave="band",
    )
    first_level = first_level and r.is_float
    with contextlib.ExitStack() as stack:
        # "w+": the first level's strips are read back from the blocks just written
        dst = stack.enter_context(rasterio.open(path, "w+" if first_level else "w", **profile))
        _describe(dst, r, extra_tags, scaling)
        if not first_level:
            dataset_sink = DatasetSink(dst)
            stream(r.data, ScaledSink(dataset_sink, scaling) if scaling else dataset_sink, numpy_block=blocksize * 2)
            return False
        from .overviews import FirstLevelSink  # its numba kernel: only where a first level is written

        h1, w1 = -(-r.height // 2), -(-r.width // 2)  # GDAL's overview size: rounded up
        level = stack.enter_context(rasterio.open(
            f"{path}.ovr", "w", **{**profile, "width": w1, "height": h1,
                                   "transform": r.transform @ r.transform.scale(r.width / w1, r.height / h1)}))
        sink = FirstLevelSink(dst, level, scaling.nodata if scaling else r.nodata)
        # scaled: the level averages the integers written, as GDAL's build_overviews would
        stream(r.data, ScaledSink(sink, scaling) if scaling else sink, numpy_block=blocksize * 2)
        sink.finish()
    return True


def write_cog(
    da: xr.DataArray,
    path: str | os.PathLike,
    *,
    compress: str = "zstd",
    level: int | None = None,
    predictor: int | None = None,
    blocksize: int = 512,
    overviews: str | Sequence[int] | None = "auto",
    resampling: str = "average",
    tags: dict[str, Any] | None = None,
    band_names: Sequence[str] | None = None,
    check: bool = True,
    scaling: Scaling | None = None,
) -> Path:
    """Write `da` (dims band, y, x; dask or numpy) as a Cloud Optimized GeoTIFF at `path`.

    Streamed: chunks are computed one batch at a time (threaded scheduler or a distributed Client).
    Float data with `average` overviews (the products): each row of 512-px tiles is written as soon
    as it is complete into a compressed tiled GeoTIFF beside the target, GDAL's worker threads
    compressing its tiles while the next blocks are computed, and each overview level is computed
    from the one before as its rows complete (`tilerows`, `overviews.FirstLevelSink`); after the
    last block the compressed tiles are copied as they are into the COG layout (`cogfile`), nothing
    is compressed twice. Otherwise (other resamplings, integer data, spatial parts side by side) the
    blocks go into an uncompressed tiled GeoTIFF, GDAL builds the overviews there and its COG driver
    compresses it. Either way the COG is written to `.<name>.tmp-<pid>`, checked (`check_cog`:
    rio-cogeo's validation and the overview content) and only then renamed onto `path`; a failed
    check raises InvalidCOG and leaves `path` as it was. Temporaries are removed on any error.

    compress: zstd (default: 2.5× faster than deflate here, read by GDAL ≥ 2.3) | deflate | lzw | none.
    level: codec level (default: 1 for float, where higher
    levels buy < 1 %, else the codec's usual). predictor: default 3 for float, 2 for integers.
    overviews: "auto" (halve until one block), "none"/None, or a list of factors.
    scaling: write float data as scaled integers (`Scaling`: DN = round((value − offset) / scale),
    NaN → nodata), with the band scale/offset GDAL and rasterio calibrate them back with.
    """
    user_path = path = Path(path).expanduser()
    path = Path(gdal_name(path))  # a folder whose name is not UTF-8: through a link (see gdalnames)
    r = as_raster(da, band_names=band_names, tags=tags)
    if scaling is not None and not r.is_float:
        raise ValueError(f"scaling applies to float data; this array is {r.dtype.name}")
    codec = str(compress).lower()
    if codec not in COMPRESSIONS:
        raise ValueError(f"compress={compress!r} is not supported; use one of {', '.join(COMPRESSIONS)}")
    if blocksize % 16 or blocksize <= 0:
        raise ValueError(f"blocksize={blocksize} must be a positive multiple of 16 (e.g. 256, 512)")
    try:
        resampling_enum = Resampling[str(resampling).lower()]
    except KeyError:
        raise ValueError(f"resampling={resampling!r} is unknown; use e.g. average, nearest, mode, bilinear") from None
    if overviews is None or overviews in ("none", "NONE", False):
        factors: list[int] = []
    elif isinstance(overviews, str):
        if overviews.lower() != "auto":
            raise ValueError(f"overviews={overviews!r}: use 'auto', 'none' or a list of factors like [2, 4, 8]")
        factors = overview_factors(r.width, r.height, blocksize)
    else:
        factors = sorted(int(f) for f in overviews)
        if any(f < 2 for f in factors):
            raise ValueError(f"overview factors must be ≥ 2, got {list(overviews)}")

    opts: dict[str, Any] = dict(BLOCKSIZE=blocksize, NUM_THREADS="ALL_CPUS", BIGTIFF="IF_SAFER",
                                COMPRESS=codec.upper(), OVERVIEWS="FORCE_USE_EXISTING" if factors else "NONE")
    if codec != "none":
        if codec in ("deflate", "zstd"):
            # scaled reflectance keeps the float's noisy low bits in its low bits: the float level
            opts["LEVEL"] = level if level is not None else _LEVEL[(codec, r.is_float)]
        opts["PREDICTOR"] = predictor if predictor is not None else (3 if r.is_float and not scaling else 2)

    source = temp_name(path, ".src.tif")
    first_level = bool(factors) and factors[0] == 2 and resampling_enum == Resampling.average
    extra_tags = {RESAMPLING_TAG: resampling_enum.name.upper()} if factors else None
    try:
        with atomic_path(path) as tmp:
            remove(source)
            with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_TIFF_OVR_BLOCKSIZE=str(blocksize)):
                if _assembles(r, factors, first_level):
                    levels = write_compressed_levels(r, source, blocksize=blocksize, opts=opts, factors=factors,
                                                     extra_tags=extra_tags, scaling=scaling)
                    assemble(levels, tmp)
                else:
                    _copy_through_gdal(r, source, tmp, blocksize=blocksize, opts=opts, factors=factors,
                                       resampling=resampling_enum, extra_tags=extra_tags, first_level=first_level,
                                       scaling=scaling)
            remove(source)
            if check:
                errors, _ = cog_errors(tmp)
                if errors:
                    raise InvalidCOG(f"{user_path} would not be a valid COG: {'; '.join(errors)}")
    finally:
        for leftover in (source, Path(f"{source}.aux.xml"), *(Path(f"{source}.ovr{k if k > 1 else ''}") for k in range(1, len(factors) + 1))):
            remove(leftover)
    return user_path


def _assembles(r: Raster, factors: list[int], first_level: bool) -> bool:
    """Whether the COG is assembled from tiles compressed while the blocks come in: float data
    with `average` overviews halving from full resolution (computed here level by level; other
    resamplings are GDAL's), whose rows complete one after another (not for spatial parts side by
    side, whose rows complete only with the last part of the row: the row buffer would hold whole
    parts)."""
    if not (r.is_float and first_level and all(b == 2 * a for a, b in zip(factors, factors[1:]))):
        return False
    if active_client() is not None:
        # blocks from a distributed cluster keep the path the cluster tests prove: with the row
        # buffer, a run whose scheduler was killed under its reduce did not end (not understood yet)
        return False
    return not (isinstance(r.data, Parts) and len({w[2] for w in r.data.windows}) > 1)


def _gtiff_options(opts: dict[str, Any]) -> dict[str, Any]:
    """The GTiff creation options that compress as the COG options `opts` say."""
    codec = opts["COMPRESS"]
    out: dict[str, Any] = {"compress": codec}
    if codec != "NONE":
        out["predictor"] = opts["PREDICTOR"]
    if "LEVEL" in opts:
        out[{"ZSTD": "zstd_level", "DEFLATE": "zlevel"}[codec]] = opts["LEVEL"]
    return out


def write_compressed_levels(r: Raster, path: Path, *, blocksize: int, opts: dict[str, Any], factors: list[int],
                            extra_tags: dict[str, str] | None, scaling: Scaling | None) -> list[Level]:
    """Full resolution and its `average` overview levels as compressed tiled GeoTIFFs (`path`, and
    `<path>.ovr`, `<path>.ovr2`, ... for the levels ×2, ×4, ...), each tile compressed by GDAL's
    worker threads as soon as its row of tiles is complete, while the blocks are still being
    computed (`tilerows`, `overviews.FirstLevelSink`). Each level is computed from the one before
    with the same rule, as the COG check expects (GDAL's build_overviews on a pixel-interleaved
    file computes every level from the first). Returns their levels (IFDs), largest first, for
    `cogfile.assemble`."""
    from .tilerows import TileRows

    profile: dict[str, Any] = dict(
        driver="GTiff", width=r.width, height=r.height, count=r.count,
        dtype=scaling.dtype if scaling else r.dtype.name,
        crs=r.crs, transform=r.transform, nodata=scaling.nodata if scaling else r.nodata, tiled=True,
        blockxsize=blocksize, blockysize=blocksize, bigtiff="if_safer", interleave="pixel", num_threads="all_cpus",
        **_gtiff_options(opts))
    dtype = np.dtype(profile["dtype"])
    nodata = scaling.nodata if scaling else r.nodata

    def level_profile(h: int, w: int, parent_h: int, parent_w: int, parent_transform: Any) -> dict[str, Any]:
        t = parent_transform @ parent_transform.scale(parent_w / w, parent_h / h)
        return {**profile, "width": w, "height": h, "transform": t}

    files = [Path(f"{path}.ovr{'' if k == 1 else k}") for k in range(1, len(factors) + 1)]
    with contextlib.ExitStack() as stack:
        dst = stack.enter_context(rasterio.open(path, "w", **profile))
        _describe(dst, r, extra_tags, scaling)
        datasets = [dst]
        for file in files:
            parent = datasets[-1]
            h, w = -(-parent.height // 2), -(-parent.width // 2)  # GDAL's overview size: rounded up
            datasets.append(stack.enter_context(rasterio.open(
                file, "w", **level_profile(h, w, parent.height, parent.width, parent.transform))))
        # every level computed from the one before as the rows of that one complete, all while
        # the blocks come in: a chain of sinks, full resolution → ×2 → ×4 ... (no level read back)
        from .overviews import FirstLevelSink  # its numba kernel: imported only where levels are written

        rows = [TileRows(ds, r.count, ds.height, ds.width, dtype, blocksize, keep_read_rows=k < len(files))
                for k, ds in enumerate(datasets)]
        sink: Any = rows[-1]
        for k in reversed(range(len(files))):
            sink = FirstLevelSink(datasets[k], datasets[k + 1], nodata, rows=rows[k], level_rows=sink)
        stream(r.data, ScaledSink(sink, scaling) if scaling else sink, numpy_block=blocksize * 2)
        sink.finish()
    try:
        levels = read_levels(path)
        for file in files:
            levels += read_levels(file)
        if len(levels) != 1 + len(factors):
            raise ValueError(f"{len(levels)} images written for {len(factors)} overview levels")
        short = [lv.path for lv in levels if max((o + c for o, c in zip(lv.offsets, lv.counts)), default=0)
                 > lv.path.stat().st_size]
        if short:
            raise ValueError(f"tiles beyond the end of {short[0].name}")
    except ValueError as exc:
        raise _not_written(path, exc) from None
    return levels


def _describe(dst: Any, r: Raster, extra_tags: dict[str, str] | None, scaling: Scaling | None) -> None:
    """Band names, tags and scale/offset of a file being written (GDAL keeps scale/offset in its
    metadata tag; the COG copy and the assembled COG carry them over)."""
    if r.band_names:
        for i, name in enumerate(r.band_names, 1):
            dst.set_band_description(i, name)
    if r.tags or extra_tags:
        dst.update_tags(**{**r.tags, **(extra_tags or {})})
    if scaling is not None:
        dst.scales = [scaling.scale] * r.count
        dst.offsets = [scaling.offset] * r.count


def _not_written(path: Path, why: Exception) -> OSError:
    """GDAL reports a failed write through libtiff on stderr, not as an exception: the files it left
    are then truncated. A full disk is the usual reason, and is said so (the commands name the
    folder and the fix); anything else is an I/O error naming the file."""
    import errno
    import shutil

    if shutil.disk_usage(path.parent).free < (1 << 20):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path.parent))
    return OSError(errno.EIO, f"GDAL could not write {path.name} ({why})", str(path.parent))


def _copy_through_gdal(r: Raster, source: Path, tmp: Path, *, blocksize: int, opts: dict[str, Any],
                       factors: list[int], resampling: Resampling, extra_tags: dict[str, str] | None,
                       first_level: bool, scaling: Scaling | None) -> None:
    """An uncompressed tiled source with its overviews, compressed by GDAL's COG driver after the
    last block (spatial parts side by side: see `_assembles`)."""
    first = write_gtiff_source(r, source, blocksize=blocksize, extra_tags=extra_tags, first_level=first_level,
                               scaling=scaling)
    if first and len(factors) > 1:
        # the smaller levels from the ×2 level (GDAL's external overview file: its first image is
        # level ×2, its own overviews the levels after it)
        with rasterio.open(f"{source}.ovr", "r+") as ovr:
            ovr.build_overviews([f // 2 for f in factors[1:]], resampling)
    elif factors and not first:
        with rasterio.open(source, "r+") as dst:
            dst.build_overviews(factors, resampling)
    # The COG driver's own overview generation took 30 s for 6×4096² here (vs 1.3 s for
    # build_overviews above), so it only copies ours.
    rasterio.shutil.copy(source, tmp, driver="COG", **opts)


class InvalidCOG(ImalysError, ValueError):
    """A written COG failed its checks (structure or overview content); nothing was moved into place."""


#: resamplings whose every output pixel lies between the min and max of its source footprint
_WITHIN_FOOTPRINT = {"NEAREST", "MODE", "MIN", "MAX", "MED", "Q1", "Q3", "AVERAGE", "RMS"}
#: the tag that records the overview resampling (rio-cogeo writes the same tag)
RESAMPLING_TAG = "OVR_RESAMPLING_ALG"


def _footprint(n_src: int, n_dst: int, start: int, stop: int) -> tuple[int, int, np.ndarray]:
    """Source pixels of destination pixels [start, stop) along one axis when `n_src` pixels are
    resampled onto `n_dst` (GDAL's overview rule: the destination pixel i covers the source
    interval [i·r, (i+1)·r), r = n_src / n_dst; partly covered edge pixels weigh by the covered
    fraction). Returns (first source pixel, end source pixel, weights[dst, src])."""
    r = n_src / n_dst
    lo = [int(i * r + 1e-8) for i in range(start, stop)]
    hi = []
    for i, first in zip(range(start, stop), lo):
        end = int(math.ceil((i + 1) * r - 1e-8))
        hi.append(min(max(end, first + 1), n_src))
    s0, s1 = min(lo), max(hi)
    w = np.zeros((stop - start, s1 - s0))
    for k, (i, a, b) in enumerate(zip(range(start, stop), lo, hi)):
        w[k, a - s0:b - s0] = 1.0
        if b - a > 1:
            w[k, a - s0] = 1 - (i * r - a)
            w[k, b - 1 - s0] = 1 - (b - (i + 1) * r)
    return s0, s1, w


def _weighted_rows(w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """w · a[b] for every band, w (d, s) with a run of nonzeros per row (a footprint: ones and
    partly covered ends), a (b, s, t) → (b, d, t). One pass per position in the run, not a dense
    product: a footprint of r source pixels costs r passes over the destination rows."""
    d, s = w.shape
    nz = w != 0
    lo = nz.argmax(axis=1)
    runs = int(nz.sum(axis=1).max()) if d else 0
    out = np.zeros((a.shape[0], d, a.shape[2]))
    rows = np.arange(d)
    for m in range(runs):
        idx = np.minimum(lo + m, s - 1)
        wm = np.where(lo + m < s, w[rows, idx], 0.0)
        out += wm[None, :, None] * a[:, idx, :]
    return out


def _contract(wy: np.ndarray, a: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """wy · a[b] · wxᵀ for every band. Footprint weights are a short run per row, so this takes
    (footprint) passes instead of a dense product: numpy's einsum took 2.6 s of CPU per check of
    a 6 × 3558 × 3635 COG (15 % of a chain's CPU, which checks twice; BLAS threads would fight
    the cores' other users)."""
    return _weighted_rows(wx, _weighted_rows(wy, a).transpose(0, 2, 1)).transpose(0, 2, 1)


def expected_average(src: np.ndarray, valid: np.ndarray, wy: np.ndarray, wx: np.ndarray) -> np.ndarray:
    """Area-weighted mean of the valid source pixels under each destination pixel (NaN where none
    is valid): what an `average` overview holds. src, valid: (band, ys, xs); wy: (dy, ys); wx: (dx, xs)."""
    num = _contract(wy, np.where(valid, src, 0.0), wx)
    den = _contract(wy, valid.astype(np.float64), wx)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _sample_windows(width: int, height: int, window: int, positions: int) -> list[tuple[int, int, int, int]]:
    w, h = min(window, width), min(window, height)
    fracs = [i / (positions - 1) for i in range(positions)] if positions > 1 else [0.5]
    out = []
    for fy in fracs:
        for fx in fracs:
            out.append((int((width - w) * fx), int((height - h) * fy), w, h))
    return sorted(set(out))


def overview_errors(path: str | os.PathLike, *, window: int = 64, positions: int = 3) -> list[str]:
    """Check each overview level against the level it was built from (full resolution for the
    first: GDAL builds each level from the previous one), over `positions`² sample windows of
    `window` overview pixels, corners and edges included.

    Like is compared with like: for `average` overviews (the tag OVR_RESAMPLING_ALG, which
    write_cog sets; rio-cogeo sets it too) the expected pixels are recomputed with GDAL's rule —
    mean of the valid (non-nodata, non-NaN) source pixels under each overview pixel, edge pixels
    weighted by their covered fraction — and must match pixel by pixel: the same nodata pattern,
    values within a few float32 rounding steps of the footprint's magnitude (GDAL accumulates in
    float32 for float32 images), ±1 for integers (GDAL rounds the mean). For nearest, mode, min,
    max and the quantiles each overview pixel must lie within its footprint's range. Without a
    known resampling an overview only has to show data (not all nodata, not all zero) where the
    full resolution has data."""
    errors: list[str] = []
    path = str(path)
    with rasterio.open(path) as src:
        factors = src.overviews(1)
        if not factors:
            return errors
        is_int = not np.issubdtype(np.dtype(src.dtypes[0]), np.floating)
        nodata = src.nodata
        method = str(src.tags().get(RESAMPLING_TAG, "")).upper()
        sizes = [(src.width, src.height)]
        for level in range(len(factors)):
            with rasterio.open(path, overview_level=level) as ov:
                sizes.append((ov.width, ov.height))

    def valid_of(a: np.ndarray) -> np.ndarray:
        ok = np.isfinite(a)
        if nodata is not None and not math.isnan(nodata):
            ok &= a != nodata
        return ok

    # One handle per level, open for the whole check: a level is read as the overview of one step
    # and as the parent of the next, and full resolution as the parent of the first level and for
    # the pooled means of every other; GDAL's block cache (per handle) then decodes each of their
    # 512-px tiles once instead of once per read (a 64-px window decodes a whole tile of every band).
    with contextlib.ExitStack() as stack:
        levels = {-1: stack.enter_context(rasterio.open(path))}
        for level in range(len(factors)):
            levels[level] = stack.enter_context(rasterio.open(path, overview_level=level))
        base = levels[-1]
        for level, f in enumerate(factors):
            (pw, ph), (ow, oh) = sizes[level], sizes[level + 1]
            parent_level = level - 1  # -1: full resolution
            parent, ov = levels[parent_level], levels[level]
            for col, row, w, h in _sample_windows(ow, oh, window, positions):
                where = f"overview ×{f} at overview pixels x {col}–{col + w}, y {row}–{row + h}"
                xs0, xs1, wx = _footprint(pw, ow, col, col + w)
                ys0, ys1, wy = _footprint(ph, oh, row, row + h)
                got = ov.read(window=Window(col, row, w, h)).astype(np.float64)
                full = parent.read(window=Window(xs0, ys0, xs1 - xs0, ys1 - ys0)).astype(np.float64)
                fv, gv = valid_of(full), valid_of(got)
                expected = expected_average(full, fv, wy, wx) if method == "AVERAGE" else None
                if expected is not None:
                    # pixels whose footprint has partly covered source lines (a level whose size is
                    # not exactly half the one above): GDAL works in chunks of lines and may leave
                    # such an edge line out, so there the weighting is not exact (see _average_errors)
                    core_valid = _contract((wy == 1).astype(float), fv.astype(float), (wx == 1).astype(float)) > 0
                if expected is not None and parent_level >= 0 and _average_mismatch(got, gv, expected, full, fv, is_int):
                    # GDAL builds a level either from the previous level (mean of means) or, for
                    # several bands at once, from full resolution (pooled mean); over masked
                    # pixels the two differ, and both are right: accept either, pixel by pixel.
                    # Only where the mean of means does not match: the pooled mean of a deep
                    # level reads a large full-resolution window (a 64-px window of ×32: 2048²)
                    (fw, fh) = sizes[0]
                    bx0, bx1, bwx = _footprint(fw, ow, col, col + w)
                    by0, by1, bwy = _footprint(fh, oh, row, row + h)
                    bfull = base.read(window=Window(bx0, by0, bx1 - bx0, by1 - by0)).astype(np.float64)
                    pooled = expected_average(bfull, valid_of(bfull), bwy, bwx)
                    closer = np.abs(got - pooled) < np.abs(got - expected)
                    expected = np.where(closer & np.isfinite(pooled), pooled, expected)
                for b in range(full.shape[0]):
                    if not fv[b].any():
                        continue
                    name = f"{where}, band {b + 1}"
                    if not gv[b].any():
                        errors.append(f"{name}: all nodata where the source level has {int(fv[b].sum())} valid pixels")
                        continue
                    if np.all(got[b][gv[b]] == 0) and np.any(full[b][fv[b]] != 0):
                        errors.append(f"{name}: all zero, source level mean {full[b][fv[b]].mean():.6g}")
                        continue
                    if expected is not None:
                        errors += _average_errors(name, got[b], gv[b], expected[b], full[b], fv[b], wy, wx, is_int,
                                                  core_valid[b])
                    elif method in _WITHIN_FOOTPRINT:
                        lo = _footprint_reduce(full[b], fv[b], wy, wx, np.min)
                        hi = _footprint_reduce(full[b], fv[b], wy, wx, np.max)
                        slack = 1.0 if is_int else 8 * float(np.finfo(np.float32).eps) * float(np.abs(full[b][fv[b]]).max())
                        bad = gv[b] & np.isfinite(lo) & ((got[b] < lo - slack) | (got[b] > hi + slack))
                        if bad.any():
                            errors.append(f"{name}: {int(bad.sum())} pixel(s) outside the range of the source pixels they cover")
    return errors


def _tolerance(src: np.ndarray, valid: np.ndarray, is_int: bool) -> float:
    """How far an average may be from the exact one: ±1 for integers (GDAL rounds the mean), else
    a few float32 rounding steps of the largest valid source value's magnitude."""
    scale = float(np.abs(src[valid]).max()) if valid.any() else 0.0
    return 1.0 if is_int else 8 * float(np.finfo(np.float32).eps) * max(scale, 1e-30)


def _average_mismatch(got: np.ndarray, gv: np.ndarray, exp: np.ndarray, src: np.ndarray, sv: np.ndarray,
                      is_int: bool) -> bool:
    """Whether any band of an overview window differs from `exp` beyond the exact check's
    tolerance or in its nodata pattern (a quick screen; `_average_errors` says where and why)."""
    for b in range(got.shape[0]):
        ev = np.isfinite(exp[b])
        if np.any(ev != gv[b]):
            return True
        if np.any(np.abs(got[b][ev] - exp[b][ev]) > _tolerance(src[b], sv[b], is_int)):
            return True
    return False


def _average_errors(name: str, got: np.ndarray, gv: np.ndarray, exp: np.ndarray, src: np.ndarray, sv: np.ndarray,
                    wy: np.ndarray, wx: np.ndarray, is_int: bool, core_valid: np.ndarray) -> list[str]:
    """One band of an `average` overview window against the expected averages `exp`.

    Exact (same nodata pattern, values within a few float32 rounding steps of the footprint's
    magnitude, ±1 for integers) wherever the footprint is whole source pixels. Where it has partly
    covered edge lines (a level whose size is not exactly half the one above, e.g. 1779 → 890
    rows) GDAL, working in chunks of lines, can leave such a partial line out: there the pixel
    may be nodata when its fully covered pixels are all nodata, and its value must lie within the
    range of the valid pixels it covers."""
    # np.asarray: numpy's stubs type `.any(axis=…)` as a scalar or an array
    partial = (np.asarray(((wy > 0) & (wy < 1)).any(axis=1))[:, None]) | (np.asarray(((wx > 0) & (wx < 1)).any(axis=1))[None, :])
    ev = np.isfinite(exp)
    lost = ev & ~gv & ~(partial & ~core_valid)  # nodata in the overview where the average has data
    extra = gv & ~ev  # data in the overview where no source pixel has any
    out = []
    if lost.any() or extra.any():
        out.append(f"{name}: {int(lost.sum() + extra.sum())} pixel(s) nodata in one of overview and expected average "
                   "but not the other")
        return out
    both = gv & ev
    tol = _tolerance(src, sv, is_int)
    diff = np.where(both, np.abs(got - np.where(ev, exp, 0)), 0)
    bad = diff > tol
    for j, i in zip(*np.nonzero(bad & partial)):  # few: the chunk edges of a non-halving level
        vals = src[np.ix_(np.nonzero(wy[j])[0], np.nonzero(wx[i])[0])][sv[np.ix_(np.nonzero(wy[j])[0], np.nonzero(wx[i])[0])]]
        if vals.size and vals.min() - tol <= got[j, i] <= vals.max() + tol:
            bad[j, i] = False
    if bad.any():
        k = np.unravel_index(np.argmax(np.where(bad, diff, -1)), diff.shape)
        out.append(f"{name}: {int(bad.sum())} pixel(s) differ from the average of the source pixels they cover "
                   f"(worst {got[k]:.7g} vs {exp[k]:.7g})")
    return out


def _footprint_reduce(a: np.ndarray, valid: np.ndarray, wy: np.ndarray, wx: np.ndarray, fn) -> np.ndarray:
    """fn (min or max) over the valid source pixels of each destination pixel (NaN where none)."""
    out = np.full((wy.shape[0], wx.shape[0]), np.nan)
    for j in range(wy.shape[0]):
        rows = np.nonzero(wy[j])[0]
        for i in range(wx.shape[0]):
            cols = np.nonzero(wx[i])[0]
            blk = a[np.ix_(rows, cols)][valid[np.ix_(rows, cols)]]
            if blk.size:
                out[j, i] = fn(blk)
    return out


def cog_errors(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """rio-cogeo's structural validation plus the overview content check: (errors, warnings)."""
    from rio_cogeo.cogeo import cog_validate  # imported here: it brings morecantile and pydantic (~0.25 s)

    path = Path(path)
    if not path.is_file():
        return [f"{path} does not exist or is not a file"], []
    ok, errors, warnings = cog_validate(gdal_name(path), quiet=True)
    errors, warnings = list(errors), list(warnings)
    try:
        errors += overview_errors(gdal_name(path))
    except rasterio.errors.RasterioIOError as exc:
        errors.append(f"cannot read the overviews of {path}: {exc}")
    return errors, warnings


def check_cog(path: str | os.PathLike) -> tuple[bool, list[str], list[str]]:
    """Validate a COG: rio-cogeo's structural validation plus an overview content check.

    Returns (ok, errors, warnings)."""
    errors, warnings = cog_errors(path)
    return not errors, errors, warnings
