"""The compiled kernels of `cube.fuse`, in a module of their own: importing numba and loading
its cached machine code costs ~0.7 s of CPU, which an import-only chain on small areas (its
quality count runs in numpy there) never has to pay."""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, inline="always")
def _first_row(v_row, k, d, f, o, nd, nan):
    for x in range(v_row.shape[0]):
        v = v_row[x]
        r = np.float32(v * f + o)  # computed for every pixel, then selected: the loop vectorizes
        d[x] = r if (k[x] and v != nd) else nan  # (computed inside the branch: 8× slower)


@njit(nogil=True, cache=True, inline="always")
def _later_row(v_row, k, d, f, o, nd):
    for x in range(v_row.shape[0]):
        v = v_row[x]
        if k[x] and v != nd and math.isnan(d[x]):
            d[x] = np.float32(v * f + o)


@njit(nogil=True, cache=True)
def _fuse(stack, nb, group_of, factors, offsets, tables, table_of, nodata, ngroups, out):
    n, _, ny, nx = stack.shape
    seen = np.zeros(ngroups, dtype=np.bool_)
    ok = np.empty((ny, nx), dtype=np.bool_)
    nan = np.float32(np.nan)
    # inner loops run over row views (1-D, unit stride): indexed as stack[i, b, y, x] the same
    # loops do not vectorize (55 vs 7 ms for 8 × 6 × 512² here)
    for i in range(n):
        g = group_of[i]
        table = tables[table_of[g]]
        qa = stack[i, nb]
        for y in range(ny):
            q, k = qa[y], ok[y]
            for x in range(nx):
                k[x] = table[q[x]]
        first = not seen[g]
        seen[g] = True
        for b in range(nb):
            f = factors[g, b]
            o = offsets[g, b]
            nd = nodata[b]
            src, dst = stack[i, b], out[g, b]
            if first:  # the group's first tile writes every pixel: no branch on what is there
                for y in range(ny):
                    _first_row(src[y], ok[y], dst[y], f, o, nd, nan)
            else:  # a later tile of the same day fills only what the earlier ones left empty
                for y in range(ny):
                    _later_row(src[y], ok[y], dst[y], f, o, nd)
    for g in range(ngroups):
        if not seen[g]:
            out[g] = nan
    return out


@njit(nogil=True, cache=True)
def _count_present_clear(qa, present_t, clear_t, keep):
    n, ny, nx = qa.shape
    present = 0
    clear = 0
    for y in range(ny):  # branch-free: random cloud patterns would mispredict every branch
        k_row = keep[y]
        for x in range(nx):
            p = np.uint8(0)
            c = np.uint8(0)
            for t in range(n):
                q = qa[t, y, x]
                p |= present_t[q]
                c |= clear_t[q]
            k = k_row[x]
            present += p & k
            clear += c & k
    return present, clear
