"""How an archive member is addressed, in a catalog file and in memory.

In memory (what GDAL, stackstac and the cube read) an archive member is a GDAL path::

    /vsitar//data/landsat/LC08_..._T1.tar/LC08_..._SR_B4.TIF
    /vsizip//data/s2/S2A_MSIL2A_....zip/S2A_....SAFE/GRANULE/.../R10m/..._B02_10m.jp2

In a catalog file the same member is a *relative URL that treats the archive as a folder*,
relative to the item file (STAC resolves hrefs against the document that holds them)::

    ../../LC08_..._T1.tar/LC08_..._SR_B4.TIF

so an archive folder and its catalog can be moved or copied together, and served over HTTP:
``imalys-stac serve`` answers ``.../LC08_..._T1.tar/LC08_..._SR_B4.TIF`` with the member's bytes
(with Range support), and GDAL reads it through ``/vsicurl/``. :func:`absolute_href` turns the
relative form back into the GDAL path when an item is read (see ``search.read_item``).
"""
from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from urllib.parse import quote, unquote

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
_VSI = re.compile(r"^/(vsitar|vsizip)/(/.*?\.(?:tar|tar\.gz|tgz|zip))/(.+)$", re.IGNORECASE)


def split_vsi(href: str) -> tuple[str, str, str] | None:
    """(handler, absolute archive path, member) of a ``/vsitar/`` or ``/vsizip/`` href, else None."""
    m = _VSI.match(href)
    return (m.group(1).lower(), m.group(2), m.group(3)) if m else None


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def vsi_prefix(archive: str) -> str:
    return "/vsizip/" if archive.lower().endswith(".zip") else "/vsitar/"


def relative_href(href: str, base_dir: str | os.PathLike) -> str:
    """The portable form of ``href`` for a document in ``base_dir``: archive members as
    ``<relative archive path>/<member>``, local absolute paths relative; URLs unchanged."""
    base = os.fspath(base_dir)
    vsi = split_vsi(href)
    if vsi is not None:
        _, archive, member = vsi
        rel = os.path.relpath(archive, base)
        return quote(Path(rel).as_posix() + "/" + member, safe="/")
    if href.startswith("/") and not href.startswith("/vsi"):
        return quote(Path(os.path.relpath(href, base)).as_posix(), safe="/")
    return href


def portable_hrefs(d: dict, base_dir: str | os.PathLike) -> dict:
    """An item dict with its asset hrefs and its archive path (``imalys:archive``) relative to
    ``base_dir`` (see :func:`relative_href`); links are left as they are."""
    from ..product_records import ARCHIVE

    d = dict(d)
    d["assets"] = {k: dict(a, href=relative_href(a["href"], base_dir)) if "href" in a else a
                   for k, a in (d.get("assets") or {}).items()}
    props = d.get("properties") or {}
    if props.get(ARCHIVE):
        d["properties"] = dict(props, **{ARCHIVE: relative_href(props[ARCHIVE], base_dir)})
    return d


def local_path(href: str, base_dir: str | os.PathLike) -> str:
    """``href`` (relative, percent-encoded) resolved against ``base_dir`` as a normalised local path."""
    return os.path.normpath(os.path.join(os.fspath(base_dir), unquote(href)))


def split_archive_path(path: str) -> tuple[str, str] | None:
    """(archive file, member) when a component of ``path`` is an archive file, else None."""
    parts = Path(path).parts
    for i in range(1, len(parts)):
        if is_archive_name(parts[i - 1]):
            archive = os.path.join(*parts[:i])
            if os.path.isfile(archive):
                return archive, posixpath.join(*parts[i:])
    return None


def absolute_href(href: str, base_dir: str | os.PathLike) -> str:
    """The in-memory form of a catalog href: relative archive members become ``/vsitar/``
    (``/vsizip/``) paths, other relative hrefs absolute local paths; absolute ones are unchanged."""
    if "://" in href or href.startswith("/"):
        return href
    path = local_path(href, base_dir)
    inside = split_archive_path(path)
    if inside is not None:
        archive, member = inside
        return f"{vsi_prefix(archive)}{Path(archive).as_posix()}/{member}"
    return path
