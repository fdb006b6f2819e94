"""Cube loading through the import command: same-day merge, UTM zones, frames in other CRSs."""
from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor these tests use)
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
    from imalys_stac.providers.landsat.qa import MaskRule

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


# ---------------------------------------------------------------- reading plans (cube.tiles)

import rasterio  # noqa: E402
from affine import Affine  # noqa: E402
from rasterio.enums import Resampling  # noqa: E402
from rasterio.warp import reproject  # noqa: E402

from imalys_stac.cube import tiles as T  # noqa: E402


def _tiled_tif(path, data, transform, epsg, tile, nodata=0):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                       dtype=data.dtype, crs=f"EPSG:{epsg}", transform=transform, nodata=nodata, tiled=True,
                       blockxsize=tile, blockysize=tile, compress="deflate") as ds:
        ds.write(data, 1)
    return str(path)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiles")
    rng = np.random.default_rng(3)
    a = rng.integers(1, 60000, (700, 900), dtype=np.uint16)
    a[300:340, :] = 0  # a nodata stripe
    b = rng.integers(1, 60000, (700, 900), dtype=np.uint16)
    t = Affine(30, 0, 600000, 0, -30, 5400000)
    return {"a": _tiled_tif(tmp / "a.tif", a, t, 32632, 128), "b": _tiled_tif(tmp / "b.tif", b, t, 32632, 128),
            # the same pixels shifted by 3 × 5 pixels and tiled 64: another tiling and phase on the same grid
            "c": _tiled_tif(tmp / "c.tif", b, t @ Affine.translation(5, 3), 32632, 64),
            "arrays": {"a": a, "b": b}, "transform": t}


def _stats(token_before):
    new = [k for k in T.STATS if k not in token_before]
    assert len(new) == 1
    return T.tile_stats(new[0])


