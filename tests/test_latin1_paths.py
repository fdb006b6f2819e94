"""Folders whose names are Latin-1 bytes (``caf\\xe9``, not UTF-8) all along a chain: archives
selected there, the working directory there, exports there, the chain file itself saved in Latin-1.

Was (issue 20): the folder was found, but the import ended in ``internal error (UnicodeEncodeError
…)`` (GDAL's /vsitar/ names go through rasterio as UTF-8 text), and so did the recipe VRTs, the
items' relative hrefs, the run log's lines and the export. The reference for the pixels is the same
chain run on the same archives in plain-named folders (the shared ``finished_workdir``) and, for the
recipe VRT that names archive members by their bytes, the members read with :mod:`tarfile`.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile

from imalys_stac.chain import ChainError, load_chain
from imalys_stac.commands import run_chain
from imalys_stac.errors import InputError
from imalys_stac.gdalnames import gdal_name, shown

from .conftest import RED_NIR


def latin1(base: Path | str, *names: bytes) -> Path:
    """``base/name/…`` with names given as bytes (a Latin-1 ``é`` is the byte 0xE9)."""
    return Path(os.fsdecode(os.fsencode(str(base)) + b"".join(b"/" + n for n in names)))


def write_latin1_chain(path: Path, text: str) -> Path:
    """The chain saved as a Windows editor in Western Europe saves it: the é of a path is one byte."""
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


@pytest.fixture(scope="module")
def latin1_run(tmp_path_factory, synthetic_archives):
    """The usual bestof chain (as :func:`conftest.bestof_chain`) with archives, working directory
    and exports in a folder named ``caf\\xe9``, the chain file saved in Latin-1."""
    root = tmp_path_factory.mktemp("latin1")
    cafe = latin1(root, b"caf\xe9")
    archives = latin1(root, b"d\xe9p\xf4t")  # another folder: the items' hrefs name it
    archives.mkdir()
    cafe.mkdir()  # the user's folder exists (a new one named in a Latin-1 chain is made in UTF-8)
    for a in synthetic_archives.archives:
        shutil.copyfile(a, archives / a.name)
    chain = write_latin1_chain(root / "chain.txt", f"""IMALYS [latin1]
