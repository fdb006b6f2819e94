"""Archive items as complete as the stactools packages make them: fields checked against
independent sources (the MTL, rio-cogeo, the USGS item, the pixels), thumbnails, antimeridian
footprints and search from either side."""
from __future__ import annotations

import io
import json
import tarfile
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from pyproj import Transformer
from rasterio.enums import Resampling
from shapely.geometry import shape

from imalys_stac.providers.sentinel2.archive import _extra_members
from imalys_stac.stac import Query, build_catalog, item_from_archive, open_items, search
from imalys_stac.synth.sentinel2 import write_sentinel2_archive
from tests.realdata import PRODUCT_ID, REAL_DIR, USGS_ITEM, tar_real_scene
from tests.stac_validate import validate_tree


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    folder = tmp_path_factory.mktemp("real")
    return tar_real_scene(folder / "archives")


def test_landsat_fields_from_independent_sources(real):
    from rio_cogeo.cogeo import cog_validate

    d = item_from_archive(real).to_dict(include_self_link=False)
    p = d["properties"]
    mtl = (REAL_DIR / PRODUCT_ID / f"{PRODUCT_ID}_MTL.txt").read_text()
    roll = float(next(l for l in mtl.splitlines() if "ROLL_ANGLE" in l).split("=")[1])
    nadir = next(l for l in mtl.splitlines() if "NADIR_OFFNADIR" in l).split("=")[1].strip().strip('"')
    assert p["view:off_nadir"] == (abs(roll) if nadir == "OFFNADIR" else 0)  # this scene: "NADIR", roll -0.001
    assert p["grid:code"] == "WRS2-008059"
    assert p["sci:doi"] == "10.5066/P9OGBGM6"
    assert {"rel": "cite-as", "href": "https://doi.org/10.5066/P9OGBGM6", "type": "text/html",
            "title": "Product DOI"} in d["links"]
    assert p["description"].startswith("Landsat Collection 2 Level-2")
    usgs = json.loads(USGS_ITEM.read_text())
    c = shape(usgs["geometry"]).centroid  # USGS's own footprint
    assert abs(p["proj:centroid"]["lat"] - c.y) < 0.05 and abs(p["proj:centroid"]["lon"] - c.x) < 0.05
    for key, a in d["assets"].items():
        if a["href"].endswith(".TIF"):
            member = REAL_DIR / PRODUCT_ID / a["href"].rsplit("/", 1)[1]
            valid = cog_validate(str(member), quiet=True)[0]
            assert (a["type"] == "image/tiff; application=geotiff; profile=cloud-optimized") == valid, key
    assert "thumbnail" not in d["assets"]  # this tar holds no browse image


def test_catalog_thumbnail_generated_with_fill_transparent(real, tmp_path):
    rep = build_catalog(str(real), tmp_path / "cat", progress=False)
    assert rep.added == [PRODUCT_ID]
    (item,) = open_items(tmp_path / "cat")
    thumb = item.assets["thumbnail"]
    assert thumb.media_type == "image/png" and thumb.roles == ["thumbnail"]
    assert Path(thumb.href).parent == Path(item.get_self_href()).parent
    img = Image.open(thumb.href)
    img.load()
    assert img.mode == "RGBA" and max(img.size) == 256
    alpha = np.asarray(img)[:, :, 3]
    fill = np.zeros(alpha.shape, bool)
    for key in ("red", "green", "blue"):
        with rasterio.open(item.assets[key].href) as ds:
            fill |= ds.read(1, out_shape=alpha.shape, resampling=Resampling.nearest) == 0
    np.testing.assert_array_equal(alpha == 0, fill)
    rgb = np.asarray(img)[:, :, :3][~fill]
    assert rgb.std() > 5  # a picture, not a flat colour
    assert validate_tree(tmp_path / "cat")[1] == []
    # the thumbnail is the catalog's own file: removed with its item, never left behind
    real.rename(real.with_suffix(".bak"))
    rep = build_catalog(str(real.parent / "*.tar"), tmp_path / "cat", progress=False)
    assert rep.removed == [PRODUCT_ID] and not Path(thumb.href).exists()
    real.with_suffix(".bak").rename(real)