def test_aligned_chunks_put_every_inner_edge_on_a_tile_edge():
    for n, target, phase, tile in [(3763, 1024, 333, 512), (4096, 512, 0, 512), (1000, 256, 17, 256),
                                   (300, 1024, 5, 512), (3635, 512, 333, 512), (3635, 256, 333, 512)]:
        sizes = T.aligned_chunks(n, target, phase, tile)
        assert sum(sizes) == n and min(sizes) > 0
        assert max(sizes) <= target  # never larger than asked: the reduce never re-splits them
        step = min(tile, target)  # below a tile: half tiles (tile 512, target 256)
        edges = np.cumsum(sizes)[:-1]
        assert all((e + phase) % step == 0 for e in edges)
        assert sum(s == (target // step) * step for s in sizes) >= len(sizes) - 2  # all full but the ends


def test_crop_reads_each_tile_once_and_equals_a_slice(sources):
    """A grid that is a crop of the source starting inside a tile (and running past its edge):
    chunks aligned to the tiles, pixels a plain slice (nodata → fill), every tile decoded once."""
    t = sources["transform"]
    grid = T.OutGrid(32632, t @ Affine.translation(77, 45), 700, 850)  # 45 rows down, 77 cols right; past the bottom/right
    before = set(T.STATS)
    data, how = T.read_stack([[sources["a"], sources["b"]]], grid, chunksize=256, resampling=Resampling.nearest,
                             dtype="uint16", fill=np.uint16(7))
    assert how == "aligned"
    edges = np.cumsum(data.chunks[3])[:-1]
    assert all((e + 77) % 128 == 0 for e in edges)
    got = data.compute(scheduler="threads")
    for k, name in enumerate("ab"):
        src = sources["arrays"][name]
        want = np.full((700, 850), 7, np.uint16)
        want[:700 - 45, :900 - 77] = src[45:, 77:]
        if name == "a":
            want[want == 0] = 7  # the source's nodata becomes the fill
        np.testing.assert_array_equal(got[0, k], want)
    s = _stats(before)
    assert s["decoded"] == s["needed"] == 2 * 6 * 8  # 128-px tile rows 0..5 (source rows 45..699), cols 0..7 (77..899)


def test_unalignable_sources_share_tiles_through_the_cache(sources, monkeypatch):
    """Two tilings with different phases on one grid: chunks follow one of them, the other's
    tiles are served from the cache, so still every tile is decoded once; with a cache too small
    tiles are decoded again — and the pixels stay the same."""
    t = sources["transform"]
    grid = T.OutGrid(32632, t @ Affine.translation(10, 10), 600, 800)
    hrefs = [[sources["b"]], [sources["c"]]]

    def read():
        before = set(T.STATS)
        data, how = T.read_stack(hrefs, grid, chunksize=128, resampling=Resampling.nearest, dtype="uint16", fill=np.uint16(0))
        return data.compute(scheduler="threads"), how, _stats(before)

    got, how, s = read()
    assert how.startswith("aligned for 1 of 2")
    b = sources["arrays"]["b"]
    np.testing.assert_array_equal(got[0, 0], b[10:610, 10:810])
    want_c = np.zeros((600, 800), np.uint16)
    want_c[:, :] = b[7:607, 5:805]  # c's pixel (r, c) is b's (r, c) shifted by (3, 5) on the map
    np.testing.assert_array_equal(got[1, 0], want_c)
    assert s["decoded"] == s["needed"]
    monkeypatch.setenv("IMALYS_TILE_CACHE_MB", "0.01")
    small, _, s2 = read()
    np.testing.assert_array_equal(small, got)
    assert s2["decoded"] > s2["needed"]


def test_warped_read_matches_a_whole_image_reproject(sources):
    """A grid in another UTM zone: chunks cannot follow the tiles; each chunk is warped from the
    tiles around it (each decoded once, through the cache). Nearest neighbour as GDAL warps the
    whole image, apart from pixels where GDAL's approximate transformer (≤ 0.125 px) picks the
    neighbour: checked against the exact source pixel of every output pixel (pyproj)."""
    grid = T.OutGrid(32633, Affine(30, 0, 155000, 0, -30, 5411000), 720, 700)
    before = set(T.STATS)
    data, how = T.read_stack([[sources["b"]]], grid, chunksize=200, resampling=Resampling.nearest, dtype="uint16",
                             fill=np.uint16(0))
    assert how == "regular"
    got = data.compute(scheduler="threads")[0, 0]
    b = sources["arrays"]["b"]
    whole = np.zeros((720, 700), np.uint16)
    with rasterio.open(sources["b"]) as src:
        reproject(src.read(1), whole, src_transform=src.transform, src_crs=src.crs, src_nodata=0,
                  dst_transform=grid.transform, dst_crs="EPSG:32633", dst_nodata=0, resampling=Resampling.nearest)
    assert (whole > 0).mean() > 0.3  # the grid overlaps the scene
    assert (got == whole).mean() > 0.98
    # exact: the source pixel under each output pixel centre
    cols, rows = np.meshgrid(np.arange(700) + 0.5, np.arange(720) + 0.5)
    x, y = grid.transform @ (cols, rows)
    sx, sy = Transformer.from_crs(32633, 32632, always_xy=True).transform(x, y)
    sc, sr = np.floor((sx - 600000) / 30).astype(int), np.floor((5400000 - sy) / 30).astype(int)
    inside = (sc >= 1) & (sc < 899) & (sr >= 1) & (sr < 699)
    assert np.array_equal(got[inside] > 0, np.ones(inside.sum(), bool))
    near = np.zeros(inside.sum(), bool)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            near |= got[inside] == b[sr[inside] + dr, sc[inside] + dc]
    assert near.all()
    assert (got[inside] == b[sr[inside], sc[inside]]).mean() > 0.98
    s = _stats(before)
    assert s["decoded"] == s["needed"]


def test_tile_reader_equals_stackstac_on_a_framed_import(two_rows, tmp_path, monkeypatch):
    """The cube of an import with a frame starting inside a tile, read by the tile reader, is the
    same as the one stackstac reads (the reader before)."""
    root, s26, _ = two_rows
    t = s26.transform
    frame = write_frame(tmp_path / "f.gpkg", box(t.c + 37 * 30, t.f - 100 * 30, t.c + 110 * 30, t.f - 13 * 30), s26.crs)
    wd = run(tmp_path, f"import\n\tselect = {s26.path}\n\tframe = {frame}\n\tbands = _B4, _B5\n\tfactor = auto\n")
    item = wd.load(wd.names()[0])
    new = cube_of(wd, item, chunksize=256).values
    monkeypatch.setenv("IMALYS_READER", "stackstac")
    old = cube_of(wd, item, chunksize=256).values
    assert new.shape == old.shape and np.isfinite(new).mean() > 0.3
    np.testing.assert_array_equal(new, old)


def test_polygon_frame_masks_outside_in_the_fused_pass(two_rows, tmp_path):
    """`polygon = true` with a triangular frame: pixels outside the triangle are NaN, those inside
    equal the same import without the polygon (the mask is applied inside the fused task)."""
    from rasterio.features import geometry_mask
    from shapely.geometry import Polygon

    root, s26, _ = two_rows
    t = s26.transform
    tri = Polygon([(t.c + 10 * 30, t.f - 10 * 30), (t.c + 120 * 30, t.f - 15 * 30), (t.c + 40 * 30, t.f - 118 * 30)])
    frame = write_frame(tmp_path / "tri.gpkg", tri, s26.crs)
    base = f"import\n\tselect = {s26.path}\n\tframe = {frame}\n\tbands = _B4, _B5\n\tfactor = auto\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain = run(tmp_path / "a", base)
    poly = run(tmp_path / "b", base + "\tpolygon = true\n")
    a = cube_of(plain, plain.load(plain.names()[0]), chunksize=256)
    b = cube_of(poly, poly.load(poly.names()[0]), chunksize=256)
    inside = ~geometry_mask([tri], out_shape=a.shape[2:], transform=a.rio.transform(recalc=True))
    av, bv = a.values, b.values
    assert 0.2 < inside.mean() < 0.8
    assert np.isnan(bv[..., ~inside]).all()
    np.testing.assert_array_equal(bv[..., inside], av[..., inside])
    assert np.isfinite(av[..., ~inside]).mean() > 0.3
