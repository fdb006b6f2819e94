"""Sentinel-2 L2A zips through the chain: read in place (/vsizip/), masked with the SCL classes,
calibrated with the baseline's scale and offset, checked against plain rasterio + numpy."""
from __future__ import annotations

from datetime import date

import numpy as np
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor these tests use)

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.products import cube_of
from imalys_stac.synth import Landscape
from imalys_stac.synth.sentinel2 import write_sentinel2_archive
from imalys_stac.workdir import WorkDir

DISTURBED = {1, 3, 8, 9, 10}


def test_sentinel2_import_masks_with_scl_and_calibrates(tmp_path):
    scene = write_sentinel2_archive(tmp_path / "archives", tile="32UPU", acquired=date(2022, 6, 15), size=96,
                                    cloud_cover=0.25, seed=3, landscape=Landscape(seed=1))
    chain = tmp_path / "s2.txt"
    chain.write_text(f"""IMALYS [sentinel-2]
home
	directory = {tmp_path}/wd
	clear = true
import
	select = {scene.path}
	bands = blue, red, nir
	factor = auto
""")
    run_chain(load_chain(chain))
    wd = WorkDir(tmp_path / "wd")
    (name,) = wd.names()
    assert name == "S2A_32UPU_20220615"
    item = wd.load(name)
    cube = cube_of(wd, item).isel(time=0)
    assert cube.rio.crs == scene.crs and float(cube.x[1] - cube.x[0]) == 10.0
    # independent reference: read B04 (10 m) and SCL (20 m) from the zip, upsample SCL by 2
    import zipfile

    names = zipfile.ZipFile(scene.path).namelist()
    b04 = next(n for n in names if n.endswith("_B04_10m.jp2") or n.endswith("_B04_10m.tif"))
    scl = next(n for n in names if n.endswith("_SCL_20m.jp2") or n.endswith("_SCL_20m.tif"))
    with rasterio.open(f"/vsizip/{scene.path}/{b04}") as ds:
        dn = ds.read(1).astype(np.float64)
    with rasterio.open(f"/vsizip/{scene.path}/{scl}") as ds:
        classes = np.repeat(np.repeat(ds.read(1), 2, axis=0), 2, axis=1)[: dn.shape[0], : dn.shape[1]]
    usable = (classes != 0) & ~np.isin(classes, list(DISTURBED)) & (dn != 0)
    got = cube.sel(band="red").values
    assert usable.any() and (~usable).any()
    np.testing.assert_array_equal(np.isfinite(got), usable)
    np.testing.assert_allclose(got[usable], dn[usable] * 1e-4 - 0.1, rtol=1e-6, atol=1e-7)
    quality = item.properties["imalys:quality"]
    nonfill = classes != 0
    expected_q = ((classes != 0) & ~np.isin(classes, list(DISTURBED))).sum() / nonfill.sum()
    assert abs(quality - expected_q) < 1e-6