def test_usgs_browse_jpeg_is_the_thumbnail(real, tmp_path):
    archive = tmp_path / real.name
    buf = io.BytesIO()
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(buf, "JPEG")
    with tarfile.open(real) as src, tarfile.open(archive, "w") as dst:
        for m in src.getmembers():
            dst.addfile(m, src.extractfile(m))
        info = tarfile.TarInfo(f"{PRODUCT_ID}_thumb_small.jpeg")
        info.size = len(buf.getvalue())
        dst.addfile(info, io.BytesIO(buf.getvalue()))
    build_catalog(str(archive), tmp_path / "cat", progress=False)
    (item,) = open_items(tmp_path / "cat")
    t = item.assets["thumbnail"]
    assert t.href == f"/vsitar/{archive}/{PRODUCT_ID}_thumb_small.jpeg" and t.media_type == "image/jpeg"
    assert not list((tmp_path / "cat").rglob("*.png"))  # nothing generated
    raw = json.loads(Path(item.get_self_href()).read_text())["assets"]["thumbnail"]["href"]
    assert raw == f"../../../{archive.name}/{PRODUCT_ID}_thumb_small.jpeg"


def test_sentinel2_extra_members_as_stactools_lists_them():
    g = "S2B_MSIL2A_20230621T231629_N0509_R001_T01WCP_20230622T002938.SAFE/GRANULE/L2A_T01WCP_A032834_20230621T231626"
    names = [f"{g}/IMG_DATA/R10m/T01WCP_20230621T231629_{b}_10m.jp2" for b in ("B02", "TCI", "AOT", "WVP")] + [
        f"{g}/IMG_DATA/R20m/T01WCP_20230621T231629_{b}_20m.jp2" for b in ("TCI", "AOT", "WVP", "SCL")] + [
        f"{g}/QI_DATA/T01WCP_20230621T231629_PVI.jp2", f"{g}/QI_DATA/MSK_CLDPRB_20m.jp2"]
    got = _extra_members(names)
    # TCI at 10 m, AOT and WVP at 20 m: the resolutions stactools-sentinel2 lists without a suffix
    assert got == {"TCI": names[1], "AOT": names[5], "WVP": names[6], "PVI": names[8]}


@pytest.fixture(scope="module")
def antimeridian_tile(tmp_path_factory):
    """A Sentinel-2 window of tile 01WCP straddling 180° (the tile itself crosses it)."""
    folder = tmp_path_factory.mktemp("am")
    x, y = Transformer.from_crs(4326, 32601, always_xy=True).transform(180.0, 66.2)
    s = write_sentinel2_archive(folder / "archives", tile="01WCP", acquired=date(2022, 6, 15), size=96,
                                cloud_cover=0.2, seed=3, origin=(x - 480, y + 480))
    build_catalog(str(s.path), folder / "cat", progress=False)
    return s, folder / "cat"


def test_antimeridian_footprint_split(antimeridian_tile):
    s, cat = antimeridian_tile
    d = item_from_archive(s.path).to_dict(include_self_link=False)
    assert d["geometry"]["type"] == "MultiPolygon"
    parts = [shape({"type": "Polygon", "coordinates": c}) for c in d["geometry"]["coordinates"]]
    assert sorted(round(p.bounds[0]) for p in parts) == [-180, 180] or sorted(round(p.bounds[2]) for p in parts) == [-180, 180]
    assert all(p.bounds[2] - p.bounds[0] < 1 for p in parts)  # no part spans the globe
    west, south, east, north = d["bbox"]
    assert west > 179.9 and east < -179.9 and west > east  # RFC 7946: crossing bbox
    assert validate_tree(cat)[1] == []


@pytest.mark.parametrize("bbox, found", [
    ((179.99, 66.19, 179.999, 66.21), True),    # inside, east of 180 is 179.99…
    ((-179.999, 66.19, -179.99, 66.21), True),  # inside, the other side
    ((-0.5, 66.0, 0.5, 66.5), False),           # the old 359° polygon matched here
    ((-100.5, 66.0, -99.5, 66.5), False),
    ((179.0, 60.0, 179.5, 61.0), False),
])
def test_antimeridian_search_from_either_side(antimeridian_tile, bbox, found):
    s, cat = antimeridian_tile
    got = [i.id for i in search(cat, Query(bbox=bbox))]
    assert got == ([s.path.stem] if found else [])


