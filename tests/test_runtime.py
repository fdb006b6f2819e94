"""Where Dask runs: the same chain in-process and on a real dask.distributed scheduler given by
address (as on a cluster) gives identical results; the environment can choose the scheduler."""
from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import rasterio

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.runtime.cluster import ClusterSpec
from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive


def _chain(tmp, root, name, scheduler_line=""):
    chain = tmp / f"{name}.txt"
    chain.write_text(f"""IMALYS [{name}]
home
	directory = {tmp}/wd_{name}
	clear = true
{scheduler_line}import
	select = {root}/*.tar
	bands = red, nir08
	factor = auto
compile
	search = LC08*
reduce
	select = compile
	execute = bestof
	preserve = bands
export
	select = bestof
	target = {tmp}/{name}.tif
""")
    return chain


def test_distributed_scheduler_by_address_gives_the_same_result(tmp_path):
    distributed = pytest.importorskip("distributed")
    root = tmp_path / "archives"
    land = Landscape(seed=9)
    for i, d in enumerate([date(2022, 6, 16), date(2022, 7, 2), date(2022, 7, 18)]):
        write_landsat_archive(root, SceneSpec(path=193, row=26, acquired=d, size=96, cloud_cover=0.2, seed=40 + i), landscape=land)
    run_chain(load_chain(_chain(tmp_path, root, "local")))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        run_chain(load_chain(_chain(tmp_path, root, "remote", f"\tscheduler = {cluster.scheduler_address}\n")))
        # the workers really did the work
        with distributed.Client(cluster.scheduler_address) as client:
            assert sum(client.run(lambda dask_worker: len(dask_worker.data) + dask_worker.state.executed_count).values()) > 0
    with rasterio.open(tmp_path / "local.tif") as a, rasterio.open(tmp_path / "remote.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert np.isfinite(a.read()).mean() > 0.5


def test_environment_overrides_home(monkeypatch):
    monkeypatch.setenv("IMALYS_SCHEDULER", "tcp://10.0.0.1:8786")
    monkeypatch.setenv("IMALYS_WORKERS", "4")
    spec = ClusterSpec.resolve(None, 2, "1GB")
    assert (spec.scheduler, spec.workers, spec.memory, spec.kind) == ("tcp://10.0.0.1:8786", 4, "1GB", "address")
    monkeypatch.delenv("IMALYS_SCHEDULER")
    assert ClusterSpec.resolve("processes", None, None).kind == "processes"
    assert ClusterSpec.resolve(None, None, None).kind == "threads"
