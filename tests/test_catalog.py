"""The static STAC catalog: schema-valid, walkable, incremental, atomic, CSV, stackstac-ready."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from imalys_stac.providers.landsat import qa
from imalys_stac.stac import build_catalog, item_from_archive, open_items, read_item
from imalys_stac.stac import catalog as catalog_mod
from tests.realdata import PRODUCT_ID, tar_real_scene, tar_real_variant
from tests.stac_validate import errors, validate_tree


@pytest.fixture()
def archives(tmp_path):
    folder = tmp_path / "archives"
    tar_real_scene(folder)
    tar_real_variant(folder, acquired="20200117", cloud=12.5)
    tar_real_variant(folder, sensor="LT05", path=9, row=59, acquired="19990615", cloud=3.0)
    return folder


def _ids(report_list):
    return sorted(report_list)


def test_catalog_valid_and_walkable(archives, tmp_path):
    rep = build_catalog(str(archives / "*.tar"), tmp_path / "cat", progress=False)
    assert len(rep.added) == 3 and not rep.skipped
    n, problems = validate_tree(tmp_path / "cat")
    assert n == 5 and problems == []  # catalog + collection + 3 items
    cat = pystac.Catalog.from_file(str(tmp_path / "cat" / "catalog.json"))
    cols = list(cat.get_children())
    assert [c.id for c in cols] == ["landsat-c2-l2"]
    assert len(list(cat.get_items(recursive=True))) == 3
    col = json.loads((tmp_path / "cat" / "landsat-c2-l2" / "collection.json").read_text())
    assert col["extent"]["temporal"]["interval"][0][0].startswith("1999-06-15")
    assert col["extent"]["temporal"]["interval"][0][1].startswith("2020-01-17")
    assert col["summaries"]["platform"] == ["landsat-5", "landsat-8"]
    assert {"red", "qa_pixel", "lwir11", "lwir", "mtl.txt"} <= set(col["item_assets"])
    for doc in (tmp_path / "cat").rglob("*.json"):  # relative links only
        for link in json.loads(doc.read_text()).get("links", []):
            if link["rel"] in {"root", "parent", "child", "item", "collection"}:
                assert not link["href"].startswith("/") and "://" not in link["href"]


def test_item_content(archives):
    item = item_from_archive(archives / f"{PRODUCT_ID}.tar")
    d = item.to_dict(include_self_link=False)
    d_valid = dict(d, collection=None)
    d_valid.pop("collection")  # standalone item: no collection link to go with the field
    assert errors(d_valid) == []
    p = d["properties"]
    assert p["platform"] == "landsat-8" and p["instruments"] == ["oli", "tirs"]
    assert p["constellation"] == "landsat" and p["eo:cloud_cover"] == 81.02
    assert (p["landsat:wrs_path"], p["landsat:wrs_row"]) == ("008", "059")
    assert p["proj:epsg"] == 32618 and p["proj:code"] == "EPSG:32618"
    assert p["proj:shape"] == [512, 512]
    assert p["datetime"] == "2019-12-01T15:13:51.861099Z"
    red = d["assets"]["red"]
    assert red["href"].startswith("/vsitar//") and red["href"].endswith("_SR_B4.TIF")
    assert red["eo:bands"][0] == {"name": "SR_B4", "common_name": "red", "center_wavelength": 0.65,
                                  "full_width_half_max": 0.04}
    assert red["raster:bands"][0]["scale"] == 2.75e-05 and red["raster:bands"][0]["offset"] == -0.2
    assert red["raster:bands"][0]["nodata"] == 0 and red["raster:bands"][0]["data_type"] == "uint16"
    assert d["assets"]["lwir11"]["raster:bands"][0]["unit"] == "kelvin"
    qa_asset = d["assets"]["qa_pixel"]
    assert "data-mask" in qa_asset["roles"] and "cloud" in qa_asset["roles"]
    fields = {f["name"]: (f["offset"], f["length"]) for f in qa_asset["classification:bitfields"]}
    expected = {n: (o, 1) for o, (n, _) in qa.FLAG_BITS.items()}
    expected.update({n: (o, 2) for o, (n, _) in qa.CONFIDENCE_PAIRS.items()})
    assert fields == expected
    assert d["assets"]["mtl.txt"]["roles"] == ["metadata"]
    for key in ("red", "qa_pixel", "mtl.txt"):
        with rasterio.open(d["assets"][key]["href"]) if key != "mtl.txt" else open(os.devnull) as _:
            pass


def test_stackstac_cube_georeferenced_without_io(archives, monkeypatch):
    stackstac = pytest.importorskip("stackstac")
    item = item_from_archive(archives / f"{PRODUCT_ID}.tar")
    href = item.assets["red"].href
    with rasterio.open(href) as ds:
        bounds, res, ref = ds.bounds, ds.res, ds.read(1)
    opened = []
    real_open = rasterio.open
    monkeypatch.setattr(rasterio, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    cube = stackstac.stack([item], assets=["red", "qa_pixel"], snap_bounds=False, dtype="float64")
    assert opened == []  # graph built from metadata alone
    assert cube.attrs["crs"].lower() == "epsg:32618"
    assert cube.shape == (1, 2, 512, 512)
    assert float(cube.x[0]) == pytest.approx(bounds.left) and float(cube.y[0]) == pytest.approx(bounds.top)
    assert float(cube.x[1] - cube.x[0]) == pytest.approx(res[0])
    assert float(cube.y[0] - cube.y[1]) == pytest.approx(res[1])
    # stackstac applies raster:bands scale/offset (from the MTL) and masks nodata 0
    values = cube.sel(band="red").isel(time=0).compute().values
    expected = np.where(ref == 0, np.nan, ref * 2.75e-05 - 0.2)
    np.testing.assert_allclose(values, expected, rtol=1e-12)


def test_incremental(archives, tmp_path, caplog):
    target = tmp_path / "cat"
    build_catalog(str(archives / "*.tar"), target, progress=False)
    cat_json = target / "catalog.json"
    before = cat_json.stat().st_mtime_ns
    rep = build_catalog(str(archives / "*.tar"), target, progress=False)
    assert (rep.added, rep.updated, rep.removed, rep.unchanged) == ([], [], [], 3)
    assert cat_json.stat().st_mtime_ns == before  # nothing rewritten

    new = tar_real_variant(archives, acquired="20200305")
    changed = archives / f"{PRODUCT_ID}.tar"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    gone = next(archives.glob("LT05_*.tar"))
    gone.unlink()
    (archives / "junk.tar").write_bytes(b"\0" * 100)
    with caplog.at_level(logging.WARNING):
        rep = build_catalog(str(archives / "*.tar"), target, progress=False)
    assert rep.added == [new.stem]
    assert rep.updated == [PRODUCT_ID]
    assert rep.removed == [gone.stem]
    assert rep.unchanged == 1
    assert [p for p, _ in rep.skipped] == [str(archives / "junk.tar")]
    assert "junk.tar" in caplog.text
    assert sorted(i.id for i in open_items(target)) == sorted(p.stem for p in archives.glob("L*.tar"))
    assert validate_tree(target)[1] == []
    # a known bad archive is reported again but not re-read
    rep = build_catalog(str(archives / "*.tar"), target, progress=False)
    assert not rep.changed and len(rep.skipped) == 1


def test_atomic_crash_keeps_previous_catalog(archives, tmp_path, monkeypatch):
    target = tmp_path / "cat"
    build_catalog(str(archives / "*.tar"), target, progress=False)
    snapshot = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    tar_real_variant(archives, acquired="20210101")

    def crash(*a, **k):
        raise RuntimeError("simulated crash while writing")

    monkeypatch.setattr(catalog_mod, "write_index", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        build_catalog(str(archives / "*.tar"), target, progress=False)
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == snapshot
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archives", "cat"]  # no temp left
    monkeypatch.undo()
    rep = build_catalog(str(archives / "*.tar"), target, progress=False)
    assert len(rep.added) == 1


def test_interrupted_swap_recovered(archives, tmp_path):
    target = tmp_path / "cat"
    build_catalog(str(archives / "*.tar"), target, progress=False)
    os.replace(target, tmp_path / ".cat.old")  # crash between the two renames
    rep = build_catalog(str(archives / "*.tar"), target, progress=False)
    assert rep.unchanged == 3 and (target / "catalog.json").is_file()


def test_csv_target(archives, tmp_path):
    csv = tmp_path / "bonds.csv"
    rep = build_catalog(str(archives / "*.tar"), csv, progress=False)
    assert rep.csv_path == csv and rep.catalog_path == tmp_path / "bonds" / "catalog.json"
    lines = csv.read_text().splitlines()
    assert lines[0] == "WKT,id,width,height,filename"
    assert len(lines) == 4
    items = {i.properties["imalys:archive"]: i for i in open_items(tmp_path / "bonds")}
    for n, line in enumerate(lines[1:], 1):
        wkt, rest = line.split('",')
        assert wkt.startswith('"POINT (')
        x, y = map(float, wkt[len('"POINT ('):-1].split())
        rid, w, h, fname = rest.split(",")
        assert int(rid) == n
        w_, s, e, nn = items[fname].bbox  # reference: the item's bbox
        assert x == pytest.approx((w_ + e) / 2, abs=1e-7) and y == pytest.approx((s + nn) / 2, abs=1e-7)
        assert float(w) == pytest.approx((e - w_) / 2) and float(h) == pytest.approx((nn - s) / 2)
    assert csv.with_suffix(".csvt").read_text().strip() == "WKT,Integer64(10),Real(24.15),Real(24.15),String(250)"
    assert 'GEOGCS["GCS_WGS_1984"' in csv.with_suffix(".prj").read_text()
    # GDAL reads it as a point layer in WGS84
    import pyogrio
    df = pyogrio.read_dataframe(csv)
    assert len(df) == 3


def _catalog_ids(folder: Path) -> set[str]:
    """Item ids reachable from catalog.json through its links, every link checked to resolve."""
    ids: set[str] = set()
    stack = [folder / "catalog.json"]
    while stack:
        doc_path = stack.pop()
        doc = json.loads(doc_path.read_text())
        for link in doc["links"]:
            if "://" in link["href"]:
                continue
            target = (doc_path.parent / link["href"]).resolve()
            assert target.is_file(), f"{doc_path}: broken {link['rel']} link {link['href']}"
            if link["rel"] == "child":
                stack.append(target)
            elif link["rel"] == "item":
                ids.add(json.loads(target.read_text())["id"])
    return ids


def test_archive_folder_as_target_keeps_archives_and_user_files(archives, tmp_path):
    """Issue 8: target = the archive folder, empty at the first run, archives copied in later."""
    folder = tmp_path / "landsat"
    folder.mkdir()
    rep = build_catalog(str(folder / "*.tar"), folder, progress=False)
    assert (rep.added, rep.removed) == ([], []) and (folder / "catalog.json").is_file()
    originals = {p.name: p.read_bytes() for p in archives.glob("*.tar")}
    for name, data in originals.items():
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("mine")
    rep = build_catalog(str(folder / "*.tar"), folder, progress=False)
    assert rep.summary() == f"catalog {folder / 'catalog.json'}: 3 added, 0 updated, 0 removed, 0 skipped, 0 unchanged"
    assert {p.name: p.read_bytes() for p in folder.glob("*.tar")} == originals  # not one byte lost
    assert (folder / "notes.txt").read_text() == "mine"
    assert _catalog_ids(folder) == {n[:-4] for n in originals}
    for item in open_items(folder):
        with rasterio.open(item.assets["red"].href) as ds:  # the items point at the archives in place
            assert ds.read(1, window=((0, 1), (0, 1))).shape == (1, 1)
        assert Path(item.properties["imalys:archive"]).parent == folder
    assert validate_tree(folder)[1] == []

    # user files inside the catalog's own folders survive an update that removes an item
    gone = next(folder.glob("LT05_*.tar"))
    item_dir = folder / "landsat-c2-l2" / gone.stem
    (item_dir / "review.txt").write_text("checked")
    (folder / "landsat-c2-l2" / "README").write_text("collection notes")
    gone.unlink()
    rep = build_catalog(str(folder / "*.tar"), folder, progress=False)
    assert (rep.added, rep.updated, rep.removed, rep.unchanged) == ([], [], [gone.stem], 2)
    assert (item_dir / "review.txt").read_text() == "checked"
    assert not (item_dir / f"{gone.stem}.json").exists()
    assert (folder / "landsat-c2-l2" / "README").read_text() == "collection notes"
    assert {p.name for p in folder.glob("*.tar")} == set(originals) - {gone.name}
    assert _catalog_ids(folder) == {n[:-4] for n in originals} - {gone.stem}
    # only the catalog's own files and the user's are left: no temporaries
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [
        ".imalys-catalog.json", ".imalys-catalog.lock"]


def test_user_files_in_a_new_target_survive(archives, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("keep")
    rep = build_catalog(str(archives / "*.tar"), tmp_path / "mine", progress=False)
    assert len(rep.added) == 3
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"
    rep = build_catalog(str(archives / "LC08_*.tar"), tmp_path / "mine", progress=False)
    assert len(rep.removed) == 1
    assert (tmp_path / "mine" / "precious.txt").read_text() == "keep"


def test_refuses_to_replace_a_foreign_catalog(archives, tmp_path):
    """A working directory (its catalog.json) or another tool's catalog is never replaced."""
    from imalys_stac.workdir import WorkDir

    wd = WorkDir(tmp_path / "work")
    wd.prepare()
    before = (tmp_path / "work" / "catalog.json").read_bytes()
    with pytest.raises(ValueError) as err:
        build_catalog(str(archives / "*.tar"), tmp_path / "work", progress=False)
    assert str(err.value) == (
        f"catalog target {tmp_path / 'work'} holds a catalog.json that imalys-stac did not write (no "
        ".imalys-catalog.json beside it); the catalog never replaces files it did not write: move that "
        "file away or choose another target folder")
    assert (tmp_path / "work" / "catalog.json").read_bytes() == before


