"""`compile format = int16`: the stack stored as scaled 16-bit integers. What is stored is the float32
stack rounded to the scale step (checked against the lazy stack with plain numpy), reduce reads it
back within half a step of the float32 path, and odc-stac, stackstac and rasterio calibrate the
stored stack from the item's `raster:bands` and the file's scale/offset."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor these tests use)

from imalys_stac.chain import ChainError, load_chain
from imalys_stac.commands import run_chain
from imalys_stac.products import cube_of
from imalys_stac.workdir import WorkDir

from .conftest import RED_NIR

HALF_STEP = 1e-4 / 2 + 1e-6  # half a scale step, plus float32 rounding of the values themselves


@pytest.fixture(scope="module")
def stacks(synthetic_archives, tmp_path_factory):
    """One import; a lazy compile, an int16 compile and a `format = true` compile of it; bestof of
    the lazy and of the int16 stack; both stacks exported."""
    folder = tmp_path_factory.mktemp("compile-format")
    chain = folder / "chain.txt"
    compiles = "".join(f"compile\n\tsearch = LC08*\n{extra}\ttarget = {name}\n"
                       for name, extra in (("lazy", ""), ("scaled", "\tformat = int16\n"), ("kept", "\tformat = true\n")))
    reduces = "".join(f"reduce\n\tselect = {src}\n\texecute = bestof\n\tpreserve = bands\n\ttarget = bestof_{src}\n"
                      f"export\n\tselect = bestof_{src}\n\ttarget = {folder}/bestof_{src}.tif\n"
                      f"export\n\tselect = {src}\n\ttarget = {folder}/stack_{src}.tif\n" for src in ("lazy", "scaled"))
    chain.write_text(f"IMALYS [compile format]\nhome\n\tdirectory = {folder}/wd\n\tclear = true\nimport\n"
                     f"\tselect = {synthetic_archives.folder}/*.tar\n{RED_NIR}{compiles}{reduces}")
    run_chain(load_chain(chain))
    wd = WorkDir(folder / "wd")
    lazy = cube_of(wd, wd.load("lazy")).compute(scheduler="sync")
    assert np.isnan(lazy.values).any() and np.isfinite(lazy.values).any()  # the case has both
    return folder, wd, lazy


def _stored(wd: WorkDir) -> tuple[np.ndarray, dict]:
    item = wd.load("scaled")
    path = item.assets["data"].get_absolute_href()
    with rasterio.open(path) as ds:
        return ds.read(), {"scales": ds.scales, "offsets": ds.offsets, "nodata": ds.nodata, "dtype": ds.dtypes[0],
                           "names": ds.descriptions, "size": ds.width * ds.height}


def test_stored_integers_are_the_float_stack_rounded(stacks):
    _, wd, lazy = stacks
    dn, meta = _stored(wd)
    assert meta["dtype"] == "int16" and meta["nodata"] == -9999
    assert set(meta["scales"]) == {1e-4} and set(meta["offsets"]) == {0.0}
    t, b = lazy.sizes["time"], lazy.sizes["band"]
    values = lazy.values.astype(np.float64).reshape((t * b,) + lazy.shape[2:])  # date-major, as the file
    want = np.where(np.isnan(values), -9999, np.rint(np.nan_to_num(values) / 1e-4)).astype(np.int16)
    assert np.array_equal(dn, want)
    dates = [str(np.datetime_as_string(x, unit="D")).replace("-", "") for x in lazy.time.values]
    assert list(meta["names"]) == [f"{d}_{band}" for d in dates for band in lazy.band.values]


def test_reduce_reads_the_stored_stack(stacks):
    _, wd, lazy = stacks
    stored = cube_of(wd, wd.load("scaled")).compute(scheduler="sync")
    for coord in ("time", "band", "y", "x", "quality", "product"):
        assert np.array_equal(stored[coord].values, lazy[coord].values), coord
    assert stored.dtype == np.float32 and stored.rio.crs == lazy.rio.crs
    # a plain decoding of the file, layer by layer
    dn, meta = _stored(wd)
    reference = np.empty(dn.shape, np.float32)
    for k in range(dn.shape[0]):
        reference[k] = np.where(dn[k] == meta["nodata"], np.nan, dn[k].astype(np.float64) * meta["scales"][k] + meta["offsets"][k])
    assert np.array_equal(stored.values.reshape(dn.shape), reference, equal_nan=True)
    ok = ~np.isnan(lazy.values)
    assert np.array_equal(np.isnan(stored.values), ~ok)
    assert np.abs(stored.values[ok].astype(np.float64) - lazy.values[ok]).max() <= HALF_STEP
    # a window of the grid (reduce's parts) holds the same pixels as the whole
    part = cube_of(wd, wd.load("scaled"), window=(5, 40, 3, 61), chunksize=16).compute(scheduler="sync")
    assert np.array_equal(part.values, stored.values[:, :, 5:40, 3:61], equal_nan=True)
    assert np.array_equal(part.x.values, stored.x.values[3:61]) and np.array_equal(part.y.values, stored.y.values[5:40])


def test_bestof_of_the_stored_stack_is_within_half_a_step(stacks):
    folder, _, _ = stacks
    with rasterio.open(folder / "bestof_lazy.tif") as a, rasterio.open(folder / "bestof_scaled.tif") as b:
        x, y = a.read().astype(np.float64), b.read().astype(np.float64)
        assert (a.transform, a.shape) == (b.transform, b.shape)
    ok = ~np.isnan(x)
    assert np.array_equal(np.isnan(y), ~ok) and ok.any()
    assert np.abs(x[ok] - y[ok]).max() <= HALF_STEP


def test_the_stored_stack_exports_as_the_lazy_one(stacks):
    folder, _, _ = stacks
    with rasterio.open(folder / "stack_lazy.tif") as a, rasterio.open(folder / "stack_scaled.tif") as b:
        x, y = a.read().astype(np.float64), b.read().astype(np.float64)
        assert (a.transform, a.shape, a.descriptions, b.dtypes[0]) == (b.transform, b.shape, b.descriptions, "float32")
    ok = ~np.isnan(x)
    assert np.array_equal(np.isnan(y), ~ok) and ok.any()
    assert np.abs(x[ok] - y[ok]).max() <= HALF_STEP


def test_format_true_keeps_the_lazy_stack(stacks):
    _, wd, _ = stacks
    kept = wd.load("kept")
    assert "stack" in kept.assets and "data" not in kept.assets


def test_the_item_records_the_calibration(stacks):
    _, wd, lazy = stacks
    item = json.loads(wd.item_path("scaled").read_text())
    bands = item["assets"]["data"]["raster:bands"]
    assert len(bands) == lazy.sizes["time"] * lazy.sizes["band"]
    assert all(b["data_type"] == "int16" and b["nodata"] == -9999 and b["scale"] == 1e-4 and b["offset"] == 0 for b in bands)
    views = [k for k in item["assets"] if k.endswith(".vrt")]
    assert len(views) == len(bands)
    assert all(item["assets"][k]["raster:bands"][0]["scale"] == 1e-4 for k in views)


def _layers(lazy) -> np.ndarray:
    return lazy.values.astype(np.float64).reshape((-1,) + lazy.shape[2:])


def _close(values: np.ndarray, reference: np.ndarray) -> None:
    assert values.shape == reference.shape
    assert np.array_equal(np.isnan(values), np.isnan(reference))
    ok = ~np.isnan(reference)
    assert np.abs(values[ok] - reference[ok]).max() <= HALF_STEP


@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")  # inside odc-geo 0.5
@pytest.mark.filterwarnings("ignore:Use .@. matmul instead of:PendingDeprecationWarning")  # odc-geo's use of affine
def test_odc_stac_loads_the_stored_stack_with_the_item_scale(stacks):
    import pystac
    from odc.geo.geobox import GeoBox
    from odc.stac import load

    _, wd, lazy = stacks
    item = pystac.Item.from_file(str(wd.item_path("scaled"))).make_asset_hrefs_absolute()
    names = [e["name"] for e in item.assets["data"].extra_fields["eo:bands"]]
    bands = item.assets["data"].extra_fields["raster:bands"]
    with rasterio.open(item.assets["data"].get_absolute_href()) as ds:
        box = GeoBox(ds.shape, ds.transform, ds.crs)
    ds = load([item], bands=names, geobox=box, chunks=None)
    layers = []
    for name, band in zip(names, bands):
        dn = ds[name].isel(time=0).values
        assert dn.dtype == np.int16 and ds[name].attrs.get("nodata") == -9999
        layers.append(np.where(dn == band["nodata"], np.nan, dn * band["scale"] + band["offset"]))
    _close(np.stack(layers), _layers(lazy))


def test_stackstac_rescales_the_stored_stack(stacks):
    import pystac
    import stackstac

    _, wd, lazy = stacks
    item = pystac.Item.from_file(str(wd.item_path("scaled"))).make_asset_hrefs_absolute()
    views = [k for k in item.assets if k.endswith(".vrt")]
    epsg = int(str(item.properties.get("proj:code") or item.properties["proj:epsg"]).split(":")[-1])
    with rasterio.open(item.assets["data"].get_absolute_href()) as ds:
        bounds, resolution = tuple(ds.bounds), ds.res[0]
    da = stackstac.stack([item], assets=views, epsg=epsg, bounds=bounds, resolution=resolution, snap_bounds=False,
                         rescale=True, dtype="float64", fill_value=np.nan, resampling=rasterio.enums.Resampling.nearest)
    values = da.isel(time=0).compute(scheduler="sync").values
    # the views in the item's order are the file's bands in order
    _close(values, _layers(lazy))


def _chain_error(write_chain, tmp_path, body: str) -> str:
    path = write_chain(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\ncompile\n\tsearch = LC08*\n{body}")
    with pytest.raises(ChainError) as info:
        load_chain(path)
    return str(info.value)


def test_scale_without_int16_is_a_located_error(write_chain, tmp_path):
    text = _chain_error(write_chain, tmp_path, "\tscale = 0.0001\n")
    assert "scale" in text and "format = int16" in text and ":6:" in text


def test_unknown_format_is_a_located_error(write_chain, tmp_path):
    text = _chain_error(write_chain, tmp_path, "\tformat = int8\n")
    assert "format" in text and "int16" in text and ":6:" in text
