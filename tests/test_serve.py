"""`imalys-stac serve`: an archive catalog, a working directory and a results folder over HTTP, as
STAC Browser, GDAL /vsicurl/ and pystac-client use them. Every link and asset is fetched; member
bytes are compared with what tarfile/zipfile read from the archives themselves."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from datetime import date
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import numpy as np
import pytest
import rasterio
from PIL import Image

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.stac import Query, build_catalog, open_items, search
from imalys_stac.stac.hrefs import split_vsi
from imalys_stac.synth import Landscape, SceneSpec, write_frame, write_landsat_archive
from imalys_stac.synth.sentinel2 import write_sentinel2_archive
from tests.realdata import tar_real_scene

pytestmark = pytest.mark.system  # starts servers in subprocesses

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """archives/ (real USGS scene, two synthetic Landsat scenes, a synthetic Sentinel-2 zip),
    its catalog cat/, a working directory wd/ made by a chain that imports from the catalog, and
    the exported results/."""
    root = tmp_path_factory.mktemp("site")
    arch = root / "archives"
    tar_real_scene(arch)
    land = Landscape(seed=3)
    scenes = [write_landsat_archive(arch, SceneSpec(sensor="LC08", path=193, row=26, acquired=d, size=96,
                                                    cloud_cover=c, seed=10 + i), landscape=land)
              for i, (d, c) in enumerate(zip([date(2022, 6, 1), date(2022, 6, 17), date(2022, 7, 3)], [0.1, 0.2, 0.15]))]
    write_sentinel2_archive(arch, tile="32UPU", acquired=date(2022, 6, 15), size=96, cloud_cover=0.2, seed=3)
    rep = build_catalog([str(arch / "*.tar"), str(arch / "*.zip")], root / "cat", progress=False)
    assert len(rep.added) == 5, rep.skipped
    t = scenes[0].transform
    from pyproj import Transformer
    from shapely.geometry import box

    tr = Transformer.from_crs(scenes[0].crs, 4326, always_xy=True)
    (lx, ly), (ux, uy) = tr.transform(t.c + 20 * t.a, t.f + 76 * t.e), tr.transform(t.c + 76 * t.a, t.f + 20 * t.e)
    frame = write_frame(root / "frame.geojson", box(lx, ly, ux, uy), "EPSG:4326")
    chain = root / "chain.txt"
    chain.write_text(f"""IMALYS [serve test]
home
	directory = {root}/wd
	clear = true
	log = {root}/log
import
	database = {root}/cat
	frame = {frame}
	period = 20220501-20220731
compile
	search = LC08*
reduce
	select = compile
	execute = bestof
export
	select = bestof
	target = {root}/results/bestof.tif