#: fields of the stactools-landsat item this project writes differently, and why
LANDSAT_DIFFERENT = {
    "created": "when the item was made",
    "proj:shape": "from the raster members themselves (this file set is resampled to 512 px; the MTL says 30 m)",
    "proj:transform": "likewise",
    "proj:centroid": "the footprint comes from the ANG file here (compared within 0.02° below)",
}


def test_landsat_item_equals_stactools_landsat_in_shared_fields(real):
    ref = json.loads((REAL_DIR / "stactools-landsat-item.json").read_text())
    ours = item_from_archive(real).to_dict(include_self_link=False)
    shared = sorted((set(ours["properties"]) & set(ref["properties"])) - set(LANDSAT_DIFFERENT))
    assert len(shared) >= 20
    assert {k: (ours["properties"][k], ref["properties"][k]) for k in shared
            if ours["properties"][k] != ref["properties"][k]} == {}
    assert set(ref["properties"]) - set(ours["properties"]) <= {"created"}
    for axis in ("lat", "lon"):
        assert ours["properties"]["proj:centroid"][axis] == pytest.approx(ref["properties"]["proj:centroid"][axis], abs=0.02)
    assert ours["bbox"] == pytest.approx(ref["bbox"], abs=0.03)
    assert [l["href"] for l in ours["links"] if l["rel"] == "cite-as"] == \
        [l["href"] for l in ref["links"] if l["rel"] == "cite-as"]
    compared = 0
    for key in sorted(set(ours["assets"]) & set(ref["assets"])):
        a, r = ours["assets"][key], ref["assets"][key]
        assert a["type"] == r["type"], key
        assert set(a["roles"]) >= set(r["roles"]), key
        for ea, er in zip(a.get("eo:bands", []), r.get("eo:bands", [])):
            for f in ("common_name", "center_wavelength", "full_width_half_max"):
                assert ea.get(f) == er.get(f), (key, f)
        for ra, rr in zip(a.get("raster:bands", []), r.get("raster:bands", [])):
            for f in ("nodata", "data_type", "scale", "offset", "unit"):
                assert ra.get(f) == rr.get(f), (key, f, ra.get(f), rr.get(f))
        compared += 1
    # the real file set holds 15 of the members stactools lists (no ST_ATRAN… nor browse images)
    assert compared == 15


def test_sentinel2_preview_becomes_the_png_thumbnail(tmp_path):
    """A SAFE's own preview (PVI, which browsers cannot show) is converted to the PNG thumbnail:
    the same pixels, nodata transparent."""
    import zipfile

    from rasterio.transform import from_origin

    s = write_sentinel2_archive(tmp_path / "src", tile="32UPU", acquired=date(2022, 6, 15), size=96,
                                cloud_cover=0.2, seed=3)
    rng = np.random.default_rng(1)
    pvi = rng.integers(1, 255, (3, 40, 40), dtype=np.uint8)
    pvi[:, :5, :] = 0  # a nodata strip
    buf = io.BytesIO()
    with rasterio.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=40, height=40, count=3, dtype="uint8", crs="EPSG:32632",
                      transform=from_origin(600000, 5300040, 320, 320)) as ds:
            ds.write(pvi)
        buf.write(mem.read())
    archive = tmp_path / "archives" / s.path.name
    archive.parent.mkdir()
    with zipfile.ZipFile(s.path) as zin, zipfile.ZipFile(archive, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, zin.read(info.filename))
        granule = next(n for n in zin.namelist() if n.endswith("MTD_TL.xml")).rsplit("/", 1)[0]
        zout.writestr(f"{granule}/QI_DATA/T32UPU_20220615T101236_PVI.jp2", buf.getvalue())
    build_catalog(str(archive), tmp_path / "cat", progress=False)
    (item,) = open_items(tmp_path / "cat")
    assert item.assets["preview"].href.endswith("_PVI.jp2")
    img = np.asarray(Image.open(item.assets["thumbnail"].href))
    assert img.shape == (40, 40, 4)
    np.testing.assert_array_equal(img[:, :, 3] == 0, (pvi == 0).all(axis=0))
    np.testing.assert_array_equal(np.moveaxis(img[:, :, :3], 2, 0)[:, 5:], pvi[:, 5:])
