"""Memory of a Dask worker reading tiles stays within what its `memory` allows, whatever the area:
the tile cache's budget follows the worker's limit, GDAL's block cache is made small there, and
the heap is trimmed periodically (see cube/tiles.py and benchmarks/bench_area.py for the
measurements)."""
from __future__ import annotations

import time

import pytest

from imalys_stac.cube import tiles


@pytest.fixture
def fresh(monkeypatch):
    """Per-process worker state as in a new process; GDAL's cache size call recorded, not made."""
    monkeypatch.setattr(tiles, "_LIMIT", [])
    monkeypatch.setattr(tiles, "_TRIMMED", [0.0])
    calls: list[int] = []
    monkeypatch.setattr(tiles, "_small_gdal_cache", calls.append)
    monkeypatch.delenv("IMALYS_TILE_CACHE_MB", raising=False)
    return calls


def test_outside_a_worker_the_budget_is_the_default(fresh):
    assert tiles._CACHE.budget == 768 * 2**20
    assert tiles._LIMIT == [] and fresh == []


def test_the_environment_wins(fresh, monkeypatch):
    monkeypatch.setenv("IMALYS_TILE_CACHE_MB", "40")
    assert tiles._CACHE.budget == 40 * 2**20


@pytest.mark.system  # a Dask cluster
@pytest.mark.timeout(180)  # hung once in a full run (client.submit never answered): a failure, not a stuck suite
def test_on_a_worker_the_budget_follows_its_memory_limit(fresh):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, memory_limit="512MB",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        budget = client.submit(lambda: tiles._CACHE.budget, pure=False).result()
        assert budget == 512_000_000 // 16
        assert fresh == [512_000_000 // 32]  # GDAL's block cache made small on that worker
        # the heap is trimmed on the worker's event loop, also when no task runs
        before = tiles._TRIMMED[0]
        deadline = time.monotonic() + 10
        while tiles._TRIMMED[0] == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert tiles._TRIMMED[0] > before
        name = next(iter(cluster.workers.values())).periodic_callbacks
        assert "imalys-trim-heap" in name