""")
    run_chain(load_chain(chain))
    return root


class Served:
    def __init__(self, url: str, root: Path, catalog_path: str) -> None:
        self.url, self.root, self.catalog_path = url, root, catalog_path


def start_serve(folder: Path, *extra: str) -> tuple[subprocess.Popen, Served]:
    """`imalys-stac serve` in a subprocess (GDAL holds the GIL while it reads /vsicurl/, so an
    in-process server thread could not answer it); the URLs as it prints them."""
    proc = subprocess.Popen([sys.executable, "-m", "imalys_stac.cli", "serve", str(folder), "--port", "0", *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "IMALYS_NO_MALLOC_TUNING": "1"})
    first = proc.stdout.readline()
    assert first.startswith("serving "), first + proc.stdout.read()
    root = Path(first.split("(URL root ", 1)[1].split(")", 1)[0])
    url = first.rsplit(" at ", 1)[1].strip()
    cat = proc.stdout.readline().split()[-1]
    return proc, Served(url, root, cat[len(url):])


@pytest.fixture()
def serve():
    """Start servers on folders; yield (base URL, what was served); stop them afterwards."""
    procs = []

    def start(folder: Path):
        proc, s = start_serve(folder)
        procs.append(proc)
        return s.url, s

    yield start
    for p in procs:
        p.terminate()
        p.wait(10)
        p.stdout.close()


def get(url: str, headers: dict | None = None, method: str = "GET"):
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        err.close()  # its connection, else left to the garbage collector (ResourceWarning)
        raise


def member_bytes(gdal_path: str) -> bytes:
    """Independent reference: the member read with tarfile / zipfile, or the plain file."""
    vsi = split_vsi(gdal_path)
    if vsi is None:
        return Path(gdal_path).read_bytes()
    kind, archive, member = vsi
    if kind == "vsizip":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        return t.extractfile(member).read()


def crawl(base: str, start: str) -> tuple[dict[str, dict], dict[tuple[str, str, str], str]]:
    """Every JSON document reachable from ``start`` (links of any rel on this server), and every
    asset URL by (document URL, item id, asset key). Asserts each answers 200 with a CORS header."""
    docs: dict[str, dict] = {}
    assets: dict[tuple[str, str], str] = {}
    todo = [start]
    while todo:
        url = todo.pop()
        if url in docs:
            continue
        status, headers, body = get(url)
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*", url
        doc = json.loads(body)
        docs[url] = doc
        for link in doc.get("links", []):
            target = urljoin(url, link["href"])
            if not target.startswith(base):
                assert link["rel"] not in ("root", "parent", "child", "item", "collection", "derived_from"), \
                    f"{url}: {link['rel']} link {link['href']} is not served"
                continue
            if link["rel"] in ("root", "parent", "child", "item", "collection", "derived_from", "self"):
                todo.append(target)
        for key, a in doc.get("assets", {}).items():
            target = urljoin(url, a["href"])
            assert target.startswith(base), f"{url}: asset {key} href {a['href']} is not served"
            assets[(url, doc["id"], key)] = target
    return docs, assets


def test_archive_catalog_every_link_and_asset(site, serve):
    base, s = serve(site / "cat")
    assert s.root == site  # the catalog and the archives beside it
    docs, assets = crawl(base, base + "/cat/catalog.json")
    local = {i.id: i for i in open_items(site / "cat")}
    items = {d["id"] for d in docs.values() if d.get("type") == "Feature"}
    assert items == set(local) and len(items) == 5
    assert {d["id"] for d in docs.values() if d.get("type") == "Collection"} == {"landsat-c2-l2", "sentinel-2-l2a"}
    checked = 0
    for (_, iid, key), url in assets.items():
        ref = member_bytes(local[iid].assets[key].href)
        status, headers, body = get(url, method="HEAD")
        assert status == 200 and int(headers["Content-Length"]) == len(ref) and headers["Accept-Ranges"] == "bytes"
        a, b = len(ref) // 3, len(ref) // 3 + 999
        status, headers, body = get(url, {"Range": f"bytes={a}-{b}"})
        assert status == 206 and headers["Content-Range"] == f"bytes {a}-{min(b, len(ref) - 1)}/{len(ref)}"
        assert body == ref[a:b + 1], (iid, key)
        assert headers["Access-Control-Allow-Origin"] == "*"
        checked += 1
    assert checked > 60
    # suffix range and an unsatisfiable one
    url = next(u for (_, i, k), u in assets.items() if k == "red" and i.startswith("LC08_L2SP_008059"))
    ref = member_bytes(local["LC08_L2SP_008059_20191201_20200825_02_T1"].assets["red"].href)
    assert get(url, {"Range": "bytes=-10"})[2] == ref[-10:]
    with pytest.raises(urllib.error.HTTPError) as err:
        get(url, {"Range": f"bytes={len(ref)}-"})
    assert err.value.code == 416
    # CORS preflight as a browser sends it for a Range request
    status, headers, _ = get(url, {"Origin": "http://localhost:8080", "Access-Control-Request-Headers": "range"},
                             method="OPTIONS")
    assert status == 204 and "Range" in headers["Access-Control-Allow-Headers"]


def test_gdal_reads_served_members_through_vsicurl(site, serve):
    base, _ = serve(site / "cat")
    for item in open_items(site / "cat"):
        key = "red"
        url = f"{base}/cat/{item.collection_id}/{item.id}/{item.id}.json"
        doc = json.loads(get(url)[2])
        remote = urljoin(url, doc["assets"][key]["href"])
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
            with rasterio.open(f"/vsicurl/{remote}") as ds, rasterio.open(item.assets[key].href) as ref:
                assert ds.crs == ref.crs and ds.transform == ref.transform
                np.testing.assert_array_equal(ds.read(1), ref.read(1))


def test_missing_and_outside_paths_are_404(site, serve):
    link = site / "cat" / "escape"
    if not link.exists():
        link.symlink_to(site / "wd")  # a symlink out of the served folders is not followed
    base, _ = serve(site / "cat")
    with pytest.raises(urllib.error.HTTPError) as err:
        get(base + "/cat/escape/catalog.json")
    assert err.value.code == 404
    for path in ("/cat/nope.json", "/frame.geojson", "/chain.txt", "/archives/x.tar/y",
                 "/archives/LC08_L2SP_008059_20191201_20200825_02_T1.tar/missing.TIF"):
        with pytest.raises(urllib.error.HTTPError) as err:
            get(base + path)
        assert err.value.code == 404, path
    with pytest.raises(urllib.error.HTTPError) as err:  # a step up is no file name: refused, not looked up
        get(base + "/cat/../chain.txt")
    assert err.value.code == 400


def test_working_directory_lineage_reaches_the_archives(site, serve):
    base, s = serve(site / "wd")
    assert s.root == site
    docs, assets = crawl(base, base + "/wd/catalog.json")
    by_id = {d["id"]: d for d in docs.values()}
    bestof = by_id["bestof"]
    # every product's derived_from chain reaches archive items served from the catalog
    def sources(d):
        out = set()
        for link in d["links"]:
            if link["rel"] == "derived_from":
                up = next(v for u, v in docs.items() if u == urljoin(_url_of(docs, d), link["href"]))
                out |= {up["id"]} if up.get("collection") == "landsat-c2-l2" else sources(up)
        return out
    got = sources(bestof)
    assert got and all(i.startswith("LC08_L2SP_193026_2022") for i in got)
    assert bestof["properties"]["start_datetime"] < bestof["properties"]["end_datetime"]
    for _key, url in ((k, u) for (_, i, k), u in assets.items() if i == "bestof"):
        body = get(url)[2]
        assert body == (site / "wd" / "bestof" / urlsplit(url).path.rsplit("/", 1)[1]).read_bytes()


def _url_of(docs, doc):
    return next(u for u, d in docs.items() if d is doc)


def test_results_folder(site, serve):
    base, s = serve(site / "results")
    assert s.catalog_path == "/results/catalog.json"  # the working directory it links to is served too
    docs, assets = crawl(base, base + s.catalog_path)
    exported = docs[base + "/results/bestof.json"]
    assert exported["assets"]["data"]["eo:bands"] == docs[base + "/wd/bestof/bestof.json"]["assets"]["data"]["eo:bands"]
    (link,) = [l for l in exported["links"] if l["rel"] == "derived_from"]
    assert urljoin(base + "/results/bestof.json", link["href"]) == base + "/wd/bestof/bestof.json"
    (data_url,) = [u for (d, i, k), u in assets.items() if k == "data" and d == base + "/results/bestof.json"]
    with rasterio.open(f"/vsicurl/{data_url}") as ds, rasterio.open(site / "results" / "bestof.tif") as ref:
        np.testing.assert_array_equal(ds.read(), ref.read())


def test_cli_prints_the_url(site):
    proc, s = start_serve(site / "cat")
    try:
        line = proc.stdout.readline()
        assert line == f"STAC Browser: https://radiantearth.github.io/stac-browser/#/external/http:/{s.url[7:]}/cat/catalog.json\n"
        status, headers, body = get(s.url + s.catalog_path)
        assert json.loads(body)["id"] == "imalys-archives"
    finally:
        proc.terminate()
    assert proc.wait(10) == 0  # SIGTERM (docker stop, Kubernetes) is a clean stop
    proc.stdout.close()


def test_serve_refuses_a_folder_with_nothing_to_serve(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "imalys_stac.cli", "serve", str(tmp_path / "empty"), "--port", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"error: {tmp_path / 'empty'} holds no catalog.json and no STAC item: nothing to "
                                   "serve; accepted: an archive catalog, a working directory or a results folder")


def test_api_search_matches_local_search(site):
    pystac_client = pytest.importorskip("pystac_client")
    from tests.stac_api import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "imalys_stac.cli", "serve", str(site / "cat"), "--port", str(port),
                             "--api", "--api-port", str(free_port())],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "IMALYS_NO_MALLOC_TUNING": "1"})
    try:
        api = None
        deadline = time.monotonic() + 120
        while api is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "serve exited"
            if line.startswith("STAC API:"):
                api = line.split()[2]
        client = pystac_client.Client.open(api)
        queries = [
            (Query(), {}),
            (Query(bbox=(-75.1, 1.4, -75.0, 1.5)), {"bbox": [-75.1, 1.4, -75.0, 1.5]}),
            (Query(periods=[(date(2022, 6, 10), date(2022, 7, 31))]), {"datetime": "2022-06-10T00:00:00Z/2022-07-31T23:59:59Z"}),
            (Query(collections=["sentinel-2-l2a"]), {"collections": ["sentinel-2-l2a"]}),
        ]
        for q, kw in queries:
            local = [i.id for i in search(site / "cat", q)]
            remote = sorted(i["id"] for i in client.search(max_items=None, limit=2, **kw).items_as_dicts())
            assert remote == sorted(local) and local, kw
            # our own search through the API gives the same items, hrefs fetchable
            via = search(api, q)
            assert [i.id for i in via] == local
        some = [i.id for i in search(site / "cat", Query())][:2]
        assert sorted(i["id"] for i in client.search(ids=some, max_items=None).items_as_dicts()) == sorted(some)
        item = search(api, Query(collections=["landsat-c2-l2"]))[0]
        with rasterio.open(f"/vsicurl/{item.assets['red'].href}") as ds:
            assert ds.read(1).shape == tuple(item.properties["proj:shape"])
    finally:
        proc.terminate()
    assert proc.wait(20) == 0
    proc.stdout.close()
    with pytest.raises(OSError):  # the API server stopped with it
        urllib.request.urlopen(api, timeout=2)


def test_moved_catalog_and_archives_still_import(site, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(site / "cat", moved / "cat")
    shutil.copytree(site / "archives", moved / "archives")
    items = open_items(moved / "cat")
    assert len(items) == 5
    for it in items:
        for a in it.assets.values():
            if a.href.startswith("/vsi"):
                assert str(moved / "archives") in a.href
        with rasterio.open(next(a.href for k, a in it.assets.items() if k in ("red", "B04"))) as ds:
            assert ds.width > 0
    # an update after the move reads nothing again
    rep = build_catalog([str(moved / "archives" / "*.tar"), str(moved / "archives" / "*.zip")], moved / "cat",
                        progress=False)
    assert (rep.added, rep.updated, rep.removed, rep.unchanged) == ([], [], [], 5)


def test_products_carry_titles_periods_bands_and_lineage(site):
    """Every product item: title from its name, a datetime STAC Browser shows (period products
    with start/end), eo:bands + raster:bands on every raster asset as the file holds them."""
    wd = site / "wd"
    names = [p.name for p in wd.iterdir() if (p / f"{p.name}.json").is_file()]
    assert {"bestof", "compile"} <= set(names)
    for n in names:
        d = json.loads((wd / n / f"{n}.json").read_text())
        p = d["properties"]
        assert p["title"] == n and p["datetime"]
        if p["imalys:kind"] in ("compile", "reduce"):
            assert p["start_datetime"] <= p["datetime"] <= p["end_datetime"]
        assert [l for l in d["links"] if l["rel"] == "derived_from"], n
        for key, a in d["assets"].items():
            if "data" not in a["roles"] or key.endswith(".vrt"):  # a band's view: raster:bands only
                continue
            with rasterio.open(wd / n / a["href"]) as ds:
                assert [b["name"] for b in a["eo:bands"]] == list(ds.descriptions)
                assert [b["data_type"] for b in a["raster:bands"]] == list(ds.dtypes)
                assert all(b["nodata"] == "nan" for b in a["raster:bands"])
            if p["imalys:kind"] == "import":
                assert [b.get("common_name") for b in a["eo:bands"]] == p["imalys:bands"]
    exported = json.loads((site / "results" / "bestof.json").read_text())
    assert exported["assets"]["data"]["eo:bands"] and exported["assets"]["data"]["raster:bands"]


def test_moved_working_directory_still_exports(site, tmp_path):
    moved = tmp_path / "moved-wd"
    shutil.copytree(site / "wd", moved)
    name = sorted(p.name for p in moved.iterdir() if p.name.startswith("LC08_"))[0]
    chain = tmp_path / "export.txt"
    chain.write_text(f"IMALYS [export from a moved working directory]\nhome\n\tdirectory = {moved}\n"
                     f"\tlog = {tmp_path}/log\nexport\n\tselect = {name}\n\ttarget = {tmp_path}/out/{name}.tif\n")
    run_chain(load_chain(chain))
    with rasterio.open(tmp_path / "out" / f"{name}.tif") as a, \
            rasterio.open(site / "wd" / name / f"{name}.vrt") as b:  # the recipe read in the original place
        assert a.shape == b.shape
        got, ref = a.read(4), b.read(4)  # the export masks clouds (QA); the recipe VRT does not
        clear = ~np.isnan(got)
        assert clear.mean() > 0.3
        np.testing.assert_allclose(got[clear], ref[clear], rtol=1e-6)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The tutorial: generated archives, chains 2a–2e verbatim (paths localised), quicklooks."""
    from imalys_stac.tutorial import run_demo

    root = tmp_path_factory.mktemp("demo")
    run_demo(root, size=96)
    return root


