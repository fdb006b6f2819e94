"""The Python API (imalys_stac.run_chain, search, load, reduce, to_cog, plan): round trips against
the chain, the loaded cube against the archive's own pixels read with rasterio, and a library run
that leaves the caller's logging and warning filters as they were."""
from __future__ import annotations

import json
import logging
import shutil
import warnings
from datetime import date

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor these tests use)

import imalys_stac as ims
from imalys_stac.errors import ImalysError

from .conftest import SYNTHETIC_DATES, bestof_chain


@pytest.fixture(scope="module")
def chain_run(synthetic_archives, tmp_path_factory):
    """The usual bestof chain (red, nir08; import → compile → reduce → export), run through the API."""
    folder = tmp_path_factory.mktemp("api-chain")
    chain = bestof_chain(folder, synthetic_archives.folder, "c")
    return folder, ims.run_chain(chain)


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.crs.to_epsg(), ds.descriptions, ds.transform


def test_run_chain_result_lists_products_and_exports_and_opens_them(chain_run):
    folder, result = chain_run
    kinds = {name: item.properties["imalys:kind"] for name, item in result.products.items()}
    assert kinds["bestof"] == "reduce" and kinds["compile"] == "compile"
    assert sorted(n for n, k in kinds.items() if k == "import") == [
        f"LC08_193026_{d:%Y%m%d}" for d, _ in SYNTHETIC_DATES]
    assert list(result.exports) == [folder / "c.tif"]
    assert result.exports[folder / "c.tif"].assets["data"].get_absolute_href() == str(folder / "c.tif")
    assert result.log is not None and result.log.exists()

    pixels, epsg, names, transform = _read(folder / "c.tif")
    opened = result.open("bestof")
    assert opened.dims == ("band", "y", "x")
    assert list(opened.band.values) == list(names) == ["red", "nir08"]
    assert opened.rio.crs.to_epsg() == epsg
    assert opened.rio.transform() == transform
    np.testing.assert_array_equal(opened.values, pixels)  # NaN where NaN, every other pixel exactly
    np.testing.assert_array_equal(result.open("c.tif").values, pixels)

    stack = result.open("compile")
    assert stack.dims == ("time", "band", "y", "x") and stack.sizes["time"] == len(SYNTHETIC_DATES)
    assert np.all((stack.quality.values >= 0) & (stack.quality.values <= 1))
    with pytest.raises(ImalysError, match="no product or export 'nothing'"):
        result.open("nothing")


def test_search_load_reduce_to_cog_equals_the_chains_bestof(chain_run, synthetic_archives, tmp_path):
    folder, result = chain_run
    items = ims.search(synthetic_archives.folder)
    assert [it.datetime.date() for it in items] == [d for d, _ in SYNTHETIC_DATES]
    cube = ims.load(items, bands=["red", "nir08"])
    assert cube.dims == ("time", "band", "y", "x") and list(cube.band.values) == ["red", "nir08"]
    # the quality bestof weighs with is the one the chain stored in its import products
    stored = [result.products[f"LC08_193026_{d:%Y%m%d}"].properties["imalys:quality"] for d, _ in SYNTHETIC_DATES]
    np.testing.assert_array_equal(cube.quality.values, stored)
    best = ims.reduce(cube, "bestof")
    item = ims.to_cog(best, tmp_path / "api.tif")

    mine, epsg, names, transform = _read(tmp_path / "api.tif")
    chains, epsg_c, names_c, transform_c = _read(folder / "c.tif")
    assert (epsg, names, transform) == (epsg_c, names_c, transform_c)
    np.testing.assert_array_equal(mine, chains)

    # the item written beside it describes the file
    on_disk = json.loads((tmp_path / "api.json").read_text())
    assert on_disk["id"] == item.id == "api"
    # and has one single-band view per band, which stackstac reads as the file's pixels
    import stackstac

    from imalys_stac.stac.search import read_item

    keys = [k for k, a in on_disk["assets"].items() if len(a.get("raster:bands") or []) == 1]
    assert keys == [f"{n}.vrt" for n in names]
    da = stackstac.stack([read_item(tmp_path / "api.json")], assets=keys, snap_bounds=False)
    np.testing.assert_array_equal(da.values[0], mine)
    assert on_disk["assets"]["data"]["href"] == "./api.tif"
    assert [b["name"] for b in on_disk["assets"]["data"]["eo:bands"]] == ["red", "nir08"]
    assert on_disk["properties"]["proj:shape"] == list(mine.shape[1:])
    first, last = SYNTHETIC_DATES[0][0], SYNTHETIC_DATES[-1][0]
    assert on_disk["properties"]["start_datetime"].startswith(first.isoformat())
    assert on_disk["properties"]["end_datetime"].startswith(last.isoformat())
    assert item.assets["data"].get_absolute_href() == str(tmp_path / "api.tif")