def test_refuses_to_replace_a_foreign_collection_file(archives, tmp_path):
    folder = tmp_path / "cat"
    (folder / "landsat-c2-l2").mkdir(parents=True)
    (folder / "landsat-c2-l2" / "collection.json").write_text("{}")
    with pytest.raises(ValueError, match=r"holds landsat-c2-l2/collection.json that imalys-stac did not write"):
        build_catalog(str(archives / "*.tar"), folder, progress=False)
    assert (folder / "landsat-c2-l2" / "collection.json").read_text() == "{}"
    assert sorted(p.name for p in folder.iterdir()) == [".imalys-catalog.lock", "landsat-c2-l2"]


KILL_SCRIPT = """
import os, signal, sys
import imalys_stac.stac.catalog as C
n, calls = int(sys.argv[3]), [0]
real = os.replace
def replace(a, b):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(a, b)
os.replace = replace
if n == 0:  # killed while reading the archives
    C._read_one = lambda p: os.kill(os.getpid(), signal.SIGKILL)
C.build_catalog(sys.argv[1], sys.argv[2], workers=1, progress=False)
print("calls", calls[0])
"""


@pytest.mark.system  # SIGKILL of a subprocess
def test_sigkill_at_every_step_leaves_catalog_before_or_complete(archives, tmp_path):
    """SIGKILL before and at every rename of an update: archives and user files intact, the catalog
    (every link resolving) holds the old or the new items, and the next run completes it."""
    import shutil
    import subprocess
    import sys

    first, extra = sorted(archives.glob("*.tar"))[:1], sorted(archives.glob("*.tar"))[1:]
    old_ids, new_ids = {p.stem for p in first}, {p.stem for p in first + extra}
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    repo = Path(__file__).resolve().parents[1]
    seen_new = False
    for n in range(0, 30):
        work = tmp_path / f"run{n}"
        work.mkdir()
        for p in first:
            shutil.copy(p, work / p.name)
        build_catalog(str(work / "*.tar"), work, progress=False)
        (work / "notes.txt").write_text("mine")
        snapshot = {p.relative_to(work): p.read_bytes() for p in work.rglob("*") if p.is_file()}
        for p in extra:
            shutil.copy(p, work / p.name)
        tars = {p.name: p.read_bytes() for p in work.glob("*.tar")}
        proc = subprocess.run([sys.executable, str(script), str(work / "*.tar"), str(work), str(n)],
                              cwd=repo, capture_output=True, text=True, timeout=120)
        if proc.returncode == 0:  # n is past the last rename: the run completed
            assert _catalog_ids(work) == new_ids
            break
        assert proc.returncode == -9, proc.stderr
        assert {p.name: p.read_bytes() for p in work.glob("*.tar")} == tars
        assert (work / "notes.txt").read_text() == "mine"
        ids = _catalog_ids(work)
        assert ids in (old_ids, new_ids), n
        seen_new |= ids == new_ids
        if ids == old_ids and not (work / ".imalys-catalog.journal.json").exists():
            unchanged = {r: b for r, b in snapshot.items() if r.name != ".imalys-catalog.lock"}
            assert {r: (work / r).read_bytes() for r in unchanged} == unchanged
        rep = build_catalog(str(work / "*.tar"), work, progress=False)
        assert _catalog_ids(work) == new_ids
        assert {i.id for i in open_items(work)} == new_ids
        assert validate_tree(work)[1] == []
        assert not [p.name for p in work.iterdir() if ".tmp-" in p.name or "journal" in p.name]
        assert len(rep.added) in (0, len(extra))
        shutil.rmtree(work)
    else:
        raise AssertionError("the update never completed")
    assert n > 5 and seen_new  # kills landed before and after the commit


