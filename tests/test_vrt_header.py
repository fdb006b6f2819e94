"""band_vrt reads a raster's header once for all its bands, and again when the file changes."""
from __future__ import annotations

import numpy as np
import rasterio
from rasterio.transform import from_origin

from imalys_stac.cube.vrt import band_vrt


def _write(path, dtype: str, names: list[str], nodata, seed: int) -> np.ndarray:
    data = (np.random.default_rng(seed).random((len(names), 20, 30)) * 100).astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", width=30, height=20, count=len(names), dtype=dtype,
                       crs="EPSG:32632", transform=from_origin(500_000, 5_800_000, 30, 30), nodata=nodata) as ds:
        ds.write(data)
        for i, name in enumerate(names, 1):
            ds.set_band_description(i, name)
    return data


def test_each_band_vrt_reads_its_band_and_a_rewritten_file_is_read_again(tmp_path):
    tif = tmp_path / "x.tif"
    for seed, (dtype, names, nodata) in enumerate([("float32", ["red", "nir08"], np.nan),
                                                    ("int16", ["blue", "green", "swir16"], -9999)]):
        data = _write(tif, dtype, names, nodata, seed)
        for i, name in enumerate(names, 1):
            vrt = tmp_path / f"x.{i}.vrt"
            vrt.write_text(band_vrt(tif, i, relative_to=tmp_path))
            with rasterio.open(vrt) as ds:  # GDAL reads the VRT: the band, its name, type and nodata
                assert ds.count == 1 and ds.descriptions == (name,) and ds.dtypes == (dtype,)
                np.testing.assert_array_equal(ds.read(1), data[i - 1])
                assert (np.isnan(ds.nodata) if np.isnan(nodata) else ds.nodata == nodata)