def _qa_clear(qa: np.ndarray) -> np.ndarray:
    """USGS QA_PIXEL by the book: not fill (bit 0) and none of dilated cloud, cirrus, cloud, shadow (bits 1-4)."""
    return (qa & 0b11111) == 0


def test_load_is_the_archive_calibrated_and_masked(synthetic_archives):
    """One date, read independently: the red band's DNs and QA_PIXEL from the tar with rasterio,
    DN · 2.75e-5 − 0.2 where the QA is clear, NaN elsewhere."""
    archive = synthetic_archives.archives[0]
    stem = archive.name.removesuffix(".tar")
    with rasterio.open(f"/vsitar/{archive}/{stem}_SR_B4.TIF") as ds:
        dn = ds.read(1)
    with rasterio.open(f"/vsitar/{archive}/{stem}_QA_PIXEL.TIF") as ds:
        qa = ds.read(1)
    expected = np.where(_qa_clear(qa), dn * 2.75e-5 - 0.2, np.nan).astype(np.float32)

    cube = ims.load(ims.search(archive), bands=["red"]).compute()
    assert cube.shape == (1, 1) + dn.shape
    np.testing.assert_allclose(cube.values[0, 0], expected, rtol=0, atol=1e-6, equal_nan=True)
    clear = _qa_clear(qa)
    assert cube.quality.values[0] == pytest.approx(clear.sum() / (qa & 1 == 0).sum(), abs=1e-6)


def test_load_leaves_out_images_below_quality(synthetic_archives, caplog):
    items = ims.search(synthetic_archives.folder)
    with caplog.at_level(logging.INFO, logger="imalys_stac"):
        cube = ims.load(items, bands=["red"], quality=0.5)
    full = ims.load(items, bands=["red"])
    keep = full.quality.values >= 0.5
    assert 0 < keep.sum() < len(items)  # the fixture has a clear and a cloudy date
    np.testing.assert_array_equal(cube.time.values, full.time.values[keep])
    assert "left out" in caplog.text
    with pytest.raises(ImalysError, match="none of the 3 image"):
        ims.load(items, bands=["red"], quality=1.0)


def test_run_chain_takes_text_and_variables(synthetic_archives, tmp_path):
    text = (f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd_$1\n\tclear = true\nimport\n"
            f"\tselect = {synthetic_archives.archives[0]}\n\tbands = red\n\tfactor = auto\n"
            f"export\n\tselect = LC08_193026_{SYNTHETIC_DATES[0][0]:%Y%m%d}\n\ttarget = {tmp_path}/one_$1.tif\n")
    result = ims.run_chain(text, variables=["x"])
    assert result.workdir == tmp_path / "wd_x"
    assert list(result.exports) == [tmp_path / "one_x.tif"]
    again = ims.run_chain(text, variables={"$1": "y"})
    assert list(again.exports) == [tmp_path / "one_y.tif"]
    with pytest.raises(ims.ChainError, match="<chain>:"):
        ims.run_chain("IMALYS\nhome\n\tdirectory = /tmp/x\nreduce\n\tselect = a\n\texecute = bestov\n")


def test_library_run_leaves_logging_and_warnings_alone(synthetic_archives, tmp_path, caplog):
    """Before: the run set the imalys_stac logger's level, `propagate = False` and the warning
    filters for good, so a notebook lost its own logging configuration after the first chain."""
    ours = logging.getLogger("imalys_stac")
    before = (ours.level, ours.propagate, list(ours.handlers), list(warnings.filters),
              logging.getLogger("rasterio").level)
    chain = bestof_chain(tmp_path, synthetic_archives.folder, "quiet")
    with caplog.at_level(logging.INFO):
        result = ims.run_chain(chain)
    assert (ours.level, ours.propagate, list(ours.handlers), list(warnings.filters),
            logging.getLogger("rasterio").level) == before
    # the caller's handlers got what their level lets through, the run log got everything
    messages = [r for r in caplog.records if r.name.startswith("imalys_stac")]
    assert any("bestof" in r.getMessage() for r in messages)
    assert not any(r.levelno < logging.INFO for r in messages)
    assert " DEBUG " in result.log.read_text()


