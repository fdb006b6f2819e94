"""End to end: import → compile → reduce bestof → export on generated archives, checked against
an independent reference that reads the archive members with plain rasterio and numpy loops."""
from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import from_bounds
from shapely.geometry import box

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.synth import Landscape, SceneSpec, write_frame, write_landsat_archive

DATES = [date(2022, 5, 15), date(2022, 5, 31), date(2022, 7, 2), date(2022, 7, 18)]
CLOUDS = [0.10, 0.25, 0.45, 0.15]
SR = ["SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("arch")
    land = Landscape(seed=3)
    out = [write_landsat_archive(root, SceneSpec(sensor="LC08", path=193, row=26, acquired=d, size=128, cloud_cover=c, seed=10 + i), landscape=land)
           for i, (d, c) in enumerate(zip(DATES, CLOUDS))]
    return root, out


@pytest.fixture(scope="module")
def frame_wgs84(scenes, tmp_path_factory):
    """A rectangle over the middle of the scene, written in EPSG:4326 (another CRS than the archives')."""
    _, sc = scenes
    t = sc[0].transform
    rows, cols = sc[0].shape
    x0, y0 = t.c + 0.3 * cols * t.a, t.f + 0.3 * rows * t.e
    x1, y1 = t.c + 0.7 * cols * t.a, t.f + 0.7 * rows * t.e
    tr = Transformer.from_crs(sc[0].crs, 4326, always_xy=True)
    (lx, ly), (ux, uy) = tr.transform(x0, y1), tr.transform(x1, y0)
    path = tmp_path_factory.mktemp("frames") / "frame.geojson"
    write_frame(path, box(lx, ly, ux, uy), "EPSG:4326")
    return path


def _chain(tmp: Path, text: str) -> Path:
    p = tmp / "chain.txt"
    p.write_text("IMALYS [test]\n" + text)
    return p


def expected_window(scene, frame_path):
    """Frame rectangle in the scene CRS, snapped outward to the scene's own pixel grid."""
    import geopandas as gpd

    # rectangle around all the points of the (densified) reprojected frame
    geom = gpd.read_file(frame_path).geometry.iloc[0].segmentize(0.0005)
    geom = gpd.GeoSeries([geom], crs=4326).to_crs(scene.crs).iloc[0]
    l, b, r, t = geom.bounds
    T = scene.transform
    res = T.a
    left = T.c + math.floor((l - T.c) / res + 1e-6) * res
    right = T.c + math.ceil((r - T.c) / res - 1e-6) * res
    top = T.f - math.floor((T.f - t) / res + 1e-6) * res
    bottom = T.f - math.ceil((T.f - b) / res - 1e-6) * res
    return (left, bottom, right, top)


def reference_scene(scene, bounds):
    """Calibrated, masked reflectance (6, y, x) and quality read with plain rasterio + numpy."""
    pid = scene.path.name[:-4]
    def read(member, fill):
        with rasterio.open(f"/vsitar/{scene.path}/{pid}_{member}.TIF") as ds:
            w = from_bounds(*bounds, transform=ds.transform)
            return ds.read(1, window=w, boundless=True, fill_value=fill).astype(np.int64)
    qa = read("QA_PIXEL", 1)
    fill = (qa & 1) != 0
    disturbed = (qa & 0b11110) != 0
    valid = ~fill & ~disturbed
    refl = np.stack([read(b, 0) * 2.75e-5 - 0.2 for b in SR]).astype(np.float64)
    refl[:, ~valid] = np.nan
    quality = valid.sum() / (~fill).sum()
    return refl, quality


def reference_bestof(stack, quality, threshold=0.5):
    t, nb, ny, nx = stack.shape
    out = np.full((nb, ny, nx), np.nan)
    for b in range(nb):
        for y in range(ny):
            for x in range(nx):
                vals = [(stack[i, b, y, x], quality[i]) for i in range(t) if not np.isnan(stack[i, b, y, x])]
                if len(vals) >= 3:
                    out[b, y, x] = np.median([v for v, _ in vals])
                elif len(vals) == 2:
                    (v1, q1), (v2, q2) = vals
                    if min(q1, q2) < threshold * max(q1, q2):
                        out[b, y, x] = v1 if q1 > q2 else v2
                    else:
                        out[b, y, x] = (v1 + v2) / 2
                elif len(vals) == 1:
                    out[b, y, x] = vals[0][0]
    return out


@pytest.fixture(scope="module")
def chain_run(scenes, frame_wgs84, tmp_path_factory):
    root, _ = scenes
    tmp = tmp_path_factory.mktemp("run")
    chain = _chain(tmp, f"""home
	directory = {tmp}/wd
	clear = true
	log = {tmp}/log
import
	select = {root}/*.tar
	frame = {frame_wgs84}
	bands = _B2, _B3, _B4, _B5, _B6, _B7
	factor = 2.75e-5
	offset = -0.2
compile
	search = LC0*.hdr
reduce
	select = compile
	execute = bestof
	preserve = bands
export
	select = bestof
	target = {tmp}/out/bestof.tif
""")
    run_chain(load_chain(chain))
    return tmp


def test_bestof_equals_independent_reference(chain_run, scenes, frame_wgs84):
    _, sc = scenes
    bounds = expected_window(sc[0], frame_wgs84)
    refs = [reference_scene(s, bounds) for s in sc]
    stack = np.stack([r for r, _ in refs])
    quality = np.array([q for _, q in refs])
    expected = reference_bestof(stack, quality)
    with rasterio.open(chain_run / "out" / "bestof.tif") as ds:
        got = ds.read().astype(np.float64)
        assert ds.count == 6
        assert ds.crs == sc[0].crs
        assert tuple(ds.bounds) == pytest.approx(bounds)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6, equal_nan=True)
    # the composite is cloud free where the landscape is known: compare with the synthetic truth
    assert np.nanmean(got) == pytest.approx(np.nanmean(expected))