def test_tutorial_working_directory_and_results_served_whole(demo, serve):
    """After the tutorial chains: every link and every asset of the working directory and of the
    results answers, and bestof's lineage reaches the archive items of the tutorial's catalog."""
    for folder in (demo / ".imalys", demo / "results"):
        base, s = serve(folder)
        docs, assets = crawl(base, base + s.catalog_path)
        for url in assets.values():
            status, headers, _ = get(url, method="HEAD")
            assert status == 200 and int(headers["Content-Length"]) > 0, url
        archive_items = {d["id"] for d in docs.values() if d.get("collection") == "landsat-c2-l2"}
        assert archive_items, folder  # reached through derived_from links
        thumbs = [u for (d, i, k), u in assets.items() if k == "thumbnail"]
        for url in thumbs[:3]:
            Image.open(io.BytesIO(get(url)[2])).load()  # thumbnails decode


def test_api_server_stops_when_serve_is_killed(site):
    """SIGKILL leaves no STAC API server behind (it is told to stop when its parent dies)."""
    import signal

    from tests.stac_api import free_port

    api_port = free_port()
    proc, s = start_serve(site / "cat", "--api", "--api-port", str(api_port))
    api = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 120
        while not proc.stdout.readline().startswith("STAC API:"):
            assert time.monotonic() < deadline and proc.poll() is None
        assert json.loads(get(api)[2])["type"] == "Catalog"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc.stdout.close()
    deadline = time.monotonic() + 15
    while True:
        try:
            urllib.request.urlopen(api, timeout=1).close()
        except OSError:
            break
        assert time.monotonic() < deadline, "the API server outlived serve"
        time.sleep(0.2)
    import tempfile

    left = list(Path(tempfile.gettempdir()).glob(f"imalys-stac-api-{proc.pid}-*"))
    assert left  # what the killed run could not clean up …
    proc2, _ = start_serve(site / "cat", "--api", "--api-port", str(free_port()))
    try:
        while not proc2.stdout.readline().startswith("STAC API:"):
            assert proc2.poll() is None
        assert not any(d.exists() for d in left)  # … the next run removes
    finally:
        proc2.terminate()
        proc2.wait(20)
        proc2.stdout.close()


def test_serve_never_follows_a_symlink_out_of_its_folders_nor_shows_hidden_files(tmp_path):
    """Found in acceptance: a link inside a working directory to /etc was served, and so were
    the lock and state files."""
    from imalys_stac.serve import Site
    from imalys_stac.workdir import WorkDir

    wd = WorkDir(tmp_path / "wd")
    with wd.locked("test"):
        wd.prepare()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not for the web")
    (wd.path / "elsewhere").symlink_to(outside)
    site = Site(wd.path)
    assert site.resolve(site.url_path(wd.path / "catalog.json")) is not None
    assert site.resolve(site.url_path(wd.path / "elsewhere" / "secret.txt")) is None
    assert site.resolve(site.url_path(wd.path / ".imalys-stac.lock")) is None
    assert site.resolve(site.url_path(wd.path / ".imalys-stac")) is None
