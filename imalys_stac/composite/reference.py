"""Plain, obviously-correct reference implementations of every reducer (for tests only).

One Python loop per pixel over numpy arrays ``(time, band, y, x)``; slow on purpose:
each function states the rule in the most direct form so the compiled kernels can
be checked against it.  Results are float32 ``(band, y, x)``; "valid" means not NaN.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "median", "bestof", "mean", "variance", "count", "difference", "medoid",
    "brightness", "ndvi", "nirv", "evi", "flat",
    "bestof_source", "median_source", "medoid_source", "index_source", "used_count",
]

F32 = np.float32
NAN = F32(np.nan)


def _median_of(values: list) -> np.float32:
    """Median of float32 values: middle one, or the mean of the two middle ones (in float32)."""
    s = sorted(F32(v) for v in values)
    k = len(s)
    if k == 0:
        return NAN
    if k % 2:
        return s[k // 2]
    lo, hi = s[k // 2 - 1], s[k // 2]
    return F32((lo + hi) / F32(2))


def _valid_times(stack: np.ndarray, b: int, y: int, x: int) -> list[int]:
    return [t for t in range(stack.shape[0]) if not np.isnan(stack[t, b, y, x])]


def _per_band(stack: np.ndarray, fn) -> np.ndarray:
    """Apply ``fn(times, values)`` to every band-pixel's valid observations."""
    T, B, Y, X = stack.shape
    out = np.full((B, Y, X), np.nan, dtype=F32)
    for b in range(B):
        for y in range(Y):
            for x in range(X):
                times = _valid_times(stack, b, y, x)
                out[b, y, x] = fn(times, [stack[t, b, y, x] for t in times])
    return out


def median(stack: np.ndarray) -> np.ndarray:
    """Per band-pixel median of the valid observations."""
    return _per_band(stack, lambda times, vals: _median_of(vals))


def _bestof_pick(times, vals, quality, threshold):
    """(value, chosen time or None) by the bestof rule for one band-pixel."""
    k = len(vals)
    if k == 0:
        return NAN, None
    if k == 1:
        return F32(vals[0]), times[0]
    if k == 2:
        qa, qb = float(quality[times[0]]), float(quality[times[1]])
        if qa < threshold * qb:
            return F32(vals[1]), times[1]
        if qb < threshold * qa:
            return F32(vals[0]), times[0]
        return F32((F32(vals[0]) + F32(vals[1])) / F32(2)), None
    return _median_of(vals), None


def bestof(stack: np.ndarray, quality, threshold: float = 0.5) -> np.ndarray:
    """≥3 valid → median; 2 → mean, or the better one if ``q_low < threshold·q_high``; 1 → it."""
    return _per_band(stack, lambda t, v: _bestof_pick(t, v, quality, float(threshold))[0])


def _combine(picks: list) -> float:
    """One source index if every band with a result chose the same single time, else NaN."""
    picks = [p for p in picks if p != "none"]
    if not picks or any(p is None for p in picks) or len(set(picks)) != 1:
        return math.nan
    return float(picks[0])


def bestof_source(stack: np.ndarray, quality, threshold: float = 0.5) -> np.ndarray:
    """Source plane ``(y, x)`` of bestof."""
    T, B, Y, X = stack.shape
    out = np.full((Y, X), np.nan, dtype=F32)
    for y in range(Y):
        for x in range(X):
            picks = []
            for b in range(B):
                times = _valid_times(stack, b, y, x)
                vals = [stack[t, b, y, x] for t in times]
                picks.append("none" if not times else _bestof_pick(times, vals, quality, float(threshold))[1])
            out[y, x] = _combine(picks)
    return out


def median_source(stack: np.ndarray) -> np.ndarray:
    """Source plane of median: the single valid time where each band has just one (and the same)."""
    return bestof_source(stack, np.ones(stack.shape[0]), 0.0)


def mean(stack: np.ndarray) -> np.ndarray:
    return _per_band(stack, lambda t, v: F32(np.mean(np.array(v, dtype=np.float64))) if v else NAN)


def variance(stack: np.ndarray) -> np.ndarray:
    """Sample variance (divisor n − 1); NaN with fewer than two valid values."""
    return _per_band(stack, lambda t, v: F32(np.var(np.array(v, dtype=np.float64), ddof=1)) if len(v) >= 2 else NAN)


def count(stack: np.ndarray) -> np.ndarray:
    return _per_band(stack, lambda t, v: F32(len(v)))


def difference(stack: np.ndarray) -> np.ndarray:
    """Last valid minus first valid (float32); NaN with fewer than two valid values."""
    return _per_band(stack, lambda t, v: F32(F32(v[-1]) - F32(v[0])) if len(v) >= 2 else NAN)


def _medoid_pixel(stack, y, x):
    T, B = stack.shape[:2]
    cand = [t for t in range(T) if not np.isnan(stack[t, :, y, x]).any()]
    if not cand:
        return None
    med = [_median_of([stack[t, b, y, x] for t in cand]) for b in range(B)]
    best, best_d = None, math.inf
    for t in cand:
        d = 0.0
        for b in range(B):
            d += (float(stack[t, b, y, x]) - float(med[b])) ** 2
        if d < best_d:
            best, best_d = t, d
    return best