def test_read_item_keeps_proj_epsg(archives, tmp_path):
    build_catalog(str(archives / "*.tar"), tmp_path / "cat", progress=False)
    f = next((tmp_path / "cat" / "landsat-c2-l2").rglob("L*.json"))
    it = read_item(f)
    assert it.properties["proj:epsg"] == 32618
    assert Path(it.get_self_href()).is_absolute()


def test_process_pool_path(archives, tmp_path, monkeypatch):
    monkeypatch.setattr(catalog_mod, "PROCESS_THRESHOLD", 2)
    rep = build_catalog(str(archives / "*.tar"), tmp_path / "cat", workers=2, progress=False)
    assert len(rep.added) == 3


def test_items_written_as_read(archives, tmp_path, monkeypatch):
    """Each item's JSON is staged as soon as its archive is read (memory flat in the count)."""
    target = tmp_path / "cat"
    staged = []
    real = catalog_mod._read_one

    def spy(path):
        tmp = target / f".imalys-catalog.tmp-{os.getpid()}"
        staged.append(len(list(tmp.rglob("L*.json"))))
        return real(path)

    monkeypatch.setattr(catalog_mod, "_read_one", spy)
    rep = build_catalog(str(archives / "*.tar"), target, workers=1, progress=False)
    assert staged == [0, 1, 2] and len(rep.added) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["archives", "cat"]
    assert validate_tree(target)[1] == []


