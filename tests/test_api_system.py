"""The API across a process boundary and on the caller's Dask client: `import imalys_stac` stays
cheap, and a chain run through the API computes on the active `distributed` client (or the one
given) instead of starting its own scheduler."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio

import imalys_stac as ims

from .conftest import bestof_chain

pytestmark = pytest.mark.system


def test_import_imalys_stac_is_cheap():
    code = ("import sys, json, imalys_stac; "
            "print(json.dumps({'heavy': sorted(m for m in ('dask', 'distributed', 'rasterio', 'numba', 'xarray', "
            "'pystac', 'geopandas', 'pyproj') if m in sys.modules), 'api': 'run_chain' in dir(imalys_stac)}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert json.loads(out.stdout) == {"heavy": [], "api": True}


def test_run_chain_uses_the_active_client_and_the_one_given(synthetic_archives, tmp_path):
    distributed = pytest.importorskip("distributed")
    reference = ims.run_chain(bestof_chain(tmp_path, synthetic_archives.folder, "threads"))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        active = ims.run_chain(bestof_chain(tmp_path, synthetic_archives.folder, "active"))
        assert "dask: the caller's client" in active.log.read_text()
        tasks = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.transition_log))
        assert tasks > 0  # the work went through this scheduler
        assert client.status == "running"  # and the client is still the caller's, open
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        given = ims.run_chain(bestof_chain(tmp_path, synthetic_archives.folder, "given"), scheduler=client)
        assert "dask: the caller's client" in given.log.read_text()
    for result in (active, given):
        with rasterio.open(next(iter(result.exports))) as a, rasterio.open(next(iter(reference.exports))) as b:
            np.testing.assert_array_equal(a.read(), b.read())


def test_example_composite_on_a_stac_api(synthetic_archives, tmp_path):
    """examples/composite.py against a real STAC API (rustac serve over the catalog's items)."""
    from .stac_api import serve_collection
    from .test_docs import run_example_and_compare

    ims.catalog(synthetic_archives.folder, tmp_path / "cat")
    with serve_collection(tmp_path / "cat" / "landsat-c2-l2") as url:
        out = run_example_and_compare(url, synthetic_archives, tmp_path)
    assert [it.id for it in out["items"]] == sorted(p.name.removesuffix(".tar") for p in synthetic_archives.archives)
    assert out["plot"].stat().st_size > 0
