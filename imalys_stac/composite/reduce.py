"""``reduce_stack``: the compiled kernels run blockwise over a (lazy) time × band × y × x cube.

The cube is rechunked so that time (and band, where a method mixes bands) is one
chunk; each spatial block is then reduced independently by ``dask.array.map_blocks``
with the numba kernels of :mod:`.kernels`, which release the GIL.  Nothing is
computed at call time when the input is Dask-backed.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import InputError
from ..registry import REDUCERS
from . import small as S

__all__ = ["METHODS", "reduce_stack", "BLOCK_BYTES"]

#: The reducers built in (the Imalys ``execute`` values, lower case); ``reduce_stack`` reads the
#: registry itself, so a reducer registered later is accepted too.
METHODS: tuple[str, ...] = tuple(REDUCERS)
#: Upper bound for one input block (all times × bands in the block × y × x × 4 bytes).
#: Spatial chunks are split until a block fits, so memory per task does not grow
#: with the number of dates beyond this.
BLOCK_BYTES = 64 * 2**20
_DIMS = ("time", "band", "y", "x")


def _band_error(name: str, message: str) -> InputError:
    """A band number the user gave that does not fit the stack (a user error: located at `name`)."""
    err = InputError(message)
    err.parameter = name  # type: ignore[attr-defined]
    return err


def _check_band_number(name: str, value: Any, nbands: int, method: str) -> int:
    if value is None:
        raise _band_error(name, f"reduce '{method}' needs the '{name}' band number (1-based, 1..{nbands})")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _band_error(name, f"'{name}' must be a band number (1-based, 1..{nbands}), got {value!r}") from None
    if number != value or not 1 <= number <= nbands:
        raise _band_error(name, f"'{name}' must be a band number (1-based, 1..{nbands}), got {value!r}")
    return number


def _quality_vector(cube: xr.DataArray, quality: Any, ntime: int) -> np.ndarray:
    if quality is None:
        if "quality" not in cube.coords:
            raise ValueError("reduce 'bestof' needs the images' quality (clear fractions): pass quality=... "
                             "or give the cube a 'quality' coordinate along 'time'")
        quality = cube.coords["quality"].values
    q = np.asarray(quality, dtype=np.float64).reshape(-1)
    if q.shape != (ntime,):
        raise ValueError(f"quality must hold one value per time ({ntime}), got {q.shape[0]} values")
    if not np.all(np.isfinite(q)) or np.any(q < 0):
        raise ValueError(f"quality values must be finite and >= 0 (clear fractions), got {q.tolist()}")
    return q


def _plan_chunks(arr: da.Array, whole_band: bool) -> da.Array:
    """Rechunk so time (and band if needed) is one chunk and a block stays under BLOCK_BYTES."""
    T, B = arr.shape[:2]
    cb = B if whole_band else max(arr.chunks[1])
    cy, cx = max(arr.chunks[2], default=1), max(arr.chunks[3], default=1)
    per_px = max(T, 1) * max(cb, 1) * 4
    # Halve the larger spatial side until one block fits (keeps blocks near-square).
    while per_px * cy * cx > BLOCK_BYTES and (cy > 16 or cx > 16):
        if cy >= cx:
            cy = math.ceil(cy / 2)
        else:
            cx = math.ceil(cx / 2)
    target: dict[int, Any] = {0: -1}
    if whole_band:
        target[1] = -1
    if cy < max(arr.chunks[2], default=1):
        target[2] = cy
    if cx < max(arr.chunks[3], default=1):
        target[3] = cx
    return arr.rechunk(target)


def _reduce_block(block: np.ndarray, *, kernel: Any, quality: np.ndarray, threshold: float,
                  want_count: bool, want_source: bool, flat: bool) -> np.ndarray:
    """Reduce one block ``(T, B, y, x)`` → ``(nout, y, x)``: result bands, then count, then source.

    ``kernel`` is the registry entry's (:class:`imalys_stac.registry.Reducer`); for a reducer
    with ``needs`` the block holds those bands only (``[red, nir(, blue)]``).
    """
    block = np.ascontiguousarray(block, dtype=np.float32)
    out, src, cnt = kernel(block, quality, threshold, want_source)
    if flat:
        from .kernels import flatten_bands

        out = flatten_bands(out)
    planes = [out]
    if want_count:
        if cnt is None:
            if kernel in S.KERNELS.values():  # a small stack: no compiled kernel loaded for it
                cnt = S.count_any(block)
            else:
                from .kernels import count_any

                cnt = count_any(block)
        planes.append(cnt[None])
    if want_source:
        if src is None or src.size == 0:
            src = np.full(block.shape[2:], np.nan, dtype=np.float32)
        planes.append(src[None])
    return planes[0] if len(planes) == 1 else np.concatenate(planes, axis=0)


def _reduce_block_unit(block: np.ndarray, **kwargs) -> np.ndarray:
    return _reduce_block(block, **kwargs)[None]


def reduce_stack(cube: xr.DataArray, method: str, *, quality: Any = None, threshold: float = 0.5,
                 red: int | None = None, nir: int | None = None, blue: int | None = None,
                 count: bool = False, source: bool = False, flat: bool = False) -> xr.DataArray:
    """Reduce a ``(time, band, y, x)`` stack over time, per pixel, from the valid (non-NaN) values.

    Parameters
    ----------
    cube:
        float32 DataArray with dims ``time, band, y, x`` (any order of these names),
        NaN = nodata; Dask-backed (stays lazy) or numpy.
    method:
        One of :data:`METHODS` (case-insensitive):

        * ``bestof``: per band-pixel, ≥ 3 valid → median; 2 → mean, unless the lower
          image quality is below ``threshold`` × the higher (``q_low < threshold·q_high``),
          then the better image's value; 1 → that value; 0 → NaN.  Validity is per
          band-pixel (a band may be NaN where others are not).  Even counts take the
          mean of the two middle values (the original Imalys takes the upper one).
        * ``median``, ``mean``; ``variance``: sample variance (divisor n − 1, NaN below
          2 values, as the original); ``difference``: last valid − first valid (NaN
          below 2 values); ``count``: valid values per band.
        * ``medoid``: among the times valid in all bands, the observation whose spectrum
          is nearest (Euclidean) to their per-band median; ties → earliest.
        * ``brightness``: per time the quadratic mean over the valid bands, then the
          mean over times (the original returns the Euclidean length instead).
        * ``ndvi``, ``nirv`` (ndvi·nir), ``evi`` (2.5 (nir−red)/(nir+6 red−7.5 blue+1)):
          per time, then the median over the times where the index is valid.
    quality:
        One clear fraction per time (``bestof``); default ``cube.coords["quality"]``.
    threshold:
        ``bestof`` two-value rule, 0..1 (default 0.5: "the lower is less than half of
        the higher").
    red, nir, blue:
        1-based band numbers for the indices (``blue`` for ``evi`` only).
    count:
        Append band ``count``: acquisitions the method could use per pixel (valid in
        at least one band; medoid: valid in all bands; indices: index valid).
    source:
        Append band ``source``: index along ``time`` of the acquisition the result was
        taken from, NaN where none or no single one was chosen (bestof/median: one
        valid value, or bestof's better-of-two, the same in every band; medoid:
        always; indices: one valid time; other methods: NaN).
    flat:
        Reduce the result bands to one (their mean, ignoring NaN), named after the method.

    Returns
    -------
    DataArray ``(band, y, x)`` float32, lazy if the input is.  Band names: the input's
    for per-band methods, the method name for indices/brightness/flat, then
    ``count``/``source``.  x/y and scalar coordinates (``spatial_ref``…) and attrs are
    kept; band-only coordinates are kept when the bands are the input's unchanged.
    """
    if not isinstance(cube, xr.DataArray):
        raise TypeError(f"reduce_stack needs an xarray.DataArray, got {type(cube).__name__}")
    name = str(method).strip().lower()
    if name not in REDUCERS:
        raise InputError(f"unknown reduce method {method!r}; accepted: {', '.join(REDUCERS)}")
    entry = REDUCERS[name]
    if set(cube.dims) != set(_DIMS) or cube.ndim != 4:
        raise ValueError(f"cube must have dims {_DIMS}, got {tuple(cube.dims)}")
    cube = cube.transpose(*_DIMS)
    T, B, Y, X = cube.shape
    if B == 0:
        raise ValueError("cube has no bands")
    threshold = float(threshold)
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be between 0 and 1 (bestof quality ratio), got {threshold}")

    q = _quality_vector(cube, quality, T) if entry.uses_quality else np.ones(T)
    numbers = {"red": red, "nir": nir, "blue": blue}
    bands = tuple(_check_band_number(need, numbers[need], B, name) - 1 for need in entry.needs)

    per_band = entry.per_band and not flat
    n_result = B if per_band else 1
    nout = n_result + int(bool(count)) + int(bool(source))
    kwargs: dict[str, Any] = dict(kernel=_kernel(entry, name, T * B * Y * X, q, threshold), quality=q, threshold=threshold,
                  want_count=bool(count), want_source=bool(source), flat=bool(flat) and entry.per_band)

    data = cube.data
    if data.dtype != np.float32:
        data = data.astype(np.float32)
    if bands:  # indices read only [red, nir(, blue)]: select before any rechunk or I/O
        data = data[:, list(bands)]
    if isinstance(data, da.Array):
        # Bands stay split only where each band reduces alone and nothing spans them.
        whole_band = not (entry.per_band and not entry.spans_bands and not count and not source and not flat)
        data = _plan_chunks(data, whole_band)
        out_band_chunks = data.chunks[1] if (per_band and nout == B) else (nout,)
        # time kept as a unit axis and dropped by indexing (a view): map_blocks' drop_axis copies
        # every input block into a fresh array first (dask's concatenate3, 3 % of a chain's CPU)
        result = da.map_blocks(
            _reduce_block_unit, data, chunks=((1,), out_band_chunks, data.chunks[2], data.chunks[3]),
            dtype=np.float32, meta=np.empty((0, 0, 0, 0), np.float32), token=f"imalys-{name}", **kwargs,
        )[0]
    else:
        result = _reduce_block(np.asarray(data), **kwargs)

    return _wrap(cube, result, name, per_band, bool(count), bool(source))


def _kernel(entry: Any, name: str, values: int, quality: np.ndarray, threshold: float) -> Any:
    """The registry entry's kernel, or for a small stack of a built-in ``median``/``bestof`` its
    numpy form (:mod:`.small`: the same values without loading numba, whose first call costs ten
    times the pixel work of a tutorial-sized stack) — when it is computed in this process: the
    workers of a distributed cluster load the kernels once for their whole life."""
    from ..runtime.client import active_client

    if (values <= S.SMALL_VALUES and active_client() is None and name in S.KERNELS and entry.kernel == f"imalys_stac.composite.methods:{name}"
            and quality.shape[0] >= 1 and S.fits(quality, threshold)):
        return S.KERNELS[name]
    return entry.load_kernel()


def _wrap(cube: xr.DataArray, result: Any, name: str, per_band: bool, count: bool,
          source: bool) -> xr.DataArray:
    """Dress the reduced array with band names, spatial/scalar coords, attrs and CRS."""
    if per_band:
        names = list(cube["band"].values) if "band" in cube.coords else list(range(1, cube.sizes["band"] + 1))
    else:
        names = [name]
    extra = (["count"] if count else []) + (["source"] if source else [])
    band_values = np.array([str(v) for v in names] + extra) if extra else np.asarray(names)
    coords: dict[Hashable, Any] = {"band": band_values}
    for cname, coord in cube.coords.items():
        if cname == "band" or "time" in coord.dims:
            continue
        if "band" in coord.dims:
            if per_band and not extra and coord.dims == ("band",):
                coords[cname] = coord.variable
            continue
        coords[cname] = coord.variable
    out = xr.DataArray(result, dims=("band", "y", "x"), coords=coords, attrs=dict(cube.attrs), name=name)
    try:  # keep the CRS even where rioxarray found it somewhere other than a kept coordinate
        import rioxarray  # noqa: F401

        crs = cube.rio.crs
        if crs is not None and out.rio.crs != crs:
            out = out.rio.write_crs(crs)
    except Exception:  # noqa: BLE001 - no rioxarray or no CRS at all: nothing to keep
        pass
    return out
