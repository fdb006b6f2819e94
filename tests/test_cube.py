"""Cube loading through the import command: same-day merge, UTM zones, frames in other CRSs."""
from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import box

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.cube.grid import Grid
from imalys_stac.products import cube_of
from imalys_stac.synth import Landscape, SceneSpec, write_frame, write_landsat_archive
from imalys_stac.workdir import WorkDir

DAY = date(2022, 6, 16)
QUANT = 2.75e-5  # one DN step of Landsat C2 L2 reflectance


@pytest.fixture(scope="module")
def land():
    return Landscape(seed=5)


@pytest.fixture(scope="module")
def two_rows(tmp_path_factory, land):
    root = tmp_path_factory.mktemp("rows")
    s26 = write_landsat_archive(root, SceneSpec(path=193, row=26, acquired=DAY, size=128, cloud_cover=0.08, seed=1), landscape=land)
    s27 = write_landsat_archive(root, SceneSpec(path=193, row=27, acquired=DAY, size=128, cloud_cover=0.08, seed=2), landscape=land)
    return root, s26, s27


def run(tmp, text):
    chain = tmp / "chain.txt"
    chain.write_text("IMALYS [test]\nhome\n\tdirectory = " + str(tmp / "wd") + "\n\tclear = true\n" + text)
    run_chain(load_chain(chain))
    return WorkDir(tmp / "wd")


def _truth(land, cube, band):
    xx, yy = np.meshgrid(cube.x.values, cube.y.values)
    return land.reflectance(xx, yy, cube.rio.crs, [band])[0]


def test_two_half_covering_tiles_merge_without_seam(two_rows, land, tmp_path):
    root, s26, s27 = two_rows
    # a frame straddling the lower edge of row 26's swath and the upper part of row 27's
    b26, b27 = s26.bounds, s27.bounds
    mid_y = (b26[1] + b27[3]) / 2
    width = b26[2] - b26[0]
    frame_utm = box(b26[0] + 0.35 * width, mid_y - 0.3 * width, b26[0] + 0.65 * width, mid_y + 0.3 * width)
    frame = write_frame(tmp_path / "frame.gpkg", frame_utm, s26.crs)
    wd = run(tmp_path, f"import\n\tselect = {root}/*.tar\n\tframe = {frame}\n\tbands = red\n\tfactor = auto\n")
    assert wd.names() == ["LC08_193026_20220616"]
    item = wd.load("LC08_193026_20220616")
    assert len(item.properties["imalys:sources"]) == 2
    cube = cube_of(wd, item).isel(time=0).sel(band="red")
    got = cube.values
    truth = _truth(land, cube, "red")
    # each tile alone covers only part of the frame; merged, every pixel that is not cloudy in the
    # tile(s) covering it has a value — no seam of nodata where the tiles meet
    valid = ~np.isnan(got)
    assert valid.mean() > 0.75
    rows_with_data = valid.any(axis=1)
    assert rows_with_data.all(), "a row of the frame without data: a seam"
    np.testing.assert_allclose(got[valid], truth[valid], atol=QUANT)


def test_scene_in_another_utm_zone_reprojects_not_empty(tmp_path, land):
    root = tmp_path / "a"
    s = write_landsat_archive(root, SceneSpec(path=192, row=26, acquired=DAY, size=128, cloud_cover=0.05, seed=3), landscape=land)
    assert s.crs.to_epsg() == 32633
    # frame in the middle of the zone-33 scene, written in zone 32
    l, b, r, t = s.bounds
    cx, cy = (l + r) / 2, (b + t) / 2
    tr = Transformer.from_crs(32633, 32632, always_xy=True)
    pts = [tr.transform(x, y) for x, y in ((cx - 600, cy - 600), (cx + 600, cy + 600))]
    frame = write_frame(tmp_path / "f.geojson", box(pts[0][0], pts[0][1], pts[1][0], pts[1][1]), "EPSG:32632")
    wd = run(tmp_path, f"import\n\tselect = {root}/*.tar\n\tframe = {frame}\n\tbands = nir08\n\tfactor = auto\n\twarp = 32632\n\tpixel = 30\n")
    item = wd.load("LC08_192026_20220616")
    assert item.properties["proj:epsg"] == 32632
    cube = cube_of(wd, item).isel(time=0).sel(band="nir08")
    got = cube.values
    assert np.isfinite(got).mean() > 0.8
    truth = _truth(land, cube, "nir08")
    ok = np.isfinite(got)
    # bilinear resampling of a smooth field: close to the truth, not exact
    assert np.nanmedian(np.abs(got[ok] - truth[ok])) < 0.01


