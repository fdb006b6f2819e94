"""Kernel benchmark: the bestof/median kernel vs ``numpy.nanmedian`` on the same data.

Single thread, one (8, 6, 1024, 1024) float32 stack with ~30 % NaN (per band-pixel
gaps plus whole-acquisition "clouds").  Also times the other reducers and checks the
median is exactly ``numpy.nanmedian``.  Writes ``benchmarks/results/kernels.json``
and prints a table.  Run: ``.venv/bin/python benchmarks/bench_kernels.py [--size 1024]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from imalys_stac.composite import kernels as K  # noqa: E402


def make_stack(t: int, b: int, n: int, nan_frac: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    stack = rng.normal(0.2, 0.08, size=(t, b, n, n)).astype(np.float32)
    stack[rng.random((t, 1, n, n)).repeat(b, axis=1) < nan_frac * 0.8] = np.nan  # clouds: all bands
    stack[rng.random(stack.shape) < nan_frac * 0.2 / (1 - nan_frac * 0.8)] = np.nan  # band-only gaps
    return stack


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--times", type=int, default=8)
    ap.add_argument("--bands", type=int, default=6)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--nan", type=float, default=0.3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kernels.json")
    args = ap.parse_args()

    stack = make_stack(args.times, args.bands, args.size, args.nan)
    quality = np.linspace(1.0, 0.4, args.times)
    small = np.ascontiguousarray(stack[:, :, :4, :4])
    # Compile (or load from the on-disk cache) before timing.
    K.median_block(small, quality, 0.5, True, True)
    for which in (K.STAT_MEAN, K.STAT_VARIANCE):
        K.stats_block(small, which)
    K.medoid_block(small)
    K.index_block(small, K.INDEX_NDVI, False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels
        t0 = time.perf_counter()
        ref = np.nanmedian(stack, axis=0)
        t_np = time.perf_counter() - t0
        t_np = min(t_np, best_of(lambda: np.nanmedian(stack, axis=0), max(1, args.repeat // 3)))

    med, _ = K.median_block(stack, quality, 0.5, False, False)
    exact = bool(np.array_equal(med, ref, equal_nan=True))
    rows = {
        "median": best_of(lambda: K.median_block(stack, quality, 0.5, False, False), args.repeat),
        "bestof": best_of(lambda: K.median_block(stack, quality, 0.5, True, False), args.repeat),
        "bestof+source": best_of(lambda: K.median_block(stack, quality, 0.5, True, True), args.repeat),
        "mean": best_of(lambda: K.stats_block(stack, K.STAT_MEAN), args.repeat),
        "variance": best_of(lambda: K.stats_block(stack, K.STAT_VARIANCE), args.repeat),
        "medoid": best_of(lambda: K.medoid_block(stack), max(1, args.repeat // 2)),
        "ndvi": best_of(lambda: K.index_block(np.ascontiguousarray(stack[:, 2:4]), K.INDEX_NDVI, False),
                        args.repeat),
    }
    result = {
        "shape": list(stack.shape),
        "nan_fraction": float(np.isnan(stack).mean()),
        "threads": 1,
        "machine": platform.processor() or platform.machine(),
        "numpy_nanmedian_s": t_np,
        "median_exact_vs_nanmedian": exact,
        "kernels_s": rows,
        "speedup_vs_nanmedian": {k: t_np / v for k, v in rows.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"stack {tuple(stack.shape)} float32, {result['nan_fraction']:.1%} NaN, single thread")
    print(f"{'kernel':<16}{'seconds':>10}{'× nanmedian':>14}")
    print(f"{'numpy.nanmedian':<16}{t_np:>10.4f}{1.0:>14.1f}")
    for k, v in rows.items():
        print(f"{k:<16}{v:>10.4f}{t_np / v:>14.1f}")
    print(f"median exactly equal to numpy.nanmedian: {exact}")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
