"""Scale: a stack larger than the memory given to the Dask workers reduces without running out of
memory (a real local process cluster with a per-worker memory limit). Slow: `-m "not slow"` skips it."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
import rasterio

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

pytestmark = pytest.mark.slow

SIZE = 2048
DATES = 8
WORKER_MEMORY = "700MB"


def chain_text(root, wd, target, home_extra=""):
    return f"""IMALYS [scale test]
home
	directory = {wd}
	clear = true
{home_extra}import
	select = {root}/*.tar
	bands = _B2, _B3, _B4, _B5, _B6, _B7
	factor = 2.75e-5
	offset = -0.2
compile
	search = LC08*
reduce
	select = compile
	execute = bestof
	preserve = bands
export
	select = bestof
	target = {target}
"""


def test_stack_larger_than_worker_memory(tmp_path):
    root = tmp_path / "archives"
    land = Landscape(seed=11)
    for i in range(DATES):
        write_landsat_archive(root, SceneSpec(path=193, row=26, acquired=date(2022, 5, 15) + timedelta(days=16 * i),
                                              size=SIZE, cloud_cover=0.25, seed=100 + i), landscape=land, truth=False)
    stack_bytes = DATES * 6 * SIZE * SIZE * 4
    limit = 700e6
    assert stack_bytes > limit, "the stack must not fit in one worker"
    chain = tmp_path / "limited.txt"
    chain.write_text(chain_text(root, tmp_path / "wd1", tmp_path / "limited.tif",
                                f"\tscheduler = processes\n\tworkers = 1\n\tmemory = {WORKER_MEMORY}\n"))
    run_chain(load_chain(chain))
    # the same chain in-process (no memory limit) as the reference
    ref = tmp_path / "threads.txt"
    ref.write_text(chain_text(root, tmp_path / "wd2", tmp_path / "threads.tif"))
    run_chain(load_chain(ref))
    with rasterio.open(tmp_path / "limited.tif") as a, rasterio.open(tmp_path / "threads.tif") as b:
        assert a.count == 6 and a.shape == (SIZE, SIZE)
        # compare a strip per band (reading both fully would be 2 × 100 MB: fine, but keep it light)
        win = rasterio.windows.Window(0, SIZE // 2 - 64, SIZE, 128)
        np.testing.assert_array_equal(a.read(window=win), b.read(window=win))
        assert np.isfinite(a.read(1, window=win)).mean() > 0.5
