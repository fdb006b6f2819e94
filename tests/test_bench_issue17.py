"""The issue 17 benchmark's framed case end to end on tiny archives (no timing is judged): the
chain (float32 and int16), the stackstac and odc-stac notebooks, the decode floor and the COG
writers all run, and both notebooks compute the chain's pixels bit for bit."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.system  # every variant is a process of its own


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    import benchmarks.datasets as ds
    from benchmarks import bench_issue17

    work = tmp_path_factory.mktemp("bench17")
    old, ds.WORK = ds.WORK, work
    try:
        bench_issue17.QUICK.aset.prepare(log=lambda m: None)
        yield bench_issue17.run_case(bench_issue17.QUICK, work)
    finally:
        ds.WORK = old


def test_every_variant_runs(frame):
    for key in ("chain", "chain int16", "stackstac", "odc-stac", "decode floor", "writes"):
        assert frame[key]["ok"], (key, frame[key].get("output"))


def test_notebooks_compute_the_chains_pixels(frame):
    for key in ("stackstac", "odc-stac"):
        px = frame[key]["pixels"]
        assert px["identical"] and px["valid_share"] > 0.3, (key, px)


def test_int16_is_smaller_than_float32(frame):
    w = frame["writes"]
    assert w["write_cog int16"]["mib"] <= w["write_cog float32"]["mib"]
    assert w["gdal int16"]["mib"] <= w["gdal float32"]["mib"]


def test_full_footprint_case_runs(tmp_path):
    """`bench_issue17 full` on a tiny whole scene (no frame): the chain runs and writes the whole footprint."""
    import dataclasses

    import benchmarks.datasets as ds
    from benchmarks import bench_issue17

    case = dataclasses.replace(bench_issue17.FULL, aset=ds.ArchiveSet(600, 256, False, 2), dates=1)
    old, ds.WORK = ds.WORK, tmp_path
    try:
        res = bench_issue17.run_full(case, tmp_path)
    finally:
        ds.WORK = old
    assert res["chain"]["ok"], res["chain"].get("output")
    assert res["chain"]["grid"] == [600, 600]
    assert len(list((tmp_path / ds.ArchiveSet(600, 256, False, 2).name).glob("*.tar"))) == 1  # only the dates asked
