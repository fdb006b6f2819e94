"""Items from real ESA Sentinel-2 L2A metadata equal stactools-sentinel2's in every shared field.

The metadata is real (tests/data/sentinel2, see its README); the rasters are empty sparse GeoTIFFs
on the grids MTD_TL.xml describes, so the geometry and every grid field come from the real files.
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from shapely.geometry import shape

from imalys_stac.providers.sentinel2.archive import S2_BANDS, _tile_grids
from imalys_stac.stac import Query, build_catalog, item_from_archive, search

DATA = Path(__file__).parent / "data" / "sentinel2"
SAFES = sorted(p for p in DATA.iterdir() if p.suffix == ".SAFE")
#: our asset key -> stactools' (native resolution assets carry the plain name there too)
EXTRA = {"scl": "scl", "visual": "visual", "aot": "aot", "wvp": "wvp", "preview": "preview"}
#: fields both write but mean differently, with the reason
NOT_COMPARED = {
    "created": "time the item was made",
    "providers": "a collection-level field here",
}


def _zip(safe: Path, dest: Path) -> Path:
    """``<product>.zip`` holding the real metadata and sparse rasters on its grids."""
    (tl_path,) = safe.glob("GRANULE/*/MTD_TL.xml")
    epsg, grids = _tile_grids(ET.parse(tl_path).getroot())
    name = safe.name.removeprefix("esa_")
    tile = name.split("_")[5]
    stamp = name.split("_")[2]
    granule = f"{name}/GRANULE/{tl_path.parent.name}"
    work = dest / "rasters"
    work.mkdir(parents=True, exist_ok=True)
    members: dict[str, Path] = {}
    bands = [(b.suffix, int(b.gsd)) for b in S2_BANDS] + [("SCL", 20), ("TCI", 10), ("AOT", 20), ("WVP", 20)]
    for band, res in bands:
        g = grids[res]
        f = work / f"{tile}_{stamp}_{band}_{res}m.tif"
        count, dtype = (3, "uint8") if band == "TCI" else (1, "uint8" if band == "SCL" else "uint16")
        with rasterio.open(f, "w", driver="GTiff", width=g.shape[1], height=g.shape[0], count=count, dtype=dtype,
                           crs=CRS.from_epsg(epsg), transform=Affine(*g.transform), nodata=0, tiled=True,
                           blockxsize=512, blockysize=512, compress="deflate", sparse_ok=True):
            pass  # nothing written: every block stays sparse
        members[f"{granule}/IMG_DATA/R{res}m/{f.name}"] = f
    out = dest / f"{name.removesuffix('.SAFE')}.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.write(safe / "MTD_MSIL2A.xml", f"{name}/MTD_MSIL2A.xml")
        z.write(safe / "manifest.safe", f"{name}/manifest.safe")
        z.write(tl_path, f"{granule}/MTD_TL.xml")
        for arc, f in members.items():
            z.write(f, arc)
    return out


@pytest.fixture(scope="module", params=SAFES, ids=lambda p: p.name.split("_")[5] if not p.name.startswith("esa") else "T22HBD")
def pair(request, tmp_path_factory):
    archive = _zip(request.param, tmp_path_factory.mktemp("s2ref"))
    expected = json.loads((request.param / "expected_output.json").read_text())
    return archive, item_from_archive(archive).to_dict(include_self_link=False), expected


def _same(a, b):
    if isinstance(a, str) and isinstance(b, str) and a[:4].isdigit() and a.endswith("Z") and b.endswith("Z"):
        try:  # the same instant, written with or without microseconds
            return datetime.fromisoformat(a[:-1]) == datetime.fromisoformat(b[:-1])
        except ValueError:
            pass
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def test_every_shared_property_equal(pair):
    _, ours, ref = pair
    shared = sorted((set(ours["properties"]) & set(ref["properties"])) - set(NOT_COMPARED))
    assert len(shared) >= 35
    diff = {k: (ours["properties"][k], ref["properties"][k]) for k in shared
            if not _same(ours["properties"][k], ref["properties"][k])}
    assert diff == {}
    # what the reference has and we do not: only fields that are not item metadata of the product
    missing = set(ref["properties"]) - set(ours["properties"]) - set(NOT_COMPARED)
    assert missing <= {"eo:snow_cover", "s2:degraded_msi_data_percentage"}, missing


def test_geometry_and_bbox_equal(pair):
    _, ours, ref = pair
    assert ours["geometry"]["type"] == ref["geometry"]["type"]
    a, b = shape(ours["geometry"]), shape(ref["geometry"])
    assert a.symmetric_difference(b).area < 1e-6 * max(b.area, 1e-9) + 1e-9
    assert ours["bbox"] == pytest.approx(ref["bbox"], abs=1e-6)


def test_every_shared_asset_grid_and_band_equal(pair):
    _, ours, ref = pair
    compared = 0
    for key, a in ours["assets"].items():
        r = ref["assets"].get(EXTRA.get(key, key))
        if r is None or "proj:shape" not in a:
            continue
        for field in ("proj:shape", "proj:transform", "proj:bbox", "gsd"):
            assert _same(a[field], r[field]), (key, field, a[field], r[field])
        if "raster:bands" in r and key not in ("visual",):
            ra, rr = a["raster:bands"][0], r["raster:bands"][0]
            for field in ("nodata", "scale", "offset", "data_type"):
                if field in rr and field in ra:
                    assert _same(ra[field], rr[field]), (key, field, ra[field], rr[field])
        if "eo:bands" in r and "eo:bands" in a:
            assert a["eo:bands"][0].get("common_name") == r["eo:bands"][0].get("common_name"), key
        if key != "scl":  # ours names what SCL holds (data-mask, cloud, …); "data" would make it an image band
            assert a["roles"] == r["roles"] or set(a["roles"]) >= set(r["roles"]), (key, a["roles"], r["roles"])
        compared += 1
    assert compared >= 14  # 12 bands, SCL, and the TCI/AOT/WVP rasters


def test_antimeridian_tile_found_from_either_side(pair, tmp_path):
    archive, ours, ref = pair
    b = shape(ref["geometry"])
    if b.geom_type != "MultiPolygon":
        pytest.skip("this tile does not cross the antimeridian")
    build_catalog(str(archive), tmp_path / "cat", progress=False)
    iid = ours["id"]
    for part in b.geoms:  # a small box well inside each half of the footprint
        c = part.representative_point()
        q = Query(bbox=(c.x - 0.01, c.y - 0.01, c.x + 0.01, c.y + 0.01))
        assert [i.id for i in search(tmp_path / "cat", q)] == [iid]
    for lon in (0.0, -100.0, 100.0):
        assert search(tmp_path / "cat", Query(bbox=(lon - 0.5, 66.0, lon + 0.5, 66.5))) == []
