"""write.cogcheck gives rio-cogeo's structural COG verdict (the reference: rio_cogeo.cogeo.cog_validate)
on valid COGs and on files that break each rule it checks."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate as reference

from imalys_stac.write.cogcheck import cog_validate


def _profile(n: int, **kw) -> dict:
    return dict(driver="GTiff", width=n, height=n + 7, count=2, dtype="float32", crs="EPSG:32632",
                transform=from_origin(500_000, 5_800_000, 30, 30), nodata=np.nan, **kw)


def _data(n: int) -> np.ndarray:
    a = np.random.default_rng(n).random((2, n + 7, n), dtype=np.float32)
    a[:, :40, :40] = np.nan
    return a


def _cog(path, n: int, **kw) -> str:
    src = path.with_suffix(".src.tif")
    with rasterio.open(src, "w", **_profile(n, tiled=True, blockxsize=256, blockysize=256)) as ds:
        ds.write(_data(n))
    rasterio.shutil.copy(src, path, driver="COG", blocksize=256, compress="deflate", **kw)
    return str(path)


def _plain(path, n: int, overviews: bool = False, external: bool = False, **kw) -> str:
    with rasterio.open(path, "w", **_profile(n, **kw)) as ds:
        ds.write(_data(n))
        if overviews and not external:
            ds.build_overviews([2, 4], Resampling.average)
    if external:
        with rasterio.Env(TIFF_USE_OVR=True), rasterio.open(path, "r+") as ds:  # into <path>.ovr
            ds.build_overviews([2, 4], Resampling.average)
    return str(path)


def _edited_cog(path, n: int) -> str:
    _cog(path, n)
    with rasterio.open(path, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:  # GDAL flags the broken layout
        ds.write(np.zeros((2, 300, 300), np.float32), window=((0, 300), (0, 300)))
    return str(path)


CASES = {
    "small COG": lambda p: _cog(p, 300),
    "COG with overviews": lambda p: _cog(p, 1200),
    "COG without overviews": lambda p: _cog(p, 1200, overviews="NONE"),
    "stripped, large": lambda p: _plain(p, 700),
    "tiled, overviews added after": lambda p: _plain(p, 1100, overviews=True, tiled=True, blockxsize=256,
                                                      blockysize=256),
    "external overviews": lambda p: _plain(p, 900, overviews=True, external=True, tiled=True, blockxsize=256,
                                           blockysize=256),
    "edited COG": lambda p: _edited_cog(p, 1200),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_verdict_and_messages_as_rio_cogeo(tmp_path, case):
    path = CASES[case](tmp_path / "x.tif")
    for strict in (False, True):
        assert cog_validate(path, strict=strict) == reference(path, strict=strict, quiet=True)


def test_not_a_geotiff(tmp_path):
    path = tmp_path / "x.png"
    with rasterio.open(path, "w", driver="PNG", width=8, height=8, count=1, dtype="uint8") as ds:
        ds.write(np.zeros((1, 8, 8), np.uint8))
    assert cog_validate(path) == reference(str(path), quiet=True) == (False, ["The file is not a GeoTIFF"], [])


def test_the_cases_cover_a_valid_file_each_error_kind_and_a_warning(tmp_path):
    """The comparison above is only as good as its cases: they must reach valid files, errors and warnings."""
    verdicts = [reference(CASES[c](tmp_path / f"{i}.tif"), quiet=True) for i, c in enumerate(CASES)]
    assert any(ok for ok, _, _ in verdicts)
    assert sum(bool(e) for _, e, _ in verdicts) >= 3
    assert any(w for _, _, w in verdicts)
