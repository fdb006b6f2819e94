"""A deterministic, continuous landscape: TOA reflectance (and brightness temperature) as a
function of ground coordinates.

The field is defined in one fixed CRS (EPSG:32632, UTM 32N, around Munich) and evaluated point
by point, so any scene in any CRS that samples the same ground point gets the same value; two
scenes on the same 30 m grid agree bit for bit. It is built from land-cover memberships drawn
from smooth random fields (``noise.py``):

* agricultural parcels (a rotated, warped grid of ~300 × 450 m fields, each a random mixture of
  dense crop, grass and bare soil) as the background,
* forest patches, urban areas (with a fine building-scale texture), lakes and meandering rivers,
* a fine texture (60–400 m) of ±5 % on all land reflectances.

Memberships blend over a short distance, so borders look like mixed pixels rather than steps
(this also keeps cross-zone resampling errors small). Spectra are typical TOA values of each
cover; vegetation has NIR 0.3–0.45 and red 0.03–0.06, water has NIR < 0.02.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numba
import numpy as np
from pyproj import CRS, Transformer

from .noise import TILE, wave_table, x_tables, y_tables

#: the fixed CRS the landscape is defined in
LANDSCAPE_CRS = "EPSG:32632"

#: channels the landscape provides: the optical common names, then thermal (kelvin)
CHANNELS: tuple[str, ...] = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22", "lwir11")
_ALIASES = {"lwir": "lwir11", "nir": "nir08", "swir1": "swir16", "swir2": "swir22"}

# Spectra per cover: coastal, blue, green, red, nir08, swir16, swir22 (reflectance), lwir11 (K)
_WATER = (0.075, 0.060, 0.050, 0.030, 0.015, 0.008, 0.005, 291.0)
_FOREST = (0.030, 0.025, 0.045, 0.025, 0.300, 0.140, 0.060, 294.0)
_CROP = (0.035, 0.030, 0.075, 0.035, 0.420, 0.210, 0.090, 296.0)
_GRASS = (0.045, 0.040, 0.085, 0.055, 0.330, 0.230, 0.120, 298.0)
_SOIL = (0.080, 0.090, 0.130, 0.170, 0.240, 0.320, 0.270, 306.0)
_URBAN = (0.100, 0.100, 0.110, 0.120, 0.170, 0.200, 0.180, 309.0)
SPECTRA = np.array([_WATER, _FOREST, _CROP, _GRASS, _SOIL, _URBAN], dtype=np.float64)

_NW = 10  # waves per field (tables are padded to this many)
# field index -> (wavelength range in metres at scale 1, spectral slope)
_FIELDS = {
    "lake": (4000.0, 25000.0, 1.0),
    "urban": (2000.0, 15000.0, 1.0),
    "forest": (1000.0, 10000.0, 1.0),
    "warp": (2000.0, 10000.0, 1.0),
    "texture": (60.0, 400.0, 0.5),
    "moisture": (1000.0, 8000.0, 1.0),
}
_LAKE, _URBANF, _FORESTF, _WARP, _TEX, _MOIST = range(6)


@numba.njit(cache=True, inline="always")
def _hash01(a: np.int64, b: np.int64, salt: np.uint64) -> float:
    """Uniform [0, 1) from two integers (splitmix64 finaliser): one random draw per cell."""
    z = (np.uint64(a + 4611686018427387904) * np.uint64(0x9E3779B97F4A7C15)) ^ (
        np.uint64(b + 4611686018427387904) * np.uint64(0xC2B2AE3D27D4EB4F)) ^ salt
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def _ramp(t: float) -> float:
    """0 below -0.5, 1 above 0.5, smoothstep between: a soft class border."""
    t = t + 0.5
    if t <= 0.0:
        return 0.0
    if t >= 1.0:
        return 1.0
    return t * t * (3.0 - 2.0 * t)


@numba.njit(cache=True, inline="always")
def _field(q, cx, sx, cy, sy, amp, jx, jy):
    """Smooth field ``q`` at one point from the split-cosine tables (see noise.py)."""
    v = 0.0
    for k in range(amp.shape[1]):
        v += amp[q, k] * (cx[jx, q, k] * cy[jy, q, k] - sx[jx, q, k] * sy[jy, q, k])
    return v


@numba.njit(cache=True, inline="always")
def _fields(cx, sx, cy, sy, amp, jx, jy):
    """The six smooth fields at one point (a tuple: no per-pixel allocation)."""
    return (_field(0, cx, sx, cy, sy, amp, jx, jy), _field(1, cx, sx, cy, sy, amp, jx, jy),
            _field(2, cx, sx, cy, sy, amp, jx, jy), _field(3, cx, sx, cy, sy, amp, jx, jy),
            _field(4, cx, sx, cy, sy, amp, jx, jy), _field(5, cx, sx, cy, sy, amp, jx, jy))


@numba.njit(cache=True, inline="always")
def _cover(xx, yy, f, spectra, geo, salt, out, o1, o2):
    """Land cover and spectrum at one point; writes 9 values into out[:, o1, o2]."""
    ca, sa, pu, pv, period, width, ucell, scale = (geo[0], geo[1], geo[2], geo[3], geo[4], geo[5],
                                                   geo[6], geo[7])
    f_lake, f_urban, f_forest, f_warp, f_tex, f_moist = f[0], f[1], f[2], f[3], f[4], f[5]
    # parcels: a rotated grid, warped so that field rows bend with the terrain
    u = ca * xx + sa * yy + 120.0 * scale * f_warp
    v = -sa * xx + ca * yy + 120.0 * scale * f_moist
    iu = np.int64(np.floor(u / pu))
    iv = np.int64(np.floor(v / pv))
    h_type = _hash01(iu, iv, salt)
    h_frac = _hash01(iv, iu, salt ^ np.uint64(0x5151))
    h_gain = _hash01(iu + 7, iv - 3, salt ^ np.uint64(0xA5A5))
    if h_type < 0.15:  # bare or freshly sown
        veg, vf = 2, 0.2 * h_frac
    elif h_type < 0.40:  # meadow
        veg, vf = 3, 0.7 + 0.3 * h_frac
    else:  # crop, from emerging to full cover
        veg, vf = 2, 0.4 + 0.6 * h_frac
    gain = 0.95 + 0.1 * h_gain
    m_forest = _ramp((f_forest - 0.5) / 0.25)
    m_urban = _ramp((f_urban - 1.2) / 0.2)
    # buildings: urban brightness varies by +-25 % between small cells
    ub = 0.75 + 0.5 * _hash01(np.int64(np.floor(xx / ucell)), np.int64(np.floor(yy / ucell)),
                              salt ^ np.uint64(0x3C3C))
    # water: lakes where the lake field peaks, rivers along a warped periodic line
    m_lake = _ramp((f_lake - 1.6) / 0.15)
    w = (v + 900.0 * scale * f_warp) % period
    d = abs(w - 0.5 * period)
    m_river = _ramp((width - d) / (0.5 * width))
    m_water = max(m_lake, m_river)
    for c in range(8):
        val = vf * spectra[veg, c] + (1.0 - vf) * spectra[4, c]
        if c < 7:
            val *= gain
        val = val + m_forest * (spectra[1, c] - val)
        urb = spectra[5, c] * ub if c < 7 else spectra[5, c]
        val = val + m_urban * (urb - val)
        if c < 7:
            val *= 1.0 + 0.05 * f_tex
            wat = spectra[0, c] * (1.0 + 0.1 * f_moist)
        else:
            val += 1.5 * f_moist + 0.5 * f_tex
            wat = spectra[0, c] + 0.5 * f_moist
        out[c, o1, o2] = np.float32(val + m_water * (wat - val))
    out[8, o1, o2] = np.float32(m_water)


@numba.njit(cache=True, parallel=True)
def _grid_kernel(xs, ys, cx, sx, cy, sy, amp, spectra, geo, salt):
    """(9, ny, nx) on the grid xs × ys."""
    out = np.empty((9, ys.shape[0], xs.shape[0]), dtype=np.float32)
    nx = xs.shape[0]
    for t in numba.prange((nx + TILE - 1) // TILE):
        for i in range(ys.shape[0]):
            for j in range(t * TILE, min(nx, (t + 1) * TILE)):
                f = _fields(cx, sx, cy, sy, amp, j, i)
                _cover(xs[j], ys[i], f, spectra, geo, salt, out, i, j)
    return out


@numba.njit(cache=True, parallel=True)
def _point_kernel(x, y, cx, sx, cy, sy, amp, spectra, geo, salt):
    """(9, 1, n) at the points (x, y)."""
    out = np.empty((9, 1, x.shape[0]), dtype=np.float32)
    for p in numba.prange(x.shape[0]):
        f = _fields(cx, sx, cy, sy, amp, p, p)
        _cover(x[p], y[p], f, spectra, geo, salt, out, 0, p)
    return out


_CHUNK = 1 << 16  # points per batch of trig tables (6 fields x 10 waves x 4 x 8 B = 120 MB)


@lru_cache(maxsize=32)
def _transformer(src: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(LANDSCAPE_CRS), always_xy=True)


def _crs_key(crs: object) -> str:
    """A hashable, canonical text for any CRS input (EPSG code, string, rasterio/pyproj CRS)."""
    if hasattr(crs, "to_wkt"):
        c = CRS.from_wkt(crs.to_wkt())
    else:
        c = CRS.from_user_input(crs)
    epsg = c.to_epsg()
    return f"EPSG:{epsg}" if epsg else c.to_wkt()


class Landscape:
    """Deterministic TOA reflectance field on the ground.

    ``seed`` picks the landscape; ``scale`` stretches every feature size (1.0: parcels of
    ~300 × 450 m, lakes of several km). The object is cheap, immutable and pickleable.
    """

    crs = LANDSCAPE_CRS
    channels = CHANNELS

    def __init__(self, seed: int = 0, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError(f"Landscape scale must be > 0, got {scale}")
        self.seed = int(seed)
        self.scale = float(scale)
        rng = np.random.default_rng([self.seed, 0x1A4D])
        self._waves = np.zeros((len(_FIELDS), _NW, 4))
        for i, (lo, hi, beta) in enumerate(_FIELDS.values()):
            self._waves[i] = wave_table(rng, _NW, lo * scale, hi * scale, beta)
        angle = np.deg2rad(rng.uniform(10.0, 35.0))
        self._geo = np.array([np.cos(angle), np.sin(angle), 300.0 * scale, 450.0 * scale,
                              30000.0 * scale, 45.0 * scale, 60.0 * scale, scale])
        self._salt = np.uint64(rng.integers(0, 2**63))
        self._amp = np.ascontiguousarray(self._waves[:, :, 3])

    def __repr__(self) -> str:
        return f"Landscape(seed={self.seed}, scale={self.scale})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Landscape) and (self.seed, self.scale) == (other.seed, other.scale)

    def __hash__(self) -> int:
        return hash((self.seed, self.scale))

    def _to_own(self, x: np.ndarray, y: np.ndarray, crs: object) -> tuple[np.ndarray, np.ndarray]:
        key = _crs_key(crs)
        if key == LANDSCAPE_CRS:
            return x, y
        return _transformer(key).transform(x, y)

    def evaluate(self, x: np.ndarray | float, y: np.ndarray | float, crs: object) -> np.ndarray:
        """All channels plus the water membership: (9, *shape) float32 — the 7 optical
        reflectances of ``CHANNELS``, brightness temperature (K), water fraction 0..1."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
        shape = x.shape
        xs, ys = self._to_own(x.ravel(), y.ravel(), crs)
        xs = np.ascontiguousarray(xs, dtype=np.float64)
        ys = np.ascontiguousarray(ys, dtype=np.float64)
        out = np.empty((9, xs.size), dtype=np.float32)
        for lo in range(0, xs.size, _CHUNK):
            px, py = xs[lo:lo + _CHUNK], ys[lo:lo + _CHUNK]
            cx, sx = x_tables(self._waves, px)
            cy, sy = y_tables(self._waves, py)
            out[:, lo:lo + _CHUNK] = _point_kernel(px, py, cx, sx, cy, sy, self._amp, SPECTRA, self._geo,
                                                   self._salt)[:, 0]
        return out.reshape((9, *shape))

    def evaluate_grid(self, xs: np.ndarray, ys: np.ndarray, crs: object) -> np.ndarray:
        """Channels on the grid ``xs`` (columns) × ``ys`` (rows): (9, len(ys), len(xs)).

        Same values as ``evaluate`` on the meshgrid (bit for bit), much faster when ``crs`` is
        the landscape's own; in any other CRS the grid is transformed point by point."""
        xs = np.asarray(xs, dtype=np.float64).ravel()
        ys = np.asarray(ys, dtype=np.float64).ravel()
        if _crs_key(crs) != LANDSCAPE_CRS:
            gx, gy = np.meshgrid(xs, ys)
            return self.evaluate(gx, gy, crs)
        cx, sx = x_tables(self._waves, xs)
        cy, sy = y_tables(self._waves, ys)
        return _grid_kernel(xs, ys, cx, sx, cy, sy, self._amp, SPECTRA, self._geo, self._salt)

    def reflectance_grid(self, xs: np.ndarray, ys: np.ndarray, crs: object, bands: Sequence[str]) -> np.ndarray:
        """``reflectance`` on the grid ``xs`` × ``ys``: (len(bands), len(ys), len(xs))."""
        return self.evaluate_grid(xs, ys, crs)[self.channel_index(bands)]

    @staticmethod
    def channel_index(bands: Sequence[str]) -> list[int]:
        """Positions of common band names in ``CHANNELS`` (``lwir`` = ``lwir11``)."""
        if isinstance(bands, str):
            raise TypeError("bands must be a list of common names, not a single string")
        idx = []
        for b in bands:
            name = _ALIASES.get(b, b)
            if name not in CHANNELS:
                raise ValueError(f"unknown band {b!r}; accepted: {', '.join(CHANNELS)} (and 'lwir')")
            idx.append(CHANNELS.index(name))
        return idx

    def reflectance(self, x: np.ndarray | float, y: np.ndarray | float, crs: object,
                    bands: Sequence[str]) -> np.ndarray:
        """TOA reflectance of ``bands`` (common names) at points ``(x, y)`` given in ``crs``:
        float32 (len(bands), *x.shape). ``lwir11``/``lwir`` gives brightness temperature (K)."""
        idx = self.channel_index(bands)
        return self.evaluate(x, y, crs)[idx]

    def water(self, x: np.ndarray | float, y: np.ndarray | float, crs: object) -> np.ndarray:
        """True where the ground is (mostly) water."""
        return self.evaluate(x, y, crs)[8] >= 0.5
