"""The reader seam (`imalys_stac.cube.reader`): a cube built with the fake reader (no files) has
the expected graph and values; stackstac through the same seam reads the same pixels as the
project's tile reader on synthetic archives."""
from __future__ import annotations

import pickle
from datetime import datetime, timezone

import numpy as np
import pystac
import pytest

from imalys_stac.cube.bands import Calibration
from imalys_stac.cube.counts import quality_counts
from imalys_stac.cube.grid import Grid
from imalys_stac.cube.load import SceneGroup, load_groups
from imalys_stac.cube.reader import (
    AssetStack,
    FakeReader,
    OutputGrid,
    Reader,
    StackReader,
    StackRequest,
    StackstacReader,
    TilesReader,
    default_reader,
)
from imalys_stac.settings import SettingsError

# Landsat C2 L2 QA_PIXEL codes (USGS, Landsat 8-9 C2 L2 product guide): 21824 clear land,
# 22280 high-confidence cloud, 1 fill
CLEAR, CLOUD, FILL = 21824, 22280, 1
SIZE, RES, X0, Y0 = 40, 30.0, 500000.0, 5600000.0


def fake_pixels(href: str, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """DNs of the fake assets ("fake://<date>/<key>"): a pattern per key and date; the QA band
    clear, cloudy on a diagonal stripe, and fill in the first column."""
    day, key = href.removeprefix("fake://").split("/")
    if key == "qa_pixel":
        out = np.where((rows + cols + int(day)) % 5 == 0, CLOUD, CLEAR)
        return np.where(cols == 0, FILL, out)
    return 7000 + 10 * rows + cols + 100 * int(day) + (500 if key == "nir08" else 0)


def _item(day: int) -> pystac.Item:
    item = pystac.Item(f"LC08_L2SP_193026_202206{day:02d}_20220620_02_T1", None, None,
                       datetime(2022, 6, day, 10, tzinfo=timezone.utc),
                       {"platform": "landsat-8", "proj:code": "EPSG:32632"}, collection="landsat-c2-l2")
    for key in ("red", "nir08", "qa_pixel"):
        item.add_asset(key, pystac.Asset(f"fake://{day}/{key}", extra_fields={"raster:bands": [{"nodata": 0}]}))
    return item


@pytest.fixture
def fake_groups():
    cal = Calibration((2.75e-5, 2.75e-5), (-0.2, -0.2), "given")
    return [SceneGroup(f"LC08_193026_202206{d:02d}", [_item(d)], ["red", "nir08"], cal, "flags", "nearest")
            for d in (1, 17)]


GRID = Grid(32632, (X0, Y0 - SIZE * RES, X0 + SIZE * RES, Y0), RES)


def test_the_readers_satisfy_the_seam():
    for r in (TilesReader(), StackstacReader(), AssetStack(FakeReader(fake_pixels))):
        assert isinstance(r, StackReader)
        assert pickle.loads(pickle.dumps(r)) == r  # they travel in the graph
    assert isinstance(FakeReader(), Reader)
    assert isinstance(default_reader(), TilesReader)


def test_stackstac_is_chosen_by_the_environment(monkeypatch):
    monkeypatch.setenv("IMALYS_READER", "stackstac")
    assert isinstance(default_reader(), StackstacReader)
    monkeypatch.setenv("IMALYS_READER", "gdal")
    with pytest.raises(SettingsError, match="IMALYS_READER"):
        default_reader()


def test_a_cube_from_the_fake_reader_has_the_expected_graph_and_values(fake_groups):
    reader = AssetStack(FakeReader(fake_pixels))
    cube = load_groups(fake_groups, GRID, chunksize=16, reader=reader)
    # the graph: one read task per spatial chunk (3 × 3 of 16, 16, 8), all assets of a chunk in it
    assert cube.data.chunks[2:] == ((16, 16, 8), (16, 16, 8))
    reads = [k for k in dict(cube.data.__dask_graph__()) if str(k[0] if isinstance(k, tuple) else k)
             .startswith("imalys-asset-read")]
    assert len(reads) == 9
    assert cube.sizes == {"time": 2, "band": 2, "y": SIZE, "x": SIZE}
    assert list(cube.band.values) == ["red", "nir08"] and list(cube["product"].values) == [g.name for g in fake_groups]
    # values: DN · factor + offset where the QA code is clear (plain numpy on the same pattern)
    rows, cols = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    got = cube.values
    for t, day in enumerate((1, 17)):
        qa = fake_pixels(f"fake://{day}/qa_pixel", rows, cols)
        for b, key in enumerate(("red", "nir08")):
            dn = fake_pixels(f"fake://{day}/{key}", rows, cols).astype(np.float64)
            expected = np.where(qa == CLEAR, dn * 2.75e-5 - 0.2, np.nan).astype(np.float32)
            np.testing.assert_array_equal(got[t, b], expected)
    assert np.isnan(got[:, :, :, 0]).all() and np.isfinite(got).mean() > 0.7


def test_quality_counts_and_windows_through_the_fake_reader(fake_groups):
    reader = AssetStack(FakeReader(fake_pixels))
    present, clear = quality_counts(fake_groups[0], GRID, "flags", chunksize=16, reader=reader)
    rows, cols = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    qa = fake_pixels("fake://1/qa_pixel", rows, cols)
    assert int(present.compute()) == int((qa != FILL).sum())
    assert int(clear.compute()) == int((qa == CLEAR).sum())
    # a window of the grid: every pixel as in the whole cube
    whole = load_groups(fake_groups, GRID, chunksize=16, reader=reader).values
    part = load_groups(fake_groups, GRID, chunksize=16, reader=reader, window=(5, 30, 9, 40)).values
    np.testing.assert_array_equal(part, whole[:, :, 5:30, 9:40])


def test_a_missing_asset_is_fill():
    request = StackRequest(hrefs=(("fake://1/red", None),), grid=OutputGrid(32632, (RES, 0, X0, 0, -RES, Y0), 8, 8),
                           chunksize=4, dtype="uint16", resampling=("nearest",), band_fill=(0.0, 9.0),
                           band_resampling=(None, None))
    data = AssetStack(FakeReader(fake_pixels)).stack(request).compute()
    assert data.shape == (1, 2, 8, 8) and (data[0, 1] == 9).all()
    rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    np.testing.assert_array_equal(data[0, 0], fake_pixels("fake://1/red", rows, cols))


# ------------------------------------------------------------------ stackstac and the tile reader
@pytest.fixture(scope="module")
def synthetic_items(synthetic_archives, tmp_path_factory):
    from imalys_stac.stac import build_catalog, search

    catalog = tmp_path_factory.mktemp("seam-catalog")
    build_catalog(list(synthetic_archives.archives), catalog)
    return search(catalog)


def _groups(items, resampling):
    cal = Calibration((2.75e-5, 2.75e-5), (-0.2, -0.2), "given")
    return [SceneGroup(it.id, [it], ["red", "nir08"], cal, "flags", resampling) for it in items]


@pytest.mark.parametrize("where", ["own grid", "crop inside a tile", "another projection"])
def test_stackstac_and_the_tile_reader_read_the_same_pixels(synthetic_items, where):
    own = Grid.from_stac(synthetic_items[0].properties)
    if where == "own grid":
        grid, resampling = own, "nearest"
    elif where == "crop inside a tile":
        left, bottom, right, top = own.bounds
        grid, resampling = Grid(own.epsg, (left + 7 * 30, bottom + 5 * 30, right - 11 * 30, top - 3 * 30), 30.0), \
            "nearest"
    else:
        from shapely.geometry import box

        from imalys_stac.cube.grid import reproject_geometry

        poly = reproject_geometry(box(*own.bounds), own.epsg, 32633)
        grid, resampling = Grid.aligned(32633, poly.bounds, 30.0), "nearest"
    ours = load_groups(_groups(synthetic_items, resampling), grid, chunksize=32, reader=TilesReader()).values
    theirs = load_groups(_groups(synthetic_items, resampling), grid, chunksize=32, reader=StackstacReader()).values
    assert ours.shape == theirs.shape and np.isfinite(ours).mean() > 0.2
    np.testing.assert_array_equal(ours, theirs)