def test_a_failing_library_run_raises_and_does_not_also_log_the_error(tmp_path, caplog):
    chain = f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\nreduce\n\tselect = nothing\n\texecute = bestof\n"
    with caplog.at_level(logging.INFO), pytest.raises(ims.ChainError, match="no product 'nothing'") as raised:
        ims.run_chain(chain)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # the exception is the one report
    (log_file,) = (tmp_path / "wd").glob("imalys-chain-*.log")  # a chain given as text: "chain", no brackets
    assert str(raised.value) in log_file.read_text()  # the run log has it


def test_command_line_run_puts_logging_and_warnings_back(synthetic_archives, tmp_path):
    from imalys_stac.cli import main

    ours = logging.getLogger("imalys_stac")
    before = (ours.level, ours.propagate, list(ours.handlers), list(warnings.filters))
    assert main(["run", str(bestof_chain(tmp_path, synthetic_archives.folder, "cli"))]) == 0
    assert (ours.level, ours.propagate, list(ours.handlers), list(warnings.filters)) == before


def test_to_cog_does_not_replace_a_file_it_did_not_write(tmp_path):
    import xarray as xr

    arr = xr.DataArray(np.arange(32 * 32, dtype=np.float32).reshape(1, 32, 32), dims=("band", "y", "x"),
                       coords={"band": ["a"], "y": 5e6 - 30 * np.arange(32) - 15, "x": 6e5 + 30 * np.arange(32) + 15})
    arr = arr.rio.write_crs(32632)
    foreign = tmp_path / "figure.tif"
    foreign.write_bytes(b"not ours")
    with pytest.raises(ImalysError, match="was not written by imalys-stac"):
        ims.to_cog(arr, foreign)
    assert foreign.read_bytes() == b"not ours"
    item = ims.to_cog(arr, tmp_path / "ours.tif", datetime=date(2022, 6, 1))
    assert item.datetime.date() == date(2022, 6, 1)
    ims.to_cog(arr * 2, tmp_path / "ours.tif")  # its own file: replaced
    np.testing.assert_array_equal(_read(tmp_path / "ours.tif")[0], (arr * 2).values)
    ims.to_cog(arr, foreign, overwrite=True)
    np.testing.assert_array_equal(_read(foreign)[0], arr.values)
    with pytest.raises(ImalysError, match="no CRS"):
        ims.to_cog(arr.drop_vars("spatial_ref"), tmp_path / "nocrs.tif")


@pytest.mark.parametrize("given, expected", [
    ("2022-05-01/2022-06-30", ((date(2022, 5, 1), date(2022, 6, 30)),)),
    ("20220501-20220630", ((date(2022, 5, 1), date(2022, 6, 30)),)),
    ("2022-05-15", ((date(2022, 5, 15), date(2022, 5, 15)),)),
    ("../2022-05-31", ((date.min, date(2022, 5, 31)),)),
    ("2022-05-01T00:00:00Z/..", ((date(2022, 5, 1), date.max),)),
    ((date(2022, 5, 1), "2022-05-31"), ((date(2022, 5, 1), date(2022, 5, 31)),)),
    (["20220501-20220510", "2022-07-01/2022-07-02"], ((date(2022, 5, 1), date(2022, 5, 10)),
                                                      (date(2022, 7, 1), date(2022, 7, 2)))),
])
def test_search_datetime_forms(given, expected):
    from imalys_stac.api import _periods

    assert _periods(given) == expected


@pytest.mark.parametrize("bad", ["2022-13-01", "yesterday", "2022-06-30/2022-05-01"])
def test_search_datetime_refused_with_the_accepted_forms(bad):
    from imalys_stac.api import _periods

    with pytest.raises(ImalysError, match="datetime"):
        _periods(bad)


