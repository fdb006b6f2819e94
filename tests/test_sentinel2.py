"""Sentinel-2 L2A SAFE zips: synthetic product, in-place reader, STAC item, stackstac cube, catalog."""
from __future__ import annotations

import json
import zipfile
from datetime import date

import numpy as np
import pystac
import pytest
import rasterio
from shapely.geometry import shape

from imalys_stac.archives import ArchiveError
from imalys_stac.providers.sentinel2.archive import (
    SCL_CLASSES,
    SCL_DISTURBED,
    SCL_FILL,
    Sentinel2Metadata,
    scl_disturbed,
    scl_fill,
    scl_valid,
)
from imalys_stac.registry import open_archive
from imalys_stac.stac import build_catalog, item_from_archive
from imalys_stac.stac.items import item_dict
from imalys_stac.synth import write_sentinel2_archive
from imalys_stac.synth.sentinel2 import mgrs_tile_origin
from tests.realdata import tar_real_scene
from tests.stac_validate import errors, validate_tree

SIZE = 96  # 10 m pixels: 48 at 20 m, 16 at 60 m


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("s2")
    return write_sentinel2_archive(folder, tile="32UPU", acquired=date(2022, 6, 15), size=SIZE,
                                   cloud_cover=0.2, seed=3, nodata=0.2, snow=0.02)


@pytest.fixture(scope="module")
def meta(scene):
    return open_archive(scene.path)


def _standalone(item: pystac.Item) -> dict:
    d = item.to_dict(include_self_link=False)
    d.pop("collection")  # no collection link to go with the field
    return d


def test_mgrs_tile_origin():
    assert mgrs_tile_origin("32UPU") == (32632, 600000.0, 5400000.0)  # Munich tile
    assert mgrs_tile_origin("33UUP") == (32633, 300000.0, 5400000.0)
    assert mgrs_tile_origin("31UFU") == (32631, 600000.0, 5900000.0)  # Amsterdam
    assert mgrs_tile_origin("18NXF")[0] == 32618
    assert mgrs_tile_origin("56HLH")[0] == 32756  # southern hemisphere (Sydney)
    with pytest.raises(ValueError, match="column letter"):
        mgrs_tile_origin("32UAU")


def test_zip_layout_as_shipped(scene):
    name = scene.path.name
    assert name.startswith("S2A_MSIL2A_20220615T") and "_N0509_R065_T32UPU_" in name and name.endswith(".zip")
    names = zipfile.ZipFile(scene.path).namelist()
    safe = f"{scene.product_id}.SAFE"
    assert f"{safe}/MTD_MSIL2A.xml" in names
    tl = [n for n in names if n.endswith("/MTD_TL.xml")]
    assert len(tl) == 1 and tl[0].startswith(f"{safe}/GRANULE/L2A_T32UPU_A")
    for band, res in (("B02", 10), ("B08", 10), ("B05", 20), ("B8A", 20), ("SCL", 20), ("B01", 60), ("B09", 60)):
        member = scene.members[f"{band}_{res}m"]
        assert member in names and f"/IMG_DATA/R{res}m/T32UPU_" in member
        assert member.endswith(f"_{band}_{res}m.jp2")


