"""The synthetic archive generator: structure as USGS ships it, truth as drawn, determinism."""
from __future__ import annotations

import hashlib
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject
from rio_cogeo.cogeo import cog_validate

from imalys_stac.providers.landsat import qa as Q
from imalys_stac.providers.landsat.qa import MaskRule
from imalys_stac.synth import Landscape, SceneSpec, write_frame, write_landsat_archive, write_tutorial_collection, wrs_centre
from imalys_stac.synth.scene import encode_qa

LAND = Landscape(seed=7)


def parse_mtl(text: str) -> dict[str, dict[str, str]]:
    """Tiny independent ODL reader: {group: {key: raw value without quotes}} (one nesting level)."""
    out: dict[str, dict[str, str]] = {}
    group = None
    for line in text.splitlines():
        m = re.match(r"^\s*(\w+) = (.*)$", line)
        if not m:
            assert line.strip() == "END", line
            continue
        k, v = m.groups()
        if k == "GROUP" and v != "LANDSAT_METADATA_FILE":
            group = v
            out[group] = {}
        elif k == "END_GROUP":
            group = None
        elif group:
            out[group][k] = v.strip('"')
    return out


def member(scene, suffix: str) -> str:
    return f"/vsitar/{scene.path}/{scene.path.name[:-4]}_{suffix}"


def read(scene, suffix: str) -> np.ndarray:
    with rasterio.open(member(scene, suffix + ".TIF")) as ds:
        return ds.read(1)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    a = write_landsat_archive(root, SceneSpec("LC08", 193, 26, date(2022, 5, 15), size=128, cloud_cover=0.3,
                                              seed=1), LAND)
    b = write_landsat_archive(root, SceneSpec("LC08", 193, 27, date(2022, 5, 15), size=128, cloud_cover=0.2,
                                              seed=2), LAND)
    c = write_landsat_archive(root, SceneSpec("LC08", 192, 26, date(2022, 5, 24), size=128, cloud_cover=0.1,
                                              seed=3), LAND)
    return a, b, c


def test_members_named_as_usgs(scenes):
    a = scenes[0]
    pid = "LC08_L2SP_193026_20220515_20220519_02_T1"
    assert a.path.name == pid + ".tar"
    with tarfile.open(a.path) as tar:
        names = tar.getnames()
    expected = {f"{pid}_SR_B{i}.TIF" for i in range(1, 8)} | {
        f"{pid}_{s}" for s in ("ST_B10.TIF", "QA_PIXEL.TIF", "QA_RADSAT.TIF", "SR_QA_AEROSOL.TIF", "MTL.txt",
                               "MTL.xml", "MTL.json", "ANG.txt")}
    assert set(names) == expected and all("/" not in n for n in names)
    assert a.bands[0] == ("SR_B1", "coastal") and a.bands[4] == ("SR_B5", "nir08")


def test_rasters_are_tiled_cogs_on_the_usgs_grid(scenes):
    a = scenes[0]
    for suffix, nodata, dtype in (("SR_B4", 0, "uint16"), ("ST_B10", 0, "uint16"), ("QA_PIXEL", None, "uint16"),
                                  ("SR_QA_AEROSOL", None, "uint8")):
        href = member(a, suffix + ".TIF")
        with rasterio.open(href) as ds:
            assert ds.crs.to_epsg() == 32632 and ds.dtypes[0] == dtype and ds.nodata == nodata
            assert ds.transform == a.transform and ds.shape == a.shape
            assert ds.profile["tiled"] and ds.compression.name.lower() == "deflate"
            assert ds.tags()["AREA_OR_POINT"] == "Point"
            # USGS grid: pixel centres on 30 m multiples, edges on odd multiples of 15 m
            assert (ds.transform.c + 15) % 30 == 0 and (ds.transform.f - 15) % 30 == 0
        valid, errors, _ = cog_validate(href, quiet=True)
        assert valid, errors


