"""The import's quality count in this process (`cube.counts.count_quality`, no Dask) counts the
pixels the scene truth says — and exactly what the Dask pass over the cube reader counts, also on
a warped grid, with a frame polygon and for an acquisition of several tiles (any tile decides)."""
from __future__ import annotations

import dataclasses

import dask
import numpy as np
import pytest

from imalys_stac.cube import counts, plan
from imalys_stac.cube.grid import Grid
from imalys_stac.cube.plan import Recipe, coverage_graph, coverages, measure_coverages, plan_acquisitions
from imalys_stac.stac import item_from_archive


def _flags_clear(code: int) -> bool:
    """USGS QA_PIXEL by the book: not fill (bit 0), none of dilated cloud, cirrus, cloud, shadow (bits 1-4)."""
    return not (code & 1) and not any((code >> b) & 1 for b in (1, 2, 3, 4))


@pytest.fixture(scope="module")
def items(synthetic_archives):
    return [item_from_archive(a) for a in synthetic_archives.archives]


def _by_dask(acquisitions, rule="flags", chunksize=None):
    return coverages(dask.compute(*coverage_graph(acquisitions, rule, chunksize)))


def test_in_process_count_matches_the_scene_truth(items, synthetic_archives, monkeypatch):
    monkeypatch.setattr(plan, "THREADED_FROM", 2)  # three acquisitions: counted on threads
    acquisitions = plan_acquisitions(items, Recipe(bands=("_B4",)), frame=None)
    assert counts.fits_in_process([a.group for a in acquisitions], [a.grid for a in acquisitions])
    got = measure_coverages(acquisitions, "flags")
    for cov, scene in zip(got, synthetic_archives.scenes):
        qa = scene.truth["qa"]
        present = sum(1 for v in qa.ravel() if not (int(v) & 1))
        clear = sum(1 for v in qa.ravel() if _flags_clear(int(v)))
        assert (cov.present, cov.clear, cov.total) == (present, clear, qa.size)


def _grown(a, grid: Grid):
    return dataclasses.replace(a, grid=grid)


@pytest.mark.parametrize("case", ["beyond the scene", "warped", "frame polygon", "small chunks"])
def test_in_process_count_equals_the_dask_pass(items, case):
    acquisitions = plan_acquisitions(items, Recipe(bands=("_B4",)), frame=None)
    chunksize = None
    if case == "beyond the scene":  # a frame larger than the tile: fill around it
        acquisitions = [_grown(a, Grid.aligned(a.grid.epsg, np.add(a.grid.bounds, (-300, -450, 600, 90)),
                                                30.0, a.grid.anchor)) for a in acquisitions]
    elif case == "warped":  # another CRS and pixel: GDAL warps the quality band (nearest) chunk by chunk
        acquisitions = plan_acquisitions(items, Recipe(bands=("_B4",), warp=32633, pixel=45.0), frame=None)
        chunksize = 16
    elif case == "frame polygon":
        left, bottom, right, top = acquisitions[0].grid.bounds
        wkt = (f"POLYGON (({left + 100} {bottom + 50}, {right - 10} {bottom + 400}, {left + 900} {top - 30}, "
               f"{left + 100} {bottom + 50}))")
        acquisitions = [dataclasses.replace(a, group=dataclasses.replace(a.group, region_wkt=wkt,
                                                                         region_epsg=a.grid.epsg))
                        for a in acquisitions]
    else:
        chunksize = 24
    want = _by_dask(acquisitions, chunksize=chunksize)
    got = measure_coverages(acquisitions, "flags", chunksize)
    assert got == want
    if case == "frame polygon":
        assert all(0 < c.total < 64 * 64 for c in got)


def test_several_tiles_any_tile_decides(items, synthetic_archives):
    """One acquisition of three tiles on one grid: a pixel is present (clear) where any tile is."""
    a = plan_acquisitions(items, Recipe(bands=("_B4",)), frame=None)[0]
    group = dataclasses.replace(a.group, items=list(items))
    merged = dataclasses.replace(a, group=group)
    (got,) = measure_coverages([merged], "flags")
    qa = np.stack([s.truth["qa"] for s in synthetic_archives.scenes])
    present = clear = 0
    for y in range(qa.shape[1]):
        for x in range(qa.shape[2]):
            present += any(not (int(v) & 1) for v in qa[:, y, x])
            clear += any(_flags_clear(int(v)) for v in qa[:, y, x])
    assert (got.present, got.clear) == (present, clear)
    assert [got] == _by_dask([merged])


def test_large_frames_and_clusters_count_with_dask(items, monkeypatch):
    """Above the in-process budget, or when a distributed cluster computes, the Dask pass runs."""
    calls = []
    monkeypatch.setattr(plan, "count_quality", lambda *a, **k: calls.append(a) or (0, 0))
    acquisitions = plan_acquisitions(items, Recipe(bands=("_B4",)), frame=None)
    want = _by_dask(acquisitions)
    assert measure_coverages(acquisitions, "flags", in_process=False) == want
    monkeypatch.setattr(counts, "IN_PROCESS_CODES", 64 * 64)  # three 64² tiles exceed it
    assert measure_coverages(acquisitions, "flags") == want
    assert calls == []
    huge = [_grown(a, Grid.aligned(a.grid.epsg, (a.grid.bounds[0], a.grid.bounds[1], a.grid.bounds[0] + 30 * 1100,
                                                  a.grid.bounds[1] + 30 * 1100), 30.0, a.grid.anchor))
            for a in acquisitions[:1]]
    assert not counts.fits_in_process([a.group for a in huge], [a.grid for a in huge])  # blocks for numba
