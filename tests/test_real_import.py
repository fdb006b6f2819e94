"""The real USGS Landsat 8 C2 L2 scene (tests/data/real) imports with its real QA bits."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.products import cube_of
from imalys_stac.workdir import WorkDir
from tests.realdata import tar_real_scene

PID = "LC08_L2SP_008059_20191201_20200825_02_T1"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    tar = tar_real_scene(tmp / "archives")
    chain = tmp / "chain.txt"
    chain.write_text(f"""IMALYS real scene
home
	directory = {tmp}/wd
	clear = true
	log = {tmp}/log
catalog
	archives = {tmp}/archives/*_L2SP_*.tar
	target = {tmp}/archives/bonds.csv
import
	database = {tmp}/archives/bonds.csv
	period = 20191101-20191231
	bands = _B2, _B3, _B4, _B5, _B6, _B7
	factor = auto
""")
    run_chain(load_chain(chain))
    return tmp, tar


def _member(tar, suffix):
    return f"/vsitar/{tar}/{PID}_{suffix}.TIF"


def test_real_quality_matches_the_qa_band(real_run):
    tmp, tar = real_run
    item = json.loads((tmp / "wd" / "LC08_008059_20191201" / "LC08_008059_20191201.json").read_text())
    with rasterio.open(_member(tar, "QA_PIXEL")) as ds:
        qa = ds.read(1)
    fill = (qa & 1) != 0
    disturbed = (qa & 0b11110) != 0
    expected = (~fill & ~disturbed).sum() / (~fill).sum()
    assert item["properties"]["imalys:quality"] == pytest.approx(expected, abs=1e-6)
    # the scene is ~81 % cloud (MTL CLOUD_COVER 81.02): quality must show it
    assert item["properties"]["imalys:quality"] < 0.25


def test_real_mask_and_calibration(real_run):
    tmp, tar = real_run
    wd = WorkDir(tmp / "wd")
    cube = cube_of(wd, wd.load("LC08_008059_20191201"))
    got = cube.isel(time=0).sel(band="red").values
    with rasterio.open(_member(tar, "QA_PIXEL")) as ds:
        qa = ds.read(1)
    with rasterio.open(_member(tar, "SR_B4")) as ds:
        dn = ds.read(1).astype(np.float64)
        x0, y0 = ds.xy(0, 0)
    bad = ((qa & 1) != 0) | ((qa & 0b11110) != 0) | (dn == 0)
    assert 0.8 < bad.mean() < 0.99
    np.testing.assert_array_equal(np.isnan(got), bad)
    # factor = auto: scale and offset from the MTL via raster:bands (2.75e-5, -0.2)
    np.testing.assert_allclose(got[~bad], dn[~bad] * 2.75e-5 - 0.2, rtol=1e-6)
    assert cube.x.values[0] == pytest.approx(x0) and cube.y.values[0] == pytest.approx(y0)
    # the real shadow code 23888 carries the clear bit 6 and must still be masked
    assert np.isnan(got[qa == 23888]).all() and (qa == 23888).any()