def test_members_open_through_vsizip(scene):
    with rasterio.open(scene.href("B04")) as ds:
        assert ds.driver == "JP2OpenJPEG" and ds.crs.to_epsg() == 32632
        assert ds.shape == (SIZE, SIZE) and ds.transform == scene.transform
        dn = ds.read(1)
    with rasterio.open(scene.href("SCL")) as ds:
        assert ds.shape == (SIZE // 2, SIZE // 2) and ds.res == (20.0, 20.0)
        np.testing.assert_array_equal(ds.read(1), scene.truth["scl"])
    # DN = (reflectance + 0.1) * 10000 (baseline >= 04.00), 0 outside the swath, 65535 saturated
    fill10 = np.repeat(np.repeat(scene.truth["fill"], 2, 0), 2, 1)
    sat10 = np.repeat(np.repeat(scene.truth["saturated"], 2, 0), 2, 1)
    assert (dn[fill10] == 0).all() and (dn[sat10] == 65535).all()
    ok = ~fill10 & ~sat10
    np.testing.assert_allclose(dn[ok] * 1e-4 - 0.1, scene.truth["observed"]["B04"][ok], atol=0.6e-4)
    # where nothing disturbs the ground, the observed reflectance is the landscape's
    clear = np.repeat(np.repeat(np.isin(scene.truth["scl"], [4, 5, 6]), 2, 0), 2, 1)
    np.testing.assert_allclose(dn[clear] * 1e-4 - 0.1, scene.truth["reflectance"]["B04"][clear], atol=0.6e-4)


def test_scl_classes_drawn(scene):
    scl = scene.truth["scl"]
    present = set(np.unique(scl).tolist())
    assert {0, 1, 3, 4, 5, 7, 8, 9, 10, 11} <= present, present
    assert (scl[scene.truth["fill"]] == 0).all() and not (scl[~scene.truth["fill"]] == 0).any()
    valid = ~scene.truth["fill"]
    assert np.isin(scl[valid], [8, 9]).sum() == round(0.2 * valid.sum())  # exact cloud fraction
    # 60 m SCL is the 20 m one sampled at the 60 m pixel centres
    np.testing.assert_array_equal(scene.truth["scl60"], scl[1::3, 1::3])


def test_metadata_parsed(scene, meta):
    assert isinstance(meta, Sentinel2Metadata)
    assert meta.product_id == scene.product_id
    assert (meta.platform, meta.instruments) == ("sentinel-2a", ("msi",))
    assert not hasattr(meta, "path") and not hasattr(meta, "sensor")  # no stand-in Landsat fields
    assert meta.mgrs_tile == "32UPU" and meta.grid_code == "MGRS-32UPU"
    assert meta.relative_orbit == 65 and meta.orbit_state == "descending" and meta.absolute_orbit > 30000
    assert meta.processing_baseline == "05.09" and meta.epsg == 32632
    # dated by the datatake's sensing start (PRODUCT_START_TIME, as stactools-sentinel2 and the
    # product name), not the granule's SENSING_TIME a few minutes later
    assert meta.datetime.strftime("%Y%m%dT%H%M%S") == scene.product_id.split("_")[2]
    assert abs((scene.datetime - meta.datetime).total_seconds()) < 15 * 60
    assert meta.cloud_cover == pytest.approx(scene.cloud_cover, abs=1e-4)
    assert meta.sun_elevation == pytest.approx(90 - scene.sun_zenith, abs=1e-6)
    # native resolutions chosen although resampled copies are in the zip
    res = {b: meta.grids[b].transform[0] for b in meta.members if b in meta.grids}
    assert res == {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
                   "B8A": 20, "B09": 60, "B11": 20, "B12": 20, "SCL": 20}
    assert meta.grids["B04"].transform == tuple(scene.transform)[:6]
    red = next(b for b in meta.bands if b.suffix == "B04")
    assert (red.scale, red.offset, red.nodata) == (1e-4, -0.1, 0)
    # footprint: the EXT_POS_LIST, i.e. the window east of the swath edge
    assert meta.footprint.equals_exact(scene.footprint, 1e-9)
    assert 0.7 < meta.footprint.area / meta.footprint.envelope.area < 0.95
    assert meta.quality["s2:nodata_pixel_percentage"] == pytest.approx(20.0, abs=1.0)


def test_item_validates_and_describes(scene, meta):
    item = item_from_archive(scene.path)
    d = _standalone(item)
    assert errors(d) == []
    assert item.id == scene.product_id and item.collection_id == "sentinel-2-l2a"
    p = d["properties"]
    assert p["constellation"] == "sentinel-2" and p["platform"] == "sentinel-2a" and p["instruments"] == ["msi"]
    assert p["s2:mgrs_tile"] == "32UPU" and p["grid:code"] == "MGRS-32UPU" and p["sat:relative_orbit"] == 65
    assert p["proj:epsg"] == 32632 and p["proj:code"] == "EPSG:32632" and p["proj:shape"] == [SIZE, SIZE]
    assert p["s2:processing_baseline"] == "05.09" and p["gsd"] == 10.0
    assert set(d["assets"]) == {"coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir",
                                "nir08", "nir09", "swir16", "swir22", "scl", "product-metadata",
                                "granule-metadata"}
    red, nir08, scl = d["assets"]["red"], d["assets"]["nir08"], d["assets"]["scl"]
    assert red["href"].startswith("/vsizip//") and red["href"].endswith("_B04_10m.jp2")
    assert red["type"] == "image/jp2"
    assert red["eo:bands"] == [{"name": "B04", "common_name": "red", "center_wavelength": 0.665,
                                "full_width_half_max": 0.038}]
    assert red["raster:bands"][0] == {"data_type": "uint16", "spatial_resolution": 10.0, "nodata": 0,
                                      "scale": 1e-4, "offset": -0.1}
    assert d["assets"]["nir"]["eo:bands"][0]["name"] == "B08"
    assert nir08["eo:bands"][0]["name"] == "B8A" and nir08["proj:shape"] == [SIZE // 2, SIZE // 2]
    assert nir08["proj:transform"][0] == 20.0 and nir08["proj:epsg"] == 32632
    assert d["assets"]["coastal"]["proj:shape"] == [SIZE // 6, SIZE // 6]
    assert "data-mask" in scl["roles"] and "eo:bands" not in scl
    assert [c["value"] for c in scl["classification:classes"]] == list(range(12))
    assert scl["raster:bands"][0]["nodata"] == 0 and "scale" not in scl["raster:bands"][0]
    with rasterio.open(red["href"]) as ds:  # hrefs are GDAL paths
        assert ds.shape == (SIZE, SIZE)


def test_baseline_before_04_has_no_offset(tmp_path):
    s = write_sentinel2_archive(tmp_path, size=48, baseline="03.01", cloud_cover=0.1, seed=5)
    d = item_dict(open_archive(s.path))
    assert d["assets"]["red"]["raster:bands"][0]["offset"] == 0.0
    assert d["id"].split("_")[3] == "N0301"
    with rasterio.open(s.href("B04")) as ds:
        dn = ds.read(1)
    ok = (dn > 0) & (dn < 65535)  # not fill, not saturated
    np.testing.assert_allclose(dn[ok] * 1e-4, s.truth["observed"]["B04"][ok], atol=0.6e-4)


def test_stackstac_cube_from_metadata(scene, monkeypatch):
    stackstac = pytest.importorskip("stackstac")
    item = item_from_archive(scene.path)
    opened = []
    real_open = rasterio.open
    monkeypatch.setattr(rasterio, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    cube = stackstac.stack([item], assets=["red", "scl"], resolution=20, snap_bounds=False, dtype="float64")
    assert opened == []  # graph built from metadata alone
    assert cube.attrs["crs"].lower() == "epsg:32632"
    n20 = SIZE // 2
    assert cube.shape == (1, 2, n20, n20)
    t = scene.transforms[20]
    assert float(cube.x[0]) == pytest.approx(t.c) and float(cube.y[0]) == pytest.approx(t.f)
    assert float(cube.x[1] - cube.x[0]) == pytest.approx(20.0)
    monkeypatch.setattr(rasterio, "open", real_open)
    values = cube.isel(time=0).compute()
    # red: stackstac applies raster:bands scale 1e-4 and offset -0.1; nearest resampling picks one
    # of the four 10 m pixels under each 20 m pixel
    with rasterio.open(scene.href("B04")) as ds:
        assert ds.nodata is None  # as in real products: JPEG 2000 files carry no nodata value
        dn = ds.read(1).astype(np.float64)
    blocks = (dn * 1e-4 - 0.1).reshape(n20, 2, n20, 2).transpose(0, 2, 1, 3).reshape(n20, n20, 4)
    red = values.sel(band="red").values
    hit = np.isclose(blocks, red[..., None], rtol=0, atol=1e-12).any(axis=-1)
    assert hit.all()
    # ... so stackstac does NOT mask DN 0 (it only masks the file's own nodata): fill pixels read
    # as the offset, -0.1, and SCL 0 stays 0. The cube must take fill from SCL (scl_fill).
    fill = scene.truth["fill"]
    assert (red[fill] == pytest.approx(-0.1)) and not np.isnan(red).any()
    scl = values.sel(band="scl").values
    np.testing.assert_array_equal(scl.astype(np.uint8), scene.truth["scl"])
    # the masking rule: fill and disturbed from SCL
    np.testing.assert_array_equal(scl_fill(scl), fill)
    t_ = scene.truth
    disturbed = t_["saturated"] | t_["shadow"] | t_["cloud_medium"] | t_["cloud_high"] | t_["cirrus"]
    np.testing.assert_array_equal(scl_disturbed(scl), disturbed)
    np.testing.assert_array_equal(scl_valid(scl), ~fill & ~disturbed)
    assert SCL_FILL == {0} and SCL_DISTURBED == {1, 3, 8, 9, 10}
    assert [v for v, _, _ in SCL_CLASSES] == list(range(12))


def test_catalog_with_landsat_and_sentinel2(scene, tmp_path):
    folder = tmp_path / "archives"
    tar_real_scene(folder)
    zip_copy = folder / scene.path.name
    zip_copy.write_bytes(scene.path.read_bytes())
    rep = build_catalog([str(folder / "*.tar"), str(folder / "*.zip")], tmp_path / "cat", progress=False)
    assert len(rep.added) == 2 and not rep.skipped
    n, problems = validate_tree(tmp_path / "cat")
    assert n == 5 and problems == []  # catalog + 2 collections + 2 items
    cat = pystac.Catalog.from_file(str(tmp_path / "cat" / "catalog.json"))
    assert sorted(c.id for c in cat.get_children()) == ["landsat-c2-l2", "sentinel-2-l2a"]
    col = json.loads((tmp_path / "cat" / "sentinel-2-l2a" / "collection.json").read_text())
    assert col["summaries"]["platform"] == ["sentinel-2a"]
    item = json.loads((tmp_path / "cat" / "sentinel-2-l2a" / scene.product_id / f"{scene.product_id}.json").read_text())
    assert shape(item["geometry"]).equals_exact(scene.footprint, 1e-9)


def _rezip(src, dst, drop=(), edit=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if any(info.filename.endswith(d) for d in drop):
                continue
            data = zin.read(info.filename)
            if edit and info.filename.endswith(edit[0]):
                data = edit[1](data)
            zout.writestr(info, data)
    return dst


def test_bad_archives(scene, tmp_path):
    name = scene.path.name
    trunc = tmp_path / name
    trunc.write_bytes(scene.path.read_bytes()[: scene.path.stat().st_size // 2])
    with pytest.raises(ArchiveError, match="not a readable zip archive"):
        open_archive(trunc)
    foreign = tmp_path / "holiday.zip"
    with zipfile.ZipFile(foreign, "w") as z:
        z.writestr("photo.jpg", b"\xff\xd8 not really")
    with pytest.raises(ArchiveError, match="not a Sentinel-2 L2A SAFE zip"):
        open_archive(foreign)
    l1c = _rezip(scene.path, tmp_path / name.replace("MSIL2A", "MSIL1C"), drop=("MTD_MSIL2A.xml",))
    with zipfile.ZipFile(l1c, "a") as z:
        z.writestr(f"{scene.product_id}.SAFE/MTD_MSIL1C.xml", "<x/>")
    with pytest.raises(ArchiveError, match="Level-1C"):
        open_archive(l1c)
    no_scl = _rezip(scene.path, tmp_path / "noscl.zip", drop=("_SCL_20m.jp2", "_SCL_60m.jp2"))
    with pytest.raises(ArchiveError, match="not a complete L2A product"):
        open_archive(no_scl)
    bad_xml = _rezip(scene.path, tmp_path / "badxml.zip", edit=("MTD_MSIL2A.xml", lambda b: b[:200]))
    with pytest.raises(ArchiveError, match="not well-formed XML"):
        open_archive(bad_xml)
    # the catalog skips them with the reason and keeps the good one
    (tmp_path / "good").mkdir()
    good = tmp_path / "good" / name
    good.write_bytes(scene.path.read_bytes())
    rep = build_catalog([str(good), str(trunc), str(foreign), str(l1c)], tmp_path / "cat", progress=False)
    assert rep.added == [scene.product_id] and len(rep.skipped) == 3