def test_search_filters_like_the_truth(synthetic_archives, tmp_path):
    """Dates and cloud covers of the fixture (its own truth), through a catalog and the folder."""
    report = ims.catalog(synthetic_archives.folder, tmp_path / "cat")
    assert len(report.added) == len(SYNTHETIC_DATES)
    for source in (synthetic_archives.folder, tmp_path / "cat"):
        got = [it.datetime.date() for it in ims.search(source, max_cloud=30)]
        assert got == [d for d, cloud in SYNTHETIC_DATES if 100 * cloud <= 30]
        got = [it.datetime.date() for it in ims.search(source, datetime="2022-05-20/2022-12-31")]
        assert got == [d for d, _ in SYNTHETIC_DATES if d >= date(2022, 5, 20)]
        assert ims.search(source, bbox=(-60, -10, -59, -9)) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImalysError, match="neither a STAC catalog"):
        ims.search(empty)


def test_plan_writes_nothing_and_agrees_with_the_run(synthetic_archives, tmp_path):
    chain = bestof_chain(tmp_path, synthetic_archives.folder, "p")
    text = chain.read_text().replace("\tbands = red", "\tquality = 0.5\n\tbands = red")
    chain.write_text(text)
    plan = ims.plan(chain)
    assert not (tmp_path / "wd_p").exists() and not (tmp_path / "p.tif").exists()
    imported = plan["commands"][0]
    kept = sorted(a["name"] for a in imported["acquisitions"] if a["kept"])
    rejected = [a for a in imported["acquisitions"] if not a["kept"]]
    assert rejected and all(a["reason"].startswith("quality") and a["quality"] < 0.5 for a in rejected)

    result = ims.run_chain(chain)
    assert sorted(n for n, it in result.products.items() if it.properties["imalys:kind"] == "import") == kept
    compiled = plan["commands"][1]
    assert compiled["inputs"] == kept
    assert [compiled["grid"]["height"], compiled["grid"]["width"]] == result.products["compile"].properties["proj:shape"]
    assert plan["commands"][2]["outputs"][0]["bands"] == ["red", "nir08"]
    assert plan["commands"][3]["target"] == str(tmp_path / "p.tif")
    shutil.rmtree(tmp_path / "wd_p")


def test_a_framed_load_equals_the_framed_chain(synthetic_archives, tmp_path):
    """frame and quality as the README's quick start uses them: the API against the chain."""
    import geopandas as gpd
    from shapely.geometry import box

    a = synthetic_archives.archives[0]
    with rasterio.open(f"/vsitar/{a}/{a.name[:-4]}_QA_PIXEL.TIF") as ds:
        b = ds.bounds
    frame = tmp_path / "area.gpkg"
    gpd.GeoDataFrame(geometry=[box(b.left + 310, b.bottom + 440, b.right - 250, b.top - 500)],
                     crs="EPSG:32632").to_crs(4326).to_file(frame)  # another CRS than the scenes'
    chain = tmp_path / "framed.txt"
    chain.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\n\tclear = true\nimport\n"
                     f"\tselect = {synthetic_archives.folder}/*.tar\n\tframe = {frame}\n\tquality = 0.3\n"
                     f"\tbands = red, nir08\n\tfactor = auto\ncompile\n\tframe = {frame}\n"
                     f"reduce\n\tselect = compile\n\texecute = bestof\n\tpreserve = bands\n"
                     f"export\n\tselect = bestof\n\ttarget = {tmp_path}/chain.tif\n")
    ims.run_chain(chain)
    items = ims.search(synthetic_archives.folder, frame=frame)
    cube = ims.load(items, bands=["red", "nir08"], frame=frame, quality=0.3)
    ims.to_cog(ims.reduce(cube, "bestof"), tmp_path / "api.tif")
    mine, epsg, _, transform = _read(tmp_path / "api.tif")
    chains, epsg_c, _, transform_c = _read(tmp_path / "chain.tif")
    assert (epsg, transform) == (epsg_c, transform_c)
    np.testing.assert_array_equal(mine, chains)
    assert np.isnan(mine).any() and np.isfinite(mine).any()