home
\tdirectory = {cafe}/wd
import
\tselect = {archives}/*.tar
{RED_NIR}compile
\tsearch = LC08*
reduce
\tselect = compile
\texecute = bestof
\tpreserve = bands
export
\tselect = bestof
\ttarget = {cafe}/bestof.tif
export
\tselect = compile
\ttarget = {cafe}/stack.vrt
""")
    assert b"caf\xe9" in chain.read_bytes()  # not UTF-8: the chain really is Latin-1
    ctx = run_chain(load_chain(chain))
    return ctx, cafe


def test_chain_in_latin1_folders_gives_the_plain_folders_result(latin1_run, finished_workdir):
    ctx, cafe = latin1_run
    assert {b"bestof.tif", b"stack.tif", b"stack.vrt", b"wd"} <= set(os.listdir(os.fsencode(cafe)))
    assert ctx.workdir.path == cafe / "wd"  # the working directory is in the Latin-1 folder, not a UTF-8 twin
    with rasterio.open(gdal_name(cafe / "bestof.tif")) as got, rasterio.open(finished_workdir.export) as want:
        assert got.count == want.count == 2 and got.transform == want.transform and got.crs == want.crs
        np.testing.assert_array_equal(got.read(), want.read())


def test_exported_vrt_in_a_latin1_folder_reads_its_cog(latin1_run):
    ctx, cafe = latin1_run
    with rasterio.open(gdal_name(cafe / "stack.vrt")) as vrt, rasterio.open(gdal_name(cafe / "stack.tif")) as tif:
        assert vrt.count == tif.count == 6  # 3 dates × red, nir08
        np.testing.assert_array_equal(vrt.read(), tif.read())


def _member(archive: Path, suffix: str) -> np.ndarray:
    with tarfile.open(archive) as tar:
        (name,) = [n for n in tar.getnames() if n.endswith(suffix)]
        data = tar.extractfile(name).read()
    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.read(1)


def test_recipe_vrt_names_latin1_archives_by_their_bytes(latin1_run, synthetic_archives):
    """The import product's VRT (GDAL reads a source name byte for byte) against the tar members."""
    ctx, cafe = latin1_run
    name = sorted(n for n in ctx.workdir.names() if n.startswith("LC08"))[0]
    vrt = ctx.workdir.product_folder(name) / f"{name}.vrt"
    assert b"/d\xe9p\xf4t/LC08_" in vrt.read_bytes()
    archive = latin1(cafe.parent, b"d\xe9p\xf4t") / synthetic_archives.archives[0].name
    with rasterio.open(gdal_name(vrt)) as ds:
        red = ds.read(1)
    dn = _member(archive, "_SR_B4.TIF").astype(np.float64)
    want = np.where(dn == 0, np.nan, dn * 2.75e-05 - 0.2)  # Landsat C2 L2 surface reflectance scaling
    np.testing.assert_allclose(red, want, rtol=1e-6, equal_nan=True)


def _files(folder: Path) -> list[bytes]:
    out = []
    for root, _, files in os.walk(os.fsencode(folder)):
        out += [os.path.join(root, f) for f in files]
    return out


def _strings(o):
    if isinstance(o, str):
        yield o
    elif isinstance(o, dict):
        for v in o.values():
            yield from _strings(v)
    elif isinstance(o, list):
        for v in o:
            yield from _strings(v)


def test_items_name_latin1_archives_with_percent_encoded_bytes(latin1_run):
    """Every JSON file is UTF-8; hrefs percent-encode the byte (a valid URL) and resolve back."""
    from imalys_stac.stac.hrefs import absolute_href

    ctx, cafe = latin1_run
    hrefs = []
    for f in _files(cafe):
        if f.endswith(b".json"):
            doc = json.loads(Path(os.fsdecode(f)).read_bytes().decode("utf-8"))  # strict UTF-8
            hrefs += [(f, h) for h in _strings(doc) if h.endswith((".TIF", ".tar"))]
    sources = [(f, h) for f, h in hrefs if f.endswith(b"sources.json") and h.endswith(".TIF")]
    assert sources and all(h.startswith("../../../d%E9p%F4t/LC08_") and h.isascii() for _, h in sources)
    for f, h in sources:  # each resolves to the archive and member, found by their bytes
        archive, _, member = absolute_href(h, os.path.dirname(os.fsdecode(f))).removeprefix("/vsitar/").partition(".tar/")
        assert os.path.isfile(archive + ".tar") and member.startswith("LC08_")


def test_run_log_shows_the_latin1_byte(latin1_run, capfd):
    ctx, cafe = latin1_run
    text = Path(ctx.runlog.path).read_text(encoding="utf-8")  # strict: the log stays UTF-8
    assert "caf\\xe9/bestof.tif" in text and "target = " in text
    assert "Logging error" not in capfd.readouterr().err


def test_export_to_a_latin1_file_name_is_refused_at_its_line(latin1_run, tmp_path):
    """GDAL makes files only under UTF-8 names: a located error with the fix, nothing written.
    (A new name written in a Latin-1 chain is made in UTF-8; this is a file that exists in Latin-1.)"""
    ctx, cafe = latin1_run
    old = latin1(tmp_path, b"r\xe9sultat.tif")
    old.write_bytes(b"an earlier result")
    chain = write_latin1_chain(tmp_path / "c.txt", f"IMALYS x\nhome\n\tdirectory = {ctx.workdir.path}\n"
                                                   f"export\n\tselect = bestof\n\ttarget = {tmp_path}/r\udce9sultat.tif\n")
    with pytest.raises(ChainError) as info:
        load_chain(chain)
    e = info.value
    assert (e.line, e.command, e.parameter) == (6, "export", "target")
    assert "r\\xe9sultat.tif is not UTF-8" in str(e) and "name the file in ASCII or UTF-8" in str(e)
    assert sorted(os.listdir(tmp_path)) == sorted(["c.txt", old.name])
    assert old.read_bytes() == b"an earlier result"


def test_catalog_and_search_in_a_latin1_folder(synthetic_archives, tmp_path):
    from imalys_stac.api import catalog, search

    folder = latin1(tmp_path, b"d\xe9p\xf4t")
    folder.mkdir()
    shutil.copyfile(synthetic_archives.archives[0], folder / synthetic_archives.archives[0].name)
    catalog(folder, folder / "cat")
    assert (folder / "cat" / "items.parquet").is_file()
    (item,) = search(folder / "cat")
    assert item.id == synthetic_archives.archives[0].name.removesuffix(".tar")


# ------------------------------------------------------------------ gdal_name itself (no GDAL)
def test_gdal_name_leaves_utf8_names_alone():
    for name in ("/data/café/x.tif", "/vsitar//data/x.tar/m.TIF", "https://example.org/x.tif", "rel/x.tif"):
        assert gdal_name(name) == name


def test_gdal_name_links_the_latin1_folder_and_keeps_the_rest(tmp_path):
    cafe = latin1(tmp_path, b"caf\xe9")
    (cafe / "a.tar").parent.mkdir()
    (cafe / "a.tar").write_bytes(b"x")
    name = gdal_name(f"/vsitar/{cafe}/a.tar/LC08_SR_B4.TIF")
    assert name.startswith("/vsitar//") and name.endswith("/a.tar/LC08_SR_B4.TIF") and name.isascii()
    link = name[len("/vsitar/"):-len("/a.tar/LC08_SR_B4.TIF")]
    assert os.path.samefile(link, cafe)
    assert shown(f"cannot open {link}/a.tar") == f"cannot open {cafe}/a.tar"
    # a new file in the folder is written through the link into the folder itself
    Path(gdal_name(cafe / "new.tif")).write_bytes(b"y")
    assert (cafe / "new.tif").read_bytes() == b"y"


def test_gdal_name_refuses_to_make_a_file_under_a_latin1_name(tmp_path):
    with pytest.raises(InputError) as info:
        gdal_name(latin1(tmp_path, b"r\xe9sultat.tif"))
    assert "r\\xe9sultat.tif: its file name is not UTF-8" in str(info.value)
    assert "name the file in ASCII or UTF-8" in info.value.hint


def test_json_on_stdout_escapes_latin1_bytes(capsys):
    from imalys_stac.cli import _print_json

    path = os.fsdecode(b"/data/caf\xe9/x.tif")
    _print_json({"file": path})
    out = capsys.readouterr().out
    assert "\\udce9" in out and out.isascii()
    assert json.loads(out)["file"] == path  # Python's json reads the same path back


def test_gdal_messages_name_the_users_folder_not_the_link(tmp_path):
    from imalys_stac.archives.container import unreadable_pixels

    cafe = latin1(tmp_path, b"caf\xe9")
    cafe.mkdir()
    href = f"{cafe}/missing.tif"
    with pytest.raises(rasterio.errors.RasterioIOError) as info:
        rasterio.open(gdal_name(href))
    assert "imalys-names-" in str(info.value)  # GDAL saw the link
    message = str(unreadable_pixels(href, info.value))
    assert f"{cafe}/missing.tif" in message and "imalys-names-" not in message


def test_to_cog_into_a_latin1_folder(tmp_path):
    """The API's writer: the COG lands in the folder itself (not beside a link), its item beside it."""
    import rioxarray  # noqa: F401  (the .rio accessor)
    import xarray as xr

    import imalys_stac as ims

    arr = xr.DataArray(np.arange(32 * 32, dtype=np.float32).reshape(1, 32, 32), dims=("band", "y", "x"),
                       coords={"band": ["a"], "y": 5e6 - 30 * np.arange(32) - 15, "x": 6e5 + 30 * np.arange(32) + 15})
    arr = arr.rio.write_crs(32632)
    cafe = latin1(tmp_path, b"caf\xe9")
    cafe.mkdir()
    ims.to_cog(arr, cafe / "x.tif")
    assert json.loads((cafe / "x.json").read_bytes())["assets"]["data"]["href"] == "./x.tif"
    assert sorted(os.listdir(os.fsencode(cafe))) == [b"x.json", b"x.tif"]
    with rasterio.open(gdal_name(cafe / "x.tif")) as ds:
        np.testing.assert_array_equal(ds.read(1), arr.values[0])
