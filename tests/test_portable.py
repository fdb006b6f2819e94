"""A working directory moves with its archive folder.

A chain runs in one folder; the working directory and the archives are copied together to
another, the original is deleted, and compile, reduce and export run on the copy. What they
compute there must equal what the original computed (the exported COGs, pixel for pixel), and
no item or stored source item in the copy may name the old place.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import rasterio

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain

from .conftest import RED_NIR


def _chain(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_moved_working_directory_imports_exports_and_computes(synthetic_archives, tmp_path):
    old = tmp_path / "old"
    (old / "archives").mkdir(parents=True)
    for a in synthetic_archives.archives:
        shutil.copy(a, old / "archives" / a.name)
    run_chain(load_chain(_chain(old / "first.txt", f"""IMALYS [first]
home
\tdirectory = {old}/wd
\tclear = true
import
\tselect = {old}/archives/*.tar
{RED_NIR}compile
\tsearch = LC08*
reduce
\tselect = compile
\texecute = bestof
\tpreserve = bands
export
\tselect = bestof
\ttarget = {old}/out/bestof.tif
""")))
    with rasterio.open(old / "out" / "bestof.tif") as ds:
        reference = ds.read()

    new = tmp_path / "elsewhere" / "new"
    new.parent.mkdir()
    shutil.copytree(old / "wd", new / "wd")
    shutil.copytree(old / "archives", new / "archives")
    shutil.rmtree(old)

    # nothing the copy reads names the old place (the command that made a product is provenance:
    # the chain's parameters as written; a sources file keeps where it was written, the fallback
    # for a working directory moved without its archives)
    for path in (new / "wd").rglob("*"):
        if path.suffix == ".json" and path.name != ".last-import.json":
            data = json.loads(path.read_text(encoding="utf-8"))
            (data.get("properties") or {}).pop("imalys:command", None)
            data.pop("imalys:written_in", None)
            assert str(old) not in json.dumps(data), path
        elif path.suffix == ".vrt" and "/vsitar/" not in path.read_text(encoding="utf-8"):
            # a recipe VRT names archive members absolutely (GDAL resolves no relative /vsitar/)
            assert str(old) not in path.read_text(encoding="utf-8"), path

    run_chain(load_chain(_chain(new / "second.txt", f"""IMALYS [second]
home
\tdirectory = {new}/wd
\tclear = false
compile
\tsearch = LC08*
\ttarget = again
reduce
\tselect = again
\texecute = bestof
\tpreserve = bands
\ttarget = best2
export
\tselect = best2
\ttarget = {new}/out/best2.tif
export
\tselect = again
\ttarget = {new}/out/stack.tif
""")))
    with rasterio.open(new / "out" / "best2.tif") as ds:
        assert np.array_equal(ds.read(), reference, equal_nan=True)
    item = json.loads((new / "out" / "best2.json").read_text())
    link = next(l for l in item["links"] if l["rel"] == "derived_from")
    assert not link["href"].startswith("/") and (new / "out" / link["href"]).resolve() == new / "wd" / "best2" / "best2.json"
    with rasterio.open(new / "out" / "stack.tif") as ds:
        assert ds.count == 2 * len(synthetic_archives.archives)


def test_remote_archive_members_keep_their_url(tmp_path):
    """An archive read over HTTP (``/vsitar//vsicurl/http://…``) has no local path to make relative:
    its href is kept exactly (os.path.relpath made ``http:/host`` of it, which GDAL cannot open)."""
    from imalys_stac.stac.hrefs import absolute_href, relative_href

    for href in ("/vsitar//vsicurl/http://127.0.0.1:8000/a/LC08.tar/LC08_SR_B4.TIF",
                 "/vsizip//vsis3/bucket/S2A.zip/S2A/GRANULE/B04.jp2",
                 "https://example.org/items/LC08_SR_B4.TIF"):
        assert relative_href(href, tmp_path) == href
        assert absolute_href(relative_href(href, tmp_path), tmp_path) == href