def test_large_scene_has_overviews(tmp_path):
    s = write_landsat_archive(tmp_path, SceneSpec(size=600, cloud_cover=0.1, seed=5), LAND)
    with rasterio.open(member(s, "SR_B4.TIF")) as ds:
        assert ds.overviews(1) and ds.block_shapes[0] == (256, 256)
    assert cog_validate(member(s, "QA_PIXEL.TIF"), quiet=True)[0]


def test_mtl_describes_the_raster(scenes):
    a = scenes[0]
    with tarfile.open(a.path) as tar:
        pid = a.path.name[:-4]
        txt = tar.extractfile(f"{pid}_MTL.txt").read().decode()
        js = json.loads(tar.extractfile(f"{pid}_MTL.json").read())
        xml = ET.fromstring(tar.extractfile(f"{pid}_MTL.xml").read())
    mtl = parse_mtl(txt)
    pc, ia, pa = mtl["PRODUCT_CONTENTS"], mtl["IMAGE_ATTRIBUTES"], mtl["PROJECTION_ATTRIBUTES"]
    assert pc["LANDSAT_PRODUCT_ID"] == pid and pc["PROCESSING_LEVEL"] == "L2SP" and pc["COLLECTION_CATEGORY"] == "T1"
    assert pc["FILE_NAME_BAND_4"] == f"{pid}_SR_B4.TIF" and pc["FILE_NAME_BAND_ST_B10"] == f"{pid}_ST_B10.TIF"
    assert ia["SPACECRAFT_ID"] == "LANDSAT_8" and ia["WRS_PATH"] == "193" and ia["DATE_ACQUIRED"] == "2022-05-15"
    assert 0 < float(ia["SUN_ELEVATION"]) < 90 and 0 <= float(ia["SUN_AZIMUTH"]) < 360
    # CLOUD_COVER is the percentage of cloud pixels actually drawn in the swath
    t = a.truth
    assert float(ia["CLOUD_COVER"]) == pytest.approx(100 * t["cloud"].sum() / (~t["fill"]).sum(), abs=0.005)
    assert float(ia["CLOUD_COVER"]) == pytest.approx(30.0, abs=0.05)
    # corners: USGS gives the corner pixel centres, half a pixel inside the raster bounds
    left, bottom, right, top = a.bounds
    assert float(pa["CORNER_UL_PROJECTION_X_PRODUCT"]) == left + 15
    assert float(pa["CORNER_UL_PROJECTION_Y_PRODUCT"]) == top - 15
    assert float(pa["CORNER_LR_PROJECTION_X_PRODUCT"]) == right - 15
    assert float(pa["CORNER_LR_PROJECTION_Y_PRODUCT"]) == bottom + 15
    assert int(pa["REFLECTIVE_LINES"]) == a.shape[0] and pa["UTM_ZONE"] == "32"
    sr = mtl["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"]
    assert float(sr["REFLECTANCE_MULT_BAND_4"]) == 2.75e-5 and float(sr["REFLECTANCE_ADD_BAND_4"]) == -0.2
    st = mtl["LEVEL2_SURFACE_TEMPERATURE_PARAMETERS"]
    assert float(st["TEMPERATURE_MULT_BAND_ST_B10"]) == 0.00341802 and float(st["TEMPERATURE_ADD_BAND_ST_B10"]) == 149.0
    # the three renderings carry the same tree and values (JSON: all strings, as USGS)
    for group, entries in mtl.items():
        assert js["LANDSAT_METADATA_FILE"][group] == entries
        assert {e.tag: e.text for e in xml.find(group)} == entries