def test_import_products_carry_quality_and_provenance(chain_run, scenes, frame_wgs84):
    _, sc = scenes
    bounds = expected_window(sc[0], frame_wgs84)
    wd = chain_run / "wd"
    for s in sc:
        name = f"LC08_193026_{s.spec.acquired:%Y%m%d}"
        item = json.loads((wd / name / f"{name}.json").read_text())
        _, q = reference_scene(s, bounds)
        assert item["properties"]["imalys:quality"] == pytest.approx(q, abs=1e-6)
        assert item["properties"]["imalys:sources"] == [s.path.name[:-4]]
    side = json.loads((chain_run / "out" / "bestof.json").read_text())
    prov = side["properties"]["imalys:provenance"]
    assert sorted(prov["archive_items"]) == sorted(s.path.name[:-4] for s in sc)
    assert "bestof" in prov["chain_text"]
    kinds = [step["kind"] for step in prov["lineage"]]
    assert kinds[:2] == ["reduce", "compile"] and kinds.count("import") == len(sc)
    imports = [step["command"] for step in prov["lineage"] if step["kind"] == "import"]
    assert all(c["command"] == "import" and c["parameters"]["factor"] == "2.75e-5" for c in imports)
    assert side["properties"]["imalys:qualities"] == pytest.approx(
        [json.loads((chain_run / "wd" / n / f"{n}.json").read_text())["properties"]["imalys:quality"]
         for n in side["properties"]["imalys:inputs"] and [f"LC08_193026_{s.spec.acquired:%Y%m%d}" for s in sc]])


def test_quality_threshold_just_below_and_above(scenes, frame_wgs84, tmp_path):
    root, sc = scenes
    bounds = expected_window(sc[2], frame_wgs84)
    _, q = reference_scene(sc[2], bounds)
    kept = []
    for delta in (-1e-4, 1e-4):
        wd = tmp_path / f"wd{delta}"
        chain = _chain(tmp_path, f"""home
	directory = {wd}
	clear = true
import
	select = {sc[2].path}
	frame = {frame_wgs84}
	quality = {q + delta:.6f}
	bands = _B4
	factor = 2.75e-5
	offset = -0.2
""")
        run_chain(load_chain(chain))
        kept.append((wd / f"LC08_193026_{sc[2].spec.acquired:%Y%m%d}").exists())
    assert kept == [True, False]


def test_reflectance_and_mask_on_known_pixels(scenes, frame_wgs84, tmp_path):
    """value = DN·factor + offset exactly, NaN exactly where the QA bits say disturbed or fill."""
    from imalys_stac.products import cube_of
    from imalys_stac.workdir import WorkDir

    _, sc = scenes
    s = sc[2]
    chain = _chain(tmp_path, f"""home
	directory = {tmp_path}/wd
	clear = true
import
	select = {s.path}
	frame = {frame_wgs84}
	bands = _B5
	factor = 3e-5
	offset = -0.1
""")
    run_chain(load_chain(chain))
    wd = WorkDir(tmp_path / "wd")
    name = f"LC08_193026_{s.spec.acquired:%Y%m%d}"
    got = cube_of(wd, wd.load(name)).isel(time=0, band=0).values
    bounds = expected_window(s, frame_wgs84)
    pid = s.path.name[:-4]
    with rasterio.open(f"/vsitar/{s.path}/{pid}_SR_B5.TIF") as ds:
        dn = ds.read(1, window=from_bounds(*bounds, transform=ds.transform)).astype(np.float64)
    with rasterio.open(f"/vsitar/{s.path}/{pid}_QA_PIXEL.TIF") as ds:
        qa = ds.read(1, window=from_bounds(*bounds, transform=ds.transform))
    bad = ((qa & 1) != 0) | ((qa & (2 | 4 | 8 | 16)) != 0) | (dn == 0)
    assert bad.any() and (~bad).any()
    np.testing.assert_array_equal(np.isnan(got), bad)
    np.testing.assert_allclose(got[~bad], (dn * 3e-5 - 0.1)[~bad], rtol=1e-6)


def test_working_directory_is_a_valid_stac_catalog(chain_run):
    import pystac

    from tests.stac_validate import validate_tree

    cat = pystac.Catalog.from_file(str(chain_run / "wd" / "catalog.json"))
    ids = {i.id for i in cat.get_items()}
    assert {"compile", "bestof"} <= ids and any(i.startswith("LC08_193026_") for i in ids)
    checked, errors = validate_tree(chain_run / "wd")
    assert errors == []
    assert checked >= len(ids) + 1


def test_two_exports_of_one_name_keep_their_own_items(chain_run, tmp_path):
    wd = chain_run / "wd"
    chain = _chain(tmp_path, f"home\n\tdirectory = {wd}\nexport\n\tselect = bestof\n\ttarget = {tmp_path}/o.tif\n"
                             f"export\n\tselect = bestof\n\ttarget = {tmp_path}/o.png\n")
    run_chain(load_chain(chain))
    tif = json.loads((tmp_path / "o.json").read_text())
    png = json.loads((tmp_path / "o.png.json").read_text())
    assert tif["assets"]["data"]["href"] == "./o.tif" and png["assets"]["data"]["href"] == "./o.png"
    # the roles and band fields of each format's registry entry: a PNG is its own thumbnail, no bands
    assert tif["assets"]["data"]["roles"] == ["data"] and png["assets"]["data"]["roles"] == ["data", "thumbnail"]
    assert "eo:bands" not in png["assets"]["data"] and "raster:bands" not in png["assets"]["data"]
