"""What `imalys-stac serve` may show: a closed set, whatever documents the served folders hold.

The set is the folder asked for plus what imalys-stac's own documents reference and that is itself
imalys-stac's own (an archive catalog written by `catalog`, a working directory made by a chain,
the archives such a catalog lists). Found in acceptance (issue 20): a foreign STAC item whose links
said ``../../…`` widened the served tree to ``/``, and files in hidden folders (``.secret/``,
``.git/``, a run's ``.bestof.tmp-*`` scratch) were served because only the last path segment was
checked. The site is checked in process here (no server); tests/test_serve_system.py asks a
running server the same questions over HTTP.
"""
from __future__ import annotations

import json
import os
import tarfile
from datetime import date
from pathlib import Path
from urllib.parse import quote

import pytest

from imalys_stac.serve import BadRequest, Opened, Site, parse_range
from imalys_stac.stac import build_catalog
from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive
from imalys_stac.workdir import WorkDir

CANARY = b"CANARY-not-for-the-web-7f3a"


def _canary(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(CANARY + b" " + str(path).encode())


def build_site(root: Path) -> dict[str, Path]:
    """A tree as a user has it: archives/ with a catalog cat/ written by `catalog`, a working
    directory wd/ (made as a chain makes it) with one product derived from a catalog item, an
    exported results/ folder, and around and inside them files that must never be served (each
    holds CANARY): a folder outside, hidden folders, foreign STAC documents whose links lead up
    and out, symlinks out."""
    arch = root / "archives"
    write_landsat_archive(arch, SceneSpec(sensor="LC08", path=193, row=26, acquired=date(2022, 6, 1), size=16,
                                          cloud_cover=0.1, seed=1), landscape=Landscape(seed=1))
    _canary(arch / "notes.txt")  # beside the archives, but no catalog lists it
    rep = build_catalog([str(arch / "*.tar")], root / "cat", progress=False)
    assert len(rep.added) == 1
    (item_id,) = rep.added
    item_file = next((root / "cat").glob(f"*/{item_id}/{item_id}.json"))

    wd = WorkDir(root / "wd")
    with wd.locked("test"):
        wd.prepare()
    prod = root / "wd" / "prod"
    prod.mkdir()
    (prod / "prod.tif").write_bytes(b"II*\0pixels of the product")
    (prod / "prod.json").write_text(json.dumps({
        "type": "Feature", "stac_version": "1.1.0", "id": "prod", "geometry": None,
        "properties": {"datetime": "2022-06-01T00:00:00Z", "imalys:kind": "import"},
        "links": [{"rel": "derived_from", "href": str(item_file), "type": "application/json"}],
        "assets": {"data": {"href": "./prod.tif", "type": "image/tiff"}}}))

    outside = root / "outside"
    _canary(outside / "secret.txt")
    (outside / "catalog.json").write_text(json.dumps(  # a foreign catalog: not followed
        {"type": "Catalog", "id": "x", "stac_version": "1.1.0", "description": "x",
         "links": [{"rel": "item", "href": "./secret.txt"}]}))
    _canary(root / "top-secret.txt")  # in the common parent of everything served
    for hidden in ("wd/.secret/token.txt", "wd/.git/config", "wd/.bestof.tmp-4242/scratch.tif",
                   "wd/prod/.hidden.tif", "results/.cache/x.json", "cat/.git/HEAD"):
        _canary(root / hidden)
    foreign = {"type": "Feature", "stac_version": "1.1.0", "id": "downloaded", "geometry": None,
               "properties": {"datetime": "2022-06-01T00:00:00Z"},
               "links": [{"rel": "derived_from", "href": "../" * 12 + "etc/passwd"},
                         {"rel": "related", "href": "../outside/secret.txt"},
                         {"rel": "child", "href": "../outside/catalog.json"},
                         {"rel": "via", "href": str(root / "top-secret.txt")}],
               "assets": {"x": {"href": "../../../../../../../../"}}}
    (root / "wd" / "downloaded.json").write_text(json.dumps(foreign))
    (prod / "colleague.json").write_text(json.dumps(dict(foreign, id="colleague")))
    (root / "wd" / "link-out").symlink_to(outside)
    (prod / "link-file.txt").symlink_to(outside / "secret.txt")
    (root / "wd" / "link-hidden").symlink_to(root / "wd" / ".secret")

    results = root / "results"
    (results / "bestof.tif").write_bytes(b"II*\0exported pixels")
    (results / "bestof.json").write_text(json.dumps({
        "type": "Feature", "stac_version": "1.1.0", "id": "bestof", "geometry": None,
        "properties": {"datetime": "2022-06-01T00:00:00Z", "imalys:provenance": {"chain": "x"}},
        "links": [{"rel": "derived_from", "href": "../wd/prod/prod.json"}],
        "assets": {"data": {"href": "./bestof.tif", "type": "image/tiff"}}}))
    (results / "downloaded.json").write_text(json.dumps(foreign))
    return {"root": root, "archive": next(arch.glob("*.tar")), "item": item_file}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> dict[str, Path]:
    return build_site(tmp_path_factory.mktemp("closed"))


def _body(found) -> bytes | None:
    if found is None:
        return None
    kind, what = found
    if isinstance(what, Opened):
        try:
            return b"".join(what.chunks(0, what.size))
        finally:
            what.close()
    return what if isinstance(what, bytes) else b"?"


def _url(site: Site, path: Path) -> str:
    return "/" + quote(os.fsencode(os.path.relpath(path, site.root)), safe="/")


def expected_readable(root: Path, path: Path) -> bool:
    """The closed set, written out independently of serve's code: non-hidden regular files
    below results/, wd/ and cat/ that are no symlinks, and the catalogued archive."""
    rel = path.relative_to(root)
    if path.is_symlink() or any(p.startswith(".") for p in rel.parts):
        return False
    if rel.parts[0] in ("results", "wd", "cat"):
        return True
    return rel.parts[0] == "archives" and path.suffix == ".tar"


def test_no_file_outside_the_closed_set_is_readable(tree):
    root = tree["root"]
    site = Site(root / "results")
    assert site.root == root  # the URL tree starts at the common parent …
    assert {r.path for r in site.roots} == {root / "results", root / "wd", root / "cat", tree["archive"]}
    checked = 0
    for folder, dirs, files in os.walk(root):  # every file of the tree, hidden and linked ones too
        for name in files + [d for d in dirs if Path(folder, d).is_symlink()]:
            path = Path(folder, name)
            body = _body(site.resolve(_url(site, path)))
            if expected_readable(root, path):
                assert body is not None, path
            else:
                assert body is None, f"{path} is served"
            checked += 1
    assert checked > 20
    for url in ("/", "/outside/", "/archives/", "/top-secret.txt"):  # … which is not served itself
        found = site.resolve(url)
        assert found is None or found[0] == "index", url
    body = _body(site.resolve("/wd/link-out/secret.txt"))  # a symlinked folder leads nowhere
    assert body is None
    body = _body(site.resolve("/wd/link-hidden/token.txt"))
    assert body is None


def test_catalogued_archive_members_are_served_but_nothing_beside_them(tree):
    root, archive = tree["root"], tree["archive"]
    site = Site(root / "cat")
    with tarfile.open(archive) as t:
        member = next(m for m in t.getmembers() if m.isfile())
        ref = t.extractfile(member).read()
    assert _body(site.resolve(_url(site, archive) + "/" + quote(member.name))) == ref
    assert _body(site.resolve(_url(site, archive / "nope.TIF"))) is None
    assert _body(site.resolve("/archives/notes.txt")) is None


def test_foreign_documents_widen_nothing(tree):
    """Serving the working directory alone: its own product leads to the archive catalog (ours);
    the foreign items beside it lead nowhere."""
    root = tree["root"]
    site = Site(root / "wd")
    assert {r.path for r in site.roots} == {root / "wd", root / "cat", tree["archive"]}
    assert CANARY not in (_body(site.resolve("/wd/downloaded.json")) or b"")


@pytest.mark.parametrize("url", [
    "/wd/prod/%00prod.json", "/wd/prod\0/prod.json", "/wd/%2e%2e/top-secret.txt", "/wd/..%2ftop-secret.txt",
    "/wd/prod/..%5c..%5ctop-secret.txt", "/wd\\..\\top-secret.txt", "/wd/../top-secret.txt", "/wd/./prod/prod.json",
    "/wd/%2E%2E/%2E%2E/etc/passwd", "*", "wd/prod/prod.json",
])
def test_traversal_and_nul_are_bad_requests(tree, url):
    site = Site(tree["root"] / "wd")
    with pytest.raises(BadRequest):
        site.resolve(url)


def test_a_hidden_folder_named_to_serve_is_served_but_nothing_hidden_below_it(tmp_path):
    """The tutorial's working directory is `.imalys`: a folder the user names is served even if
    hidden; the hidden-name rule applies below it."""
    wd = WorkDir(tmp_path / ".imalys")
    with wd.locked("test"):
        wd.prepare()
    _canary(wd.path / ".bestof.tmp-1" / "x.tif")
    site = Site(wd.path)
    assert _body(site.resolve(site.catalog_path)) is not None
    assert _body(site.resolve(_url(site, wd.path / ".bestof.tmp-1" / "x.tif"))) is None
    assert _body(site.resolve(_url(site, wd.path / ".imalys-stac"))) is None


@pytest.mark.parametrize(("header", "size", "expected"), [
    ("bytes=0-9", 100, (0, 9)),
    ("bytes=90-", 100, (90, 99)),
    ("bytes=-10", 100, (90, 99)),
    ("bytes=95-1000", 100, (95, 99)),
    ("bytes=0-" + "9" * 5000, 100, (0, 99)),  # int() refuses 4300+ digits: that was a traceback
    ("bytes=" + "9" * 5000 + "-", 100, "bad"),
    ("bytes=-" + "9" * 5000, 100, (0, 99)),
    ("bytes=" + "0" * 5000 + "5-6", 100, (5, 6)),
    ("bytes=100-", 100, "bad"),
    ("bytes=5-4", 100, "bad"),
    ("bytes=-0", 100, "bad"),
    ("bytes=abc", 100, "bad"),
    ("bytes=1-2-3", 100, "bad"),
    ("bytes=-", 100, "bad"),
    ("bytes=٣-٤", 100, "bad"),  # Unicode digits are no digits here
    ("items=0-9", 100, None),  # another unit: ignored (RFC 9110)
    ("bytes=0-1,5-6", 100, None),  # several ranges: the whole file (allowed)
    ("", 100, None),
])
def test_range_header(header, size, expected):
    assert parse_range(header, size) == expected


def test_latin1_file_names_are_served(tmp_path):
    """A folder or file whose name is Latin-1 bytes (not UTF-8) round-trips through its URL."""
    wd = WorkDir(tmp_path / "wd")
    with wd.locked("test"):
        wd.prepare()
    folder = Path(os.fsdecode(bytes(wd.path / "r") + b"\xe9sultat"))
    folder.mkdir()
    f = folder / os.fsdecode(b"caf\xe9.tif")
    f.write_bytes(b"latin-1 bytes")
    site = Site(wd.path)
    url = site.url_path(f)
    assert url.endswith("/r%E9sultat/caf%E9.tif")
    assert _body(site.resolve(url)) == b"latin-1 bytes"