def test_qa_decodes_to_the_drawn_masks(scenes):
    for s in scenes:
        qa, t = read(s, "QA_PIXEL"), s.truth
        assert np.array_equal(qa, t["qa"])
        flags, conf = MaskRule("flags"), MaskRule("confidence")
        assert np.array_equal(flags.fill(qa), t["fill"])
        assert np.array_equal(flags.disturbed(qa), (t["cloud"] | t["dilated_cloud"] | t["shadow"] | t["cirrus"])
                              & ~t["fill"])
        assert np.array_equal(conf.disturbed(qa), (t["cloud"] | t["shadow"] | t["cirrus"]) & ~t["fill"])
        assert t["cloud"].any() and t["shadow"].any() and t["dilated_cloud"].any()
        assert not (t["shadow"] & t["cloud"]).any()
        assert (qa[t["fill"]] == 1).all()
        # every non-fill pixel agrees with the scalar reference encoder
        for v in np.unique(qa[~t["fill"]]):
            i = np.argwhere((qa == v) & ~t["fill"])[0]
            ref = Q.encode(dilated_cloud=t["dilated_cloud"][tuple(i)], cirrus=t["cirrus"][tuple(i)],
                           cloud=t["cloud"][tuple(i)], cloud_shadow=t["shadow"][tuple(i)], snow=t["snow"][tuple(i)],
                           water=t["water"][tuple(i)],
                           cloud_conf=3 if t["cloud"][tuple(i)] else 2 if t["dilated_cloud"][tuple(i)] else 1,
                           shadow_conf=3 if t["shadow"][tuple(i)] else 1,
                           snow_conf=3 if t["snow"][tuple(i)] else 1, cirrus_conf=3 if t["cirrus"][tuple(i)] else 1)
            assert v == ref


def test_real_usgs_codes():
    n = 5
    z = np.zeros(n, bool)
    m = {k: z.copy() for k in ("fill", "cloud", "dilated_cloud", "shadow", "cirrus", "snow", "water")}
    m["water"][1] = m["cloud"][2] = m["shadow"][3] = m["fill"][4] = True
    got = encode_qa({k: v[None] for k, v in m.items()}, landsat8=True)[0]
    assert list(got) == [21824, 21952, 22280, 23888, 1]  # clear land, clear water, cloud, shadow, fill
    assert encode_qa({k: v[None] for k, v in m.items()}, landsat8=False)[0][0] == 5440  # TM clear land


def test_reflectance_and_temperature_decode_to_truth(scenes):
    a = scenes[0]
    t = a.truth
    clear = ~t["fill"] & ~t["cloud"] & ~t["dilated_cloud"] & ~t["shadow"] & ~t["cirrus"] & ~t["snow"]
    assert clear.sum() > 1000
    for i, (suffix, _) in enumerate(a.bands):
        dn = read(a, suffix)
        assert (dn[t["fill"]] == 0).all() and (dn[~t["fill"]] > 0).all()
        r = dn * 2.75e-5 - 0.2
        assert np.abs(r[clear] - t["reflectance"][i][clear]).max() <= 1.4e-5
        assert 0.38 <= r[t["cloud"]].min() and r[t["cloud"]].max() <= 0.81
    k = read(a, "ST_B10") * 0.00341802 + 149.0
    assert np.abs(k[clear] - t["temperature"][clear]).max() < 0.002
    assert k[t["cloud"]].mean() < k[clear].mean() - 20
    # plausible spectra: water dark in NIR, vegetation bright in NIR and dark in red
    refl = t["reflectance"]
    water = LAND.water(*np.meshgrid(*_centres(a)), a.crs)
    assert water.any() and np.median(refl[4][water]) < 0.05  # edge pixels are mixed
    veg = (refl[4] > 0.3) & (refl[3] < 0.06)
    assert veg.mean() > 0.2