def test_frame_in_another_crs_crops_the_right_rectangle(two_rows, tmp_path):
    root, s26, _ = two_rows
    l, b, r, t = s26.bounds
    rect = box(l + 0.3 * (r - l), b + 0.4 * (t - b), l + 0.6 * (r - l), b + 0.7 * (t - b))
    tr = Transformer.from_crs(s26.crs, 3035, always_xy=True)
    import shapely

    rect3035 = shapely.transform(rect, lambda x, y: tr.transform(x, y), interleaved=False)
    frame = write_frame(tmp_path / "laea.geojson", rect3035, "EPSG:3035")
    wd = run(tmp_path, f"import\n\tselect = {s26.path}\n\tframe = {frame}\n\tbands = _B4\n\tfactor = 2.75e-5\n\toffset = -0.2\n")
    item = wd.load("LC08_193026_20220616")
    grid = Grid.from_stac(item.properties)
    # independent expectation: the LAEA rectangle's points back in UTM, their bounding box, snapped
    # outward to the archive's 30 m pixel edges
    back = Transformer.from_crs(3035, s26.crs, always_xy=True)
    xs, ys = [], []
    for x, y in rect3035.segmentize(10).exterior.coords:
        bx, by = back.transform(x, y)
        xs.append(bx)
        ys.append(by)
    T = s26.transform
    exp_left = T.c + np.floor((min(xs) - T.c) / 30) * 30
    exp_right = T.c + np.ceil((max(xs) - T.c) / 30) * 30
    exp_top = T.f - np.floor((T.f - max(ys)) / 30) * 30
    exp_bottom = T.f - np.ceil((T.f - min(ys)) / 30) * 30
    assert grid.bounds == pytest.approx((exp_left, exp_bottom, exp_right, exp_top), abs=0.01)
    assert grid.epsg == s26.crs.to_epsg() and grid.resolution == 30


def test_confidence_rule_and_mask_off(two_rows, tmp_path):
    """`rule = confidence` reads the high-confidence pairs; `mask = false` keeps disturbed pixels."""
    from imalys_stac.archives.qa import MaskRule

    _, s26, _ = two_rows
    wd = run(tmp_path, f"import\n\tselect = {s26.path}\n\tbands = red\n\tfactor = auto\n\trule = confidence\n\ttarget = conf\n")
    got = cube_of(wd, wd.load("conf")).isel(time=0, band=0).values
    qa = s26.truth["qa"]
    expected_nan = ~MaskRule("confidence").valid(qa)
    np.testing.assert_array_equal(np.isnan(got), expected_nan)
    wd = run(tmp_path, f"import\n\tselect = {s26.path}\n\tbands = red\n\tfactor = auto\n\tmask = false\n\ttarget = raw\n")
    got = cube_of(wd, wd.load("raw")).isel(time=0, band=0).values
    np.testing.assert_array_equal(np.isnan(got), s26.truth["fill"])


def test_import_vrt_opens_in_gdal_and_matches_the_cube(two_rows, tmp_path):
    """The import product's VRT (what a GIS opens) equals the computed product where unmasked."""
    import rasterio

    root, s26, s27 = two_rows
    b26 = s26.bounds
    frame = write_frame(tmp_path / "f.gpkg", box(b26[0] + 2000, b26[1] - 1500, b26[2] - 1500, b26[1] + 1500), s26.crs)
    wd = run(tmp_path, f"import\n\tselect = {root}/*.tar\n\tframe = {frame}\n\tbands = _B3, _B5\n\tfactor = auto\n\tmask = false\n")
    item = wd.load("LC08_193026_20220616")
    cube = cube_of(wd, item).isel(time=0).values
    with rasterio.open(item.assets["image"].href) as ds:
        assert ds.count == 2 and ds.dtypes[0] == "float32"
        assert ds.crs == s26.crs
        vrt = ds.read()
        assert tuple(ds.bounds) == pytest.approx(Grid.from_stac(item.properties).bounds)
    np.testing.assert_array_equal(np.isnan(vrt), np.isnan(cube))
    np.testing.assert_allclose(vrt, cube, rtol=1e-6, equal_nan=True)


