"""Archives -> SceneMetadata: real USGS scene, Landsat 5, and bad archives."""
from __future__ import annotations

import json
import tarfile
from datetime import date, datetime, timezone

import pytest
import rasterio
from shapely.geometry import shape

from imalys_stac.archives import ArchiveError, open_archive
from imalys_stac.archives.mtl import parse_odl
from tests.realdata import PRODUCT_ID, REAL_DIR, USGS_ITEM, tar_real_scene, tar_real_variant


@pytest.fixture(scope="module")
def real_tar(tmp_path_factory):
    return tar_real_scene(tmp_path_factory.mktemp("real"))


def test_real_scene_fields(real_tar):
    m = open_archive(real_tar)
    assert m.product_id == PRODUCT_ID
    assert (m.sensor, m.platform, m.instruments) == ("LC08", "landsat-8", ("oli", "tirs"))
    assert (m.path, m.row) == (8, 59)
    assert m.acquired == date(2019, 12, 1)
    assert m.datetime == datetime(2019, 12, 1, 15, 13, 51, 861099, tzinfo=timezone.utc)
    assert m.cloud_cover == 81.02
    assert (m.collection_category, m.collection_number, m.correction) == ("T1", "02", "L2SP")
    assert m.scene_id == "LC80080592019335LGN00"
    assert m.epsg == 32618
    assert m.sun_azimuth == pytest.approx(136.31696044)
    assert set(m.members) >= {"SR_B1", "SR_B7", "ST_B10", "QA_PIXEL", "QA_RADSAT", "SR_QA_AEROSOL",
                              "MTL.txt", "MTL.xml", "MTL.json", "ANG.txt"}


def test_real_grid_is_the_rasters_not_the_mtls(real_tar):
    m = open_archive(real_tar)
    for suffix, grid in m.grids.items():
        # independent reference: the loose file read directly by rasterio
        with rasterio.open(REAL_DIR / PRODUCT_ID / f"{PRODUCT_ID}_{suffix}.TIF") as ds:
            assert grid.shape == (ds.height, ds.width) == (512, 512)
            assert grid.transform == pytest.approx(tuple(ds.transform)[:6])
            assert grid.bbox == pytest.approx(tuple(ds.bounds))
            assert grid.dtype == ds.dtypes[0]
    assert m.grids["SR_B2"].transform[0] == pytest.approx(444.78515625)  # not the MTL's 30 m


def test_real_calibration_from_mtl(real_tar):
    text = (REAL_DIR / PRODUCT_ID / f"{PRODUCT_ID}_MTL.json").read_text()
    ref = json.loads(text)["LANDSAT_METADATA_FILE"]
    bands = {b.suffix: b for b in open_archive(real_tar).bands}
    sr = ref["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"]
    st = ref["LEVEL2_SURFACE_TEMPERATURE_PARAMETERS"]
    for n in range(1, 8):
        assert bands[f"SR_B{n}"].scale == float(sr[f"REFLECTANCE_MULT_BAND_{n}"])
        assert bands[f"SR_B{n}"].offset == float(sr[f"REFLECTANCE_ADD_BAND_{n}"])
    assert bands["ST_B10"].scale == float(st["TEMPERATURE_MULT_BAND_ST_B10"])
    assert bands["ST_B10"].offset == float(st["TEMPERATURE_ADD_BAND_ST_B10"])
    assert bands["SR_B4"].key == "red" and bands["ST_B10"].key == "lwir11"


def test_real_footprint_matches_usgs(real_tar):
    m = open_archive(real_tar)
    usgs = shape(json.loads(USGS_ITEM.read_text())["geometry"])
    assert m.footprint.is_valid and m.footprint.exterior.is_ccw
    iou = m.footprint.intersection(usgs).area / m.footprint.union(usgs).area
    assert iou > 0.95
    # a rotated swath, not the north-up product rectangle
    assert m.footprint.area < 0.9 * m.footprint.envelope.area


def test_landsat5_variant(tmp_path):
    m = open_archive(tar_real_variant(tmp_path, sensor="LT05", path=193, row=26, acquired="19990615"))
    assert (m.platform, m.instruments, m.path, m.row) == ("landsat-5", ("tm",), 193, 26)
    keys = {b.key: b.suffix for b in m.bands}
    assert keys["blue"] == "SR_B1" and keys["nir08"] == "SR_B4" and keys["lwir"] == "ST_B6"
    assert "coastal" not in keys
    assert m.acquired == date(1999, 6, 15)


def test_odl_parser():
    d = parse_odl('GROUP = A\n  X = "s"\n  N = 02\n  F = 1.5e-05\n  L = (1.0, 2.0,\n       3.0)\n  I = 7\n'
                  "END_GROUP = A\nEND\n")
    assert d == {"A": {"X": "s", "N": "02", "F": 1.5e-05, "L": [1.0, 2.0, 3.0], "I": 7}}
    with pytest.raises(ValueError, match="unterminated"):
        parse_odl("GROUP = A\n X = 1\n")


def _expect(path, pattern):
    with pytest.raises(ArchiveError) as exc:
        open_archive(path)
    assert str(path.resolve()) in str(exc.value)
    assert pytest.importorskip("re").search(pattern, str(exc.value)), str(exc.value)


def test_not_a_tar(tmp_path):
    p = tmp_path / "x.tar"
    p.write_bytes(b"this is not a tar at all" * 40)
    _expect(p, "not a readable tar")


def test_truncated_tar(tmp_path, real_tar):
    p = tmp_path / f"{PRODUCT_ID}.tar"
    data = real_tar.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    _expect(p, "truncated|not a readable tar")


def test_foreign_tar(tmp_path):
    src = tmp_path / "readme.txt"
    src.write_text("hello")
    p = tmp_path / "foreign.tar"
    with tarfile.open(p, "w") as tar:
        tar.add(src, arcname="readme.txt")
    _expect(p, "no \\*_MTL.txt member")


def test_level1_product_refused(tmp_path):
    src = tmp_path / "LC08_L1TP_008059_20191201_20200825_02_T1_MTL.txt"
    src.write_text("GROUP = LANDSAT_METADATA_FILE\nEND_GROUP = LANDSAT_METADATA_FILE\nEND\n")
    p = tmp_path / "l1.tar"
    with tarfile.open(p, "w") as tar:
        tar.add(src, arcname=src.name)
    _expect(p, "not a Landsat 4/5/7/8/9 Collection 2 Level-2 id")


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.tar", "no such file")