def test_same_ground_same_reflectance_rows_26_27(scenes):
    a, b, _ = scenes
    assert a.crs == b.crs
    # the grids are aligned: integer pixel offset between the two
    dc = (b.transform.c - a.transform.c) / 30
    dr = (a.transform.f - b.transform.f) / 30
    assert dc == int(dc) and dr == int(dr)
    dc, dr = int(dc), int(dr)
    ra, rb = a.truth["reflectance"], b.truth["reflectance"]
    h, w = a.shape
    ya = slice(max(dr, 0), min(h, h + dr)); yb = slice(max(-dr, 0), min(h, h - dr))
    xa = slice(max(dc, 0), min(w, w + dc)); xb = slice(max(-dc, 0), min(w, w - dc))
    assert ra[:, ya, xa].shape[1] > 0.15 * h  # ~25 % overlap
    assert np.array_equal(ra[:, ya, xa], rb[:, yb, xb])
    # and the DNs agree where both are clear
    clear_a = MaskRule().valid(a.truth["qa"])[ya, xa]
    clear_b = MaskRule().valid(b.truth["qa"])[yb, xb]
    both = clear_a & clear_b
    assert both.sum() > 100
    assert np.array_equal(read(a, "SR_B5")[ya, xa][both], read(b, "SR_B5")[yb, xb][both])


def test_same_ground_across_zones(scenes):
    a, _, c = scenes
    assert a.crs.to_epsg() == 32632 and c.crs.to_epsg() == 32633
    dst = np.full(a.shape, np.nan, np.float32)
    src = c.truth["reflectance"][4].copy()
    src[c.truth["fill"]] = np.nan
    reproject(src, dst, src_transform=c.transform, src_crs=c.crs, dst_transform=a.transform, dst_crs=a.crs,
              resampling=Resampling.bilinear, src_nodata=np.nan, dst_nodata=np.nan)
    ok = ~np.isnan(dst) & ~a.truth["fill"]
    assert ok.sum() > 0.1 * ok.size
    diff = np.abs(dst[ok] - a.truth["reflectance"][4][ok])
    assert np.median(diff) < 0.02 and np.mean(diff) < 0.03
    # direct evaluation at the same ground point agrees exactly, whatever the CRS
    from pyproj import Transformer
    # off any cell edge (a round trip moves points by ~1e-9 m; an edge point may flip cell)
    xs, ys = np.meshgrid(np.linspace(700007.3, 705007.3, 7), np.linspace(5.33e6 + 11.1, 5.335e6 + 11.1, 5))
    x33, y33 = Transformer.from_crs(32632, 32633, always_xy=True).transform(xs, ys)
    v32 = LAND.reflectance(xs, ys, "EPSG:32632", ["red", "nir08"])
    v33 = LAND.reflectance(x33, y33, 32633, ["red", "nir08"])
    assert np.allclose(v32, v33, atol=1e-5)


def test_grid_and_point_evaluation_agree():
    xs = 690000 + np.arange(50) * 30.0
    ys = 5340000 - np.arange(40) * 30.0
    gx, gy = np.meshgrid(xs, ys)
    assert np.array_equal(LAND.evaluate_grid(xs, ys, "EPSG:32632"), LAND.evaluate(gx, gy, "EPSG:32632"))
    with pytest.raises(ValueError, match="accepted"):
        LAND.reflectance(gx, gy, "EPSG:32632", ["ultraviolet"])


def _digest(path: Path) -> dict[str, str]:
    with tarfile.open(path) as tar:
        return {m.name: hashlib.sha256(tar.extractfile(m).read()).hexdigest() for m in tar.getmembers()}


def test_deterministic_from_seed(tmp_path):
    spec = SceneSpec(size=64, cloud_cover=0.25, seed=11)
    a = write_landsat_archive(tmp_path / "a", spec)
    b = write_landsat_archive(tmp_path / "b", spec)
    c = write_landsat_archive(tmp_path / "c", SceneSpec(size=64, cloud_cover=0.25, seed=12))
    assert _digest(a.path) == _digest(b.path)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert not np.array_equal(a.truth["cloud"], c.truth["cloud"])