def test_compile_across_utm_zones(tmp_path, land):
    """Images imported on their own grids in zones 32 and 33 compile onto one EPSG:32632 grid."""
    root = tmp_path / "a"
    s32 = write_landsat_archive(root, SceneSpec(path=193, row=26, acquired=date(2022, 6, 16), size=128, cloud_cover=0.05, seed=4), landscape=land)
    s33 = write_landsat_archive(root, SceneSpec(path=192, row=26, acquired=date(2022, 6, 25), size=128, cloud_cover=0.05, seed=5), landscape=land)
    assert (s32.crs.to_epsg(), s33.crs.to_epsg()) == (32632, 32633)
    # a frame over the overlap of the two paths, in zone 32
    tr33 = Transformer.from_crs(32633, 32632, always_xy=True)
    l33, b33, r33, t33 = s33.bounds
    x0, y0 = tr33.transform(l33, b33)
    x1, y1 = tr33.transform(l33 + 0.3 * (r33 - l33), t33)
    l32, b32, r32, t32 = s32.bounds
    rect = box(max(x0, l32), max(y0, b32), min(x1, r32), min(y1, t32))
    assert rect.area > 0, "scenes of neighbouring paths must overlap"
    frame = write_frame(tmp_path / "f.gpkg", rect, "EPSG:32632")
    wd = run(tmp_path, f"import\n\tselect = {root}/*.tar\n\tframe = {frame}\n\tbands = red\n\tfactor = auto\n"
                       f"compile\n\tsearch = LC08*\n\tcrsystem = 32632\n\tpixel = 30\n")
    assert {i for i in wd.names()} >= {"LC08_193026_20220616", "LC08_192026_20220625", "compile"}
    assert wd.load("LC08_192026_20220625").properties["proj:epsg"] == 32633
    cube = cube_of(wd, wd.load("compile")).sel(band="red")
    assert cube.sizes["time"] == 2 and cube.rio.crs.to_epsg() == 32632
    values = cube.values
    truth = _truth(land, cube.isel(time=0), "red")
    for t in range(2):
        ok = np.isfinite(values[t])
        assert ok.mean() > 0.5, f"layer {t} is (nearly) empty after reprojection"
        assert np.nanmedian(np.abs(values[t][ok] - truth[ok])) < 0.01


def test_compile_keeps_the_archive_pixel_grid_and_takes_template_paths(tmp_path, land):
    """A warped import must not shift the compile grid off the native Landsat pixels, and a
    template image given by path sets the grid."""
    import rasterio

    root = tmp_path / "a"
    s33 = write_landsat_archive(root / "z33", SceneSpec(path=192, row=26, acquired=date(2022, 6, 9), size=96, cloud_cover=0.0, seed=6), landscape=land)
    s32 = write_landsat_archive(root / "z32", SceneSpec(path=193, row=26, acquired=date(2022, 6, 16), size=96, cloud_cover=0.0, seed=7), landscape=land)
    wd = run(tmp_path, f"import\n\tselect = {s33.path}\n\tbands = red\n\tfactor = auto\n\twarp = 32632\n\tpixel = 30\n"
                       f"import\n\tselect = {s32.path}\n\tbands = red\n\tfactor = auto\n"
                       f"compile\n\tsearch = LC08*\n\tcrsystem = 32632\n\tpixel = 30\n")
    grid = Grid.from_stac(wd.load("compile").properties)
    native = Grid.from_stac(wd.load("LC08_193026_20220616").properties)
    assert grid.anchor == pytest.approx(native.anchor)
    cube = cube_of(wd, wd.load("compile")).sel(time="2022-06-16").isel(time=0).sel(band="red")
    truth = _truth(land, cube, "red")
    ok = np.isfinite(cube.values)
    np.testing.assert_allclose(cube.values[ok], truth[ok], atol=QUANT)  # read without resampling
    # template by path
    template = tmp_path / "tmpl.tif"
    with rasterio.open(template, "w", driver="GTiff", width=10, height=10, count=1, dtype="uint8",
                       crs="EPSG:32632", transform=rasterio.transform.from_origin(*native.bounds[::3], 60, 60)) as ds:
        ds.write(np.zeros((1, 10, 10), "uint8"))
    (tmp_path / "t").mkdir()
    wd = run(tmp_path / "t", f"import\n\tselect = {s32.path}\n\tbands = red\n\tfactor = auto\n"
                             f"compile\n\tsearch = LC08*\n\tprojection = {template}\n")
    assert Grid.from_stac(wd.load("compile").properties).res_xy == (60.0, 60.0)