@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_duplicate_ids_settled_by_path_not_arrival(archives, tmp_path, monkeypatch, order):
    copy = tar_real_scene(archives, name="zz-copy.tar")  # same product id, sorts after the original
    original = archives / f"{PRODUCT_ID}.tar"
    real = catalog_mod._read_all

    def shuffled(paths, workers, progress, sink=None):
        results = real(paths, 1, progress)
        for r in sorted(results, key=lambda r: r[0], reverse=order == "reversed"):
            sink(r)
        return []

    monkeypatch.setattr(catalog_mod, "_read_all", shuffled)
    target = tmp_path / "cat"
    rep = build_catalog(str(archives / "*.tar"), target, progress=False)
    assert len(rep.added) == 3
    assert rep.skipped == [(str(copy), f"duplicate product id {PRODUCT_ID} (also in {original})")]
    state = json.loads((target / ".imalys-catalog.json").read_text())
    # archive paths relative to the catalog folder: the two move together
    assert f"../archives/{original.name}" in state["archives"] and f"../archives/{copy.name}" in state["skipped"]
    (item,) = list(target.rglob(f"{PRODUCT_ID}.json"))
    red = json.loads(item.read_text())["assets"]["red"]["href"]
    assert red == f"../../../archives/{original.name}/{PRODUCT_ID}_SR_B4.TIF"
    assert read_item(item).assets["red"].href == f"/vsitar/{original}/{PRODUCT_ID}_SR_B4.TIF"
    assert validate_tree(target)[1] == []