def medoid(stack: np.ndarray) -> np.ndarray:
    """Spectrum of the candidate (valid in all bands) nearest the candidates' per-band median."""
    T, B, Y, X = stack.shape
    out = np.full((B, Y, X), np.nan, dtype=F32)
    for y in range(Y):
        for x in range(X):
            t = _medoid_pixel(stack, y, x)
            if t is not None:
                out[:, y, x] = stack[t, :, y, x]
    return out


def medoid_source(stack: np.ndarray) -> np.ndarray:
    T, B, Y, X = stack.shape
    out = np.full((Y, X), np.nan, dtype=F32)
    for y in range(Y):
        for x in range(X):
            t = _medoid_pixel(stack, y, x)
            out[y, x] = math.nan if t is None else t
    return out


def brightness(stack: np.ndarray) -> np.ndarray:
    """Mean over times of the quadratic mean over that time's valid bands → (1, y, x)."""
    T, B, Y, X = stack.shape
    out = np.full((1, Y, X), np.nan, dtype=F32)
    for y in range(Y):
        for x in range(X):
            per_time = []
            for t in range(T):
                vals = [float(v) for v in stack[t, :, y, x] if not np.isnan(v)]
                if vals:
                    per_time.append(math.sqrt(sum(v * v for v in vals) / len(vals)))
            if per_time:
                out[0, y, x] = F32(sum(per_time) / len(per_time))
    return out


def _index_series(stack, kind, red, nir, blue, y, x) -> list:
    """Per-time index values (float32) of one pixel; None where invalid."""
    series: list[np.float32 | None] = []
    for t in range(stack.shape[0]):
        r = float(stack[t, red - 1, y, x])
        n = float(stack[t, nir - 1, y, x])
        bl = float(stack[t, blue - 1, y, x]) if kind == "evi" else 0.0
        if math.isnan(r) or math.isnan(n) or math.isnan(bl):
            series.append(None)
            continue
        if kind == "evi":
            den = n + 6.0 * r - 7.5 * bl + 1.0
            v = 2.5 * (n - r) / den if den != 0.0 else math.nan
        else:
            den = n + r
            v = (n - r) / den if den != 0.0 else math.nan
            if kind == "nirv" and not math.isnan(v):
                v = v * n
        v32 = F32(v)
        series.append(None if np.isnan(v32) else v32)
    return series


def _index(stack, kind, red, nir, blue=None) -> np.ndarray:
    T, B, Y, X = stack.shape
    out = np.full((1, Y, X), np.nan, dtype=F32)
    for y in range(Y):
        for x in range(X):
            vals = [v for v in _index_series(stack, kind, red, nir, blue, y, x) if v is not None]
            out[0, y, x] = _median_of(vals)
    return out


def ndvi(stack: np.ndarray, red: int, nir: int) -> np.ndarray:
    """Median over valid times of (nir − red)/(nir + red); bands are 1-based."""
    return _index(stack, "ndvi", red, nir)


def nirv(stack: np.ndarray, red: int, nir: int) -> np.ndarray:
    """Median over valid times of ndvi · nir."""
    return _index(stack, "nirv", red, nir)


def evi(stack: np.ndarray, red: int, nir: int, blue: int) -> np.ndarray:
    """Median over valid times of 2.5 (nir − red)/(nir + 6 red − 7.5 blue + 1)."""
    return _index(stack, "evi", red, nir, blue)


def index_source(stack, kind, red, nir, blue=None) -> np.ndarray:
    """The single valid time of the index where there is exactly one, else NaN."""
    T, B, Y, X = stack.shape
    out = np.full((Y, X), np.nan, dtype=F32)
    for y in range(Y):
        for x in range(X):
            ts = [t for t, v in enumerate(_index_series(stack, kind, red, nir, blue, y, x)) if v is not None]
            if len(ts) == 1:
                out[y, x] = ts[0]
    return out


def used_count(stack: np.ndarray, method: str, red=None, nir=None, blue=None) -> np.ndarray:
    """The ``count`` band: acquisitions the method could use at each pixel.

    Per-band methods and brightness: times valid in at least one band; medoid: times
    valid in all bands; indices: times where the index is valid.
    """
    T, B, Y, X = stack.shape
    out = np.zeros((Y, X), dtype=F32)
    for y in range(Y):
        for x in range(X):
            if method in ("ndvi", "nirv", "evi"):
                n = sum(v is not None for v in _index_series(stack, method, red, nir, blue, y, x))
            elif method == "medoid":
                n = sum(not np.isnan(stack[t, :, y, x]).any() for t in range(T))
            else:
                n = sum(not np.isnan(stack[t, :, y, x]).all() for t in range(T)) if B else 0
            out[y, x] = n
    return out


def flat(result: np.ndarray) -> np.ndarray:
    """Mean over the bands of a (band, y, x) result, ignoring NaN → (1, y, x)."""
    B, Y, X = result.shape
    out = np.full((1, Y, X), np.nan, dtype=F32)
    for y in range(Y):
        for x in range(X):
            vals = [float(v) for v in result[:, y, x] if not np.isnan(v)]
            if vals:
                out[0, y, x] = F32(sum(vals) / len(vals))
    return out
