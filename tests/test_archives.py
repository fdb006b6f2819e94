"""Archives -> SceneMetadata: real USGS scene, Landsat 5, and bad archives."""
from __future__ import annotations

import json
import tarfile
from datetime import date, datetime, timezone

import pytest
import rasterio
from shapely.geometry import shape

from imalys_stac.archives import ArchiveError
from imalys_stac.providers.landsat.mtl import parse_odl
from imalys_stac.registry import open_archive
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


# ---------------------------------------------------------------------------------------- grid reuse
def _retar(src_tar, dest, replace=None, extra=None, mode="w"):
    """Copy ``src_tar`` to ``dest`` with members replaced (suffix -> bytes) or added (name -> bytes)."""
    import io

    replace, extra = replace or {}, extra or {}
    with tarfile.open(src_tar) as tin, tarfile.open(dest, mode) as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            for suffix, new in replace.items():
                if m.name.endswith(suffix):
                    data = new
            ti = tarfile.TarInfo(m.name)
            ti.size = len(data)
            tout.addfile(ti, io.BytesIO(data))
        for name, data in extra.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tout.addfile(ti, io.BytesIO(data))
    return dest


def _tiff_bytes(width, height, transform, nodata=0, dtype="uint16", tiled=False):
    import numpy as np
    from rasterio.io import MemoryFile

    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype=dtype, crs="EPSG:32618",
                   transform=transform, nodata=nodata)
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(np.ones((1, height, width), dtype=dtype))
        return mem.read()


def _reference_grids(path, m):
    from imalys_stac.archives import read_grid, vsitar

    return {s: read_grid(vsitar(path, m.members[s])) for s in m.grids}


def test_grid_read_once_per_distinct_header(real_tar, monkeypatch):
    import imalys_stac.providers.landsat.archive as L

    opened = []
    real = L.read_grid
    monkeypatch.setattr(L, "read_grid", lambda href: opened.append(href) or real(href))
    m = open_archive(real_tar)
    # SR bands + ST share one header, the QA members and the aerosol band have their own
    assert len(opened) < len(m.grids) == 11
    monkeypatch.undo()
    assert m.grids == _reference_grids(real_tar, m)


def test_members_with_other_grids_are_read_themselves(tmp_path, real_tar):
    from affine import Affine

    with rasterio.open(f"/vsitar/{real_tar}/{PRODUCT_ID}_SR_B2.TIF") as ds:
        t = ds.transform
    half = Affine(t.a * 2, t.b, t.c, t.d, t.e * 2, t.f)
    shifted = Affine(t.a, t.b, t.c + 30, t.d, t.e, t.f)
    p = _retar(real_tar, tmp_path / f"{PRODUCT_ID}.tar", replace={
        "_SR_B3.TIF": _tiff_bytes(256, 256, half),          # other size and pixel size
        "_SR_B4.TIF": _tiff_bytes(512, 512, shifted),       # same size, shifted origin
        "_SR_B5.TIF": _tiff_bytes(512, 512, t, nodata=1),   # other nodata
        "_SR_B6.TIF": _tiff_bytes(512, 512, t, dtype="int16"),
        "_SR_B7.TIF": _tiff_bytes(512, 512, t, tiled=True),  # same grid, other layout
    })
    m = open_archive(p)
    assert m.grids == _reference_grids(p, m)
    assert m.grids["SR_B3"].shape == (256, 256)
    assert m.grids["SR_B4"].transform[2] == pytest.approx(t.c + 30)
    assert m.grids["SR_B5"].nodata == 1 and m.grids["SR_B6"].dtype == "int16"
    assert m.grids["SR_B7"] == m.grids["SR_B2"]  # read by itself, same grid


def test_not_a_tiff_member_is_reported(tmp_path, real_tar):
    p = _retar(real_tar, tmp_path / f"{PRODUCT_ID}.tar", replace={"_SR_B5.TIF": b"II*\0garbage" * 10})
    _expect(p, "SR_B5.TIF is not a readable raster")


def test_sidecar_disables_reuse_and_gzip_tar(tmp_path, real_tar, monkeypatch):
    import imalys_stac.providers.landsat.archive as L

    for name, kw in (("side", {"extra": {f"{PRODUCT_ID}_SR_B4.TIF.aux.xml": b"<PAMDataset/>"}}),
                     ("gz", {"mode": "w:gz"})):
        (tmp_path / name).mkdir()
        p = _retar(real_tar, tmp_path / name / (f"{PRODUCT_ID}.tar" + (".gz" if name == "gz" else "")), **kw)
        opened: list[str] = []
        monkeypatch.setattr(L, "read_grid", lambda href, o=opened, r=L.read_grid: o.append(href) or r(href))
        m = open_archive(p)
        monkeypatch.undo()
        assert len(opened) == len(m.grids) == 11  # every member through GDAL
        assert m.grids == _reference_grids(p, m)


def test_tiff_signature(tmp_path):
    import os

    from affine import Affine

    from imalys_stac.archives.container import tiff_signature

    t = Affine(30, 0, 300000, 0, -30, 5000000)
    blobs = {"a": _tiff_bytes(64, 64, t), "b": _tiff_bytes(64, 64, t), "c": _tiff_bytes(64, 32, t),
             "big": None, "junk": b"not a tiff at all"}
    import numpy as np
    from rasterio.io import MemoryFile
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=64, height=64, count=1, dtype="uint16", crs="EPSG:32618",
                      transform=t, nodata=0, BIGTIFF="YES") as ds:
            ds.write(np.ones((1, 64, 64), dtype="uint16"))
        blobs["big"] = mem.read()
    f = tmp_path / "blob"
    offsets = {}
    with open(f, "wb") as fh:
        for k, b in blobs.items():
            fh.write(b"\0" * 7)  # members need not be aligned
            offsets[k] = (fh.tell(), len(b))
            fh.write(b)
    fd = os.open(f, os.O_RDONLY)
    try:
        sig = {k: tiff_signature(fd, *offsets[k]) for k in blobs}
    finally:
        os.close(fd)
    assert sig["a"] is not None and sig["a"] == sig["b"] != sig["c"]
    assert sig["big"] is not None and sig["big"] != sig["a"]
    assert sig["junk"] is None


def test_ang_corners_only(tmp_path):
    from imalys_stac.providers.landsat.archive import _find, _parse_ang

    text = (REAL_DIR / PRODUCT_ID / f"{PRODUCT_ID}_ANG.txt").read_text()
    full, quick = parse_odl(text), _parse_ang(text)
    for k in ("BAND01_L1T_IMAGE_CORNER_LINES", "BAND01_L1T_IMAGE_CORNER_SAMPS"):
        assert _find(quick, k) == _find(full, k) and len(_find(quick, k)) == 4
    # an ANG without the two keys exactly once is parsed whole (and may fail as before)
    assert _parse_ang("GROUP = A\n  X = 1\nEND_GROUP = A\nEND\n") == {"A": {"X": 1}}