def test_the_scheduler_argument_beats_the_environment(tmp_path, monkeypatch):
    """IMALYS_SCHEDULER overrides chain files (batch jobs); an explicit run_chain(scheduler=…) is
    the caller's own choice and wins over both."""
    monkeypatch.setenv("IMALYS_SCHEDULER", "tcp://127.0.0.1:9")  # nothing listens there
    result = ims.run_chain(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\n", scheduler="local")
    assert result.workdir == tmp_path / "wd" and result.products == {}


def test_the_api_names_stay_functions_after_every_module_is_loaded():
    """A submodule named like a function (api/plan.py) replaced `imalys_stac.api.plan` by the
    module as soon as the CLI imported it; the planner module is api/dryrun.py now."""
    import importlib
    import pkgutil

    import imalys_stac.api as api

    for info in pkgutil.iter_modules(api.__path__):
        importlib.import_module(f"imalys_stac.api.{info.name}")
    import imalys_stac.cli  # noqa: F401  (imports the planner the way `imalys-stac plan` does)

    for name in ("run_chain", "catalog", "search", "load", "reduce", "to_cog", "plan"):
        assert callable(getattr(api, name)) and callable(getattr(ims, name)), name
        assert not inspect_module(getattr(api, name)), name


def inspect_module(value) -> bool:
    import types

    return isinstance(value, types.ModuleType)


def test_load_merges_the_tiles_of_one_day_against_the_landscape(tmp_path):
    """Two rows of one path and day, a frame across both: one image, no seam, every value the
    generator's ground truth (one DN step of tolerance)."""
    from shapely.geometry import box

    from imalys_stac.synth import Landscape, SceneSpec, write_frame, write_landsat_archive

    land = Landscape(seed=5)
    day = date(2022, 6, 16)
    s26, s27 = (write_landsat_archive(tmp_path, SceneSpec(path=193, row=row, acquired=day, size=96, cloud_cover=0.05,
                                                          seed=row), landscape=land) for row in (26, 27))
    b26, b27 = s26.bounds, s27.bounds
    mid_y, width = (b26[1] + b27[3]) / 2, b26[2] - b26[0]
    frame = write_frame(tmp_path / "frame.gpkg", box(b26[0] + 0.35 * width, mid_y - 0.3 * width,
                                                     b26[0] + 0.65 * width, mid_y + 0.3 * width), s26.crs)
    items = ims.search(tmp_path, frame=frame)
    assert len(items) == 2
    cube = ims.load(items, bands=["red"], frame=frame)
    assert cube.sizes["time"] == 1 and list(cube["product"].values) == ["LC08_193026_20220616"]
    got = cube.isel(time=0, band=0).values
    xx, yy = np.meshgrid(cube.x.values, cube.y.values)
    truth = land.reflectance(xx, yy, cube.rio.crs, ["red"])[0]
    valid = np.isfinite(got)
    assert valid.mean() > 0.6 and valid.any(axis=1)[1:-1].all()  # no row without data inside the frame: no seam
    np.testing.assert_allclose(got[valid], truth[valid], atol=2.75e-5)


def test_load_onto_another_crs_and_pixel_equals_compile(synthetic_archives, tmp_path):
    """crs and resolution as compile's crsystem and pixel: the images are warped (bilinear) onto
    that grid exactly as a chain does it."""
    chain = tmp_path / "warp.txt"
    chain.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\n\tclear = true\nimport\n"
                     f"\tselect = {synthetic_archives.folder}/*.tar\n\tbands = red\n\tfactor = auto\n"
                     "compile\n\tcrsystem = 32633\n\tpixel = 60\n"
                     "reduce\n\tselect = compile\n\texecute = median\n\tpreserve = bands\n"
                     f"export\n\tselect = median\n\ttarget = {tmp_path}/chain.tif\n")
    ims.run_chain(chain)
    cube = ims.load(ims.search(synthetic_archives.folder), bands=["red"], crs="EPSG:32633", resolution=60)
    assert cube.rio.crs.to_epsg() == 32633 and cube.rio.resolution() == (60.0, -60.0)
    ims.to_cog(ims.reduce(cube, "median"), tmp_path / "api.tif")
    mine, epsg, _, transform = _read(tmp_path / "api.tif")
    chains, epsg_c, _, transform_c = _read(tmp_path / "chain.tif")
    assert (epsg, transform) == (epsg_c, transform_c) and epsg == 32633
    np.testing.assert_array_equal(mine, chains)
    assert np.isfinite(mine).mean() > 0.3
