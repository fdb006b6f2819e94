"""Smooth random fields as sums of random-phase plane waves, evaluated point by point.

A field is a table of waves ``(kx, ky, phase, amplitude)``; its value at ``(x, y)`` is
``sum(a * cos(kx*x + ky*y + phase))``. Being a closed-form function of the coordinates it can be
evaluated anywhere, in any order, by any scene, and gives the same number for the same point —
which is what makes overlapping synthetic scenes agree. Amplitudes are normalised so that the
field has unit variance (each wave contributes ``a**2 / 2``).

Speed: the cosine is split as ``cos(kx x)·cos(ky y + φ) − sin(kx x)·sin(ky y + φ)``. The four
factors are computed with numpy's vectorised sin/cos (per column and per row on a grid, per
point otherwise) and the sum runs in numba. Grid and point evaluation do the same operations
on the same numbers in the same order, so they agree bit for bit.
"""
from __future__ import annotations

import numba
import numpy as np


def wave_table(
    rng: np.random.Generator, n: int, wl_min: float, wl_max: float, beta: float = 1.0
) -> np.ndarray:
    """``n`` waves with wavelengths log-uniform in [wl_min, wl_max] (same units as the
    coordinates), random directions and phases, amplitude ∝ wavelength**beta, unit variance.

    Returns a float64 array (n, 4): kx, ky, phase, amplitude.
    """
    if n < 1 or not (0 < wl_min <= wl_max):
        raise ValueError(f"wave_table needs n >= 1 and 0 < wl_min <= wl_max, got {n}, {wl_min}, {wl_max}")
    wl = np.exp(rng.uniform(np.log(wl_min), np.log(wl_max), n))
    theta = rng.uniform(0.0, np.pi, n)
    k = 2.0 * np.pi / wl
    phase = rng.uniform(0.0, 2.0 * np.pi, n)
    amp = wl**beta
    amp *= np.sqrt(2.0 / np.sum(amp**2))  # variance sum(a^2/2) = 1
    return np.stack([k * np.cos(theta), k * np.sin(theta), phase, amp], axis=1)


def x_tables(waves: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of ``kx·x`` for wave tables (..., W, 4) and coordinates (n,): (n, ..., W),
    point-major so that a kernel reads one point's waves contiguously."""
    arg = np.multiply.outer(x, waves[..., 0])
    return np.cos(arg), np.sin(arg)


def y_tables(waves: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of ``ky·y + φ``: (n, ..., W)."""
    arg = np.multiply.outer(y, waves[..., 1]) + waves[..., 2]
    return np.cos(arg), np.sin(arg)


#: columns per tile in grid kernels: keeps a tile's trig tables in cache while rows stream
TILE = 64


@numba.njit(cache=True, parallel=True)
def _grid_sum(cx: np.ndarray, sx: np.ndarray, cy: np.ndarray, sy: np.ndarray, amp: np.ndarray) -> np.ndarray:
    nx, nw = cx.shape
    ny = cy.shape[0]
    out = np.empty((ny, nx), dtype=np.float32)
    for t in numba.prange((nx + TILE - 1) // TILE):
        for i in range(ny):
            for j in range(t * TILE, min(nx, (t + 1) * TILE)):
                v = 0.0
                for k in range(nw):
                    v += amp[k] * (cx[j, k] * cy[i, k] - sx[j, k] * sy[i, k])
                out[i, j] = v
    return out


def grid_field(shape: tuple[int, int], waves: np.ndarray, origin: tuple[float, float] = (0.0, 0.0),
               step: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """One field on a regular grid: row i, column j is taken at
    ``(origin[0] + j*step[0], origin[1] + i*step[1])``. float32 (rows, cols)."""
    ny, nx = shape
    xs = origin[0] + np.arange(nx) * step[0]
    ys = origin[1] + np.arange(ny) * step[1]
    cx, sx = x_tables(waves, xs)
    cy, sy = y_tables(waves, ys)
    return _grid_sum(cx, sx, cy, sy, np.ascontiguousarray(waves[:, 3]))