def test_index_is_stac_geoparquet_that_stac_geoparquet_and_rustac_read(archives, tmp_path):
    import asyncio

    import pyarrow.parquet as pq
    import rustac
    from stac_geoparquet.arrow import stac_table_to_items

    target = tmp_path / "cat"
    build_catalog(str(archives / "*.tar"), target, progress=False)
    items = {json.loads(p.read_text())["id"]: json.loads(p.read_text())
             for p in (target / "landsat-c2-l2").glob("*/*.json")}
    geo = json.loads(pq.read_schema(target / "items.parquet").metadata[b"geo"])
    assert geo["primary_column"] == "geometry"
    via_sg = {d["id"]: d for d in stac_table_to_items(pq.read_table(target / "items.parquet"))}

    async def read():
        return await rustac.read(str(target / "items.parquet"))

    via_rustac = {d["id"]: d for d in asyncio.run(read())["features"]}
    assert set(via_sg) == set(via_rustac) == set(items)
    for iid, d in items.items():
        for got in (via_sg[iid], via_rustac[iid]):
            assert got["assets"]["red"]["href"] == d["assets"]["red"]["href"]  # relative, as in the item
            assert got["properties"]["eo:cloud_cover"] == d["properties"]["eo:cloud_cover"]
            assert got["properties"]["proj:epsg"] == d["properties"]["proj:epsg"]
            assert got["geometry"]["type"] == d["geometry"]["type"]
            assert got["bbox"] == pytest.approx(d["bbox"])
    # an update rewrites it with the new item, streaming unchanged items from their files
    tar_real_variant(archives, acquired="20210101")
    build_catalog(str(archives / "*.tar"), target, progress=False)
    assert len(list(stac_table_to_items(pq.read_table(target / "items.parquet")))) == 4