def test_landsat5_and_7_band_numbering(tmp_path):
    s5 = write_landsat_archive(tmp_path, SceneSpec("LT05", 193, 26, date(2005, 6, 1), size=64, seed=1), LAND)
    pid = s5.path.name[:-4]
    with tarfile.open(s5.path) as tar:
        names = {n[len(pid) + 1:] for n in tar.getnames()}
        mtl = parse_mtl(tar.extractfile(f"{pid}_MTL.txt").read().decode())
    assert {"SR_B1.TIF", "SR_B5.TIF", "SR_B7.TIF", "ST_B6.TIF", "SR_ATMOS_OPACITY.TIF", "SR_CLOUD_QA.TIF"} <= names
    assert not {"SR_B6.TIF", "ST_B10.TIF", "SR_QA_AEROSOL.TIF", "SR_B8.TIF"} & names
    assert s5.bands == [("SR_B1", "blue"), ("SR_B2", "green"), ("SR_B3", "red"), ("SR_B4", "nir08"),
                        ("SR_B5", "swir16"), ("SR_B7", "swir22")]
    assert mtl["PRODUCT_CONTENTS"]["FILE_NAME_BAND_ST_B6"] == f"{pid}_ST_B6.TIF"
    assert mtl["IMAGE_ATTRIBUTES"]["SPACECRAFT_ID"] == "LANDSAT_5"
    qa = read(s5, "QA_PIXEL")
    assert ((qa >> 14) == 0).all() and not (qa & 4).any()  # no cirrus on TM
    # same ground as an OLI scene: TM band 3 is red
    assert np.array_equal(s5.truth["reflectance"][2], LAND.reflectance_grid(
        *_centres(s5), s5.crs, ["red"])[0])
    # Landsat 7 after the SLC failure has striped gaps as fill inside the swath
    s7 = write_landsat_archive(tmp_path, SceneSpec("LE07", 193, 26, date(2005, 6, 1), size=128, seed=1), LAND)
    s7b = write_landsat_archive(tmp_path, SceneSpec("LE07", 193, 26, date(2001, 6, 1), size=128, seed=1), LAND)
    assert s7.truth["fill"].sum() > s7b.truth["fill"].sum() * 1.1


def _centres(s) -> tuple[np.ndarray, np.ndarray]:
    t = s.transform
    return t.c + t.a * (np.arange(s.shape[1]) + 0.5), t.f + t.e * (np.arange(s.shape[0]) + 0.5)


@pytest.mark.parametrize("size", [64, 256, 1024, 4096, 8192])
def test_wrs_placement(size):
    lon, lat = wrs_centre(193, 26, size, 30)
    assert 10.0 < lon < 12.0 and 47.9 < lat < 48.5
    assert wrs_centre(192, 26, size, 30)[0] > 12.0  # next path east lies in UTM 33
    lon27, lat27 = wrs_centre(193, 27, size, 30)
    assert lat27 < lat and lon27 < lon  # along the descending track: south, a little west


def test_tutorial_collection(tmp_path):
    out = write_tutorial_collection(tmp_path, size=64, seed=0)
    scenes = out["archives"]
    assert len(scenes) == 26 and len(list((tmp_path / "archives").glob("*.tar"))) == 26
    assert (tmp_path / "results").is_dir() and not any((tmp_path / "results").iterdir())
    for ext in ("shp", "gpkg", "geojson"):
        assert (tmp_path / "frames" / f"bounding-box.{ext}").exists()
    assert (tmp_path / "frames" / "bounding-box-utm.gpkg").exists()
    assert out["frame"] == tmp_path / "frames" / "bounding-box.shp"
    names = {s.path.name[:25] for s in scenes}
    assert "LC08_L2SP_193026_20220515" in names and "LC08_L2SP_193027_20221022" in names
    assert any(s.spec.sensor == "LC09" for s in scenes)
    assert {s.crs.to_epsg() for s in scenes if s.spec.path == 192} == {32633}
    assert sum(s.spec.cloud_cover >= 0.6 for s in scenes if s.spec.row == 26) in (1, 2)
    import geopandas as gpd
    frame = gpd.read_file(out["frame"])
    assert frame.crs.to_epsg() == 4326 and len(frame) == 1


def test_write_frame_rejects_unknown_extension(tmp_path):
    from shapely.geometry import box
    with pytest.raises(ValueError, match=r"\.shp"):
        write_frame(tmp_path / "f.kml", box(0, 0, 1, 1), "EPSG:4326")
