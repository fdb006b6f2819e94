"""Names GDAL can open for paths that are not UTF-8 (a folder named in Latin-1, ``caf\\xe9``).

Python keeps the bytes of such a name that are not UTF-8 as lone surrogates (``'caf\\udce9'``,
PEP 383). rasterio hands every name to GDAL as UTF-8 text and so refuses these names
(``UnicodeEncodeError: 'utf-8' codec can't encode character '\\udce9'``), although GDAL itself
passes a name's bytes to the file system unchanged (POSIX). :func:`gdal_name` therefore gives
GDAL a plain name that reaches the same bytes: a symbolic link, in a folder of this process's
own, to the deepest folder or file whose name is not UTF-8; the rest of the name stays as it is
(an archive member, a file written into the folder). UTF-8 names, URLs and ``/vsi…/`` names of
UTF-8 paths are returned unchanged, so nothing changes for them.

The links are made in the process that opens the file (the runner, a Dask worker), when it
opens it, and removed when that process ends: names stored in files (items, VRTs, logs) keep
the user's own path, never a link. :func:`shown` turns a link name in a message (GDAL's text)
back into the user's path.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
import threading

from .text import shown_bytes

#: GDAL's virtual file system prefixes put before a path (``/vsitar/``, ``/vsizip/``, ``/vsigzip/`` …)
_VSI_PREFIX = re.compile(r"^((?:/vsi[a-z0-9_]+/)+)")
#: what a link's name keeps of the name it stands for: letters GDAL needs to know the kind of file
#: (``.tar``, ``.zip``, ``.tif``), the rest as ``_``
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9._-]")

_lock = threading.Lock()
_folder: dict[int, str] = {}  # process id → this process's folder of links
_links: dict[str, str] = {}  # link → the name it stands for (for messages)


def is_utf8(name: str) -> bool:
    """Whether ``name`` can be given to GDAL as it is (no lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def gdal_name(name: str | os.PathLike[str]) -> str:
    """``name`` as GDAL can open it: unchanged when it is UTF-8, else with its non-UTF-8 part
    replaced by a link (see the module's doc). Works for plain paths and ``/vsitar/`` paths alike,
    for files that exist and for files about to be written into a folder named in Latin-1 (the
    link is to the folder). A file that does not exist yet and whose own name is not UTF-8 cannot
    be made by GDAL under that name: :class:`~imalys_stac.errors.InputError` says so."""
    text = os.fspath(name)
    if is_utf8(text):
        return text
    m = _VSI_PREFIX.match(text)
    prefix = m.group(1) if m else ""
    path = text[len(prefix):]
    parts = path.split("/")
    last = max(i for i, part in enumerate(parts) if not is_utf8(part))
    head = os.path.abspath("/".join(parts[: last + 1]))
    if last == len(parts) - 1 and not os.path.lexists(head):
        from .errors import InputError

        raise InputError(f"cannot write {shown_bytes(head)}: its file name is not UTF-8, and GDAL makes files "
                         "only under UTF-8 names",
                         hint="name the file in ASCII or UTF-8; a folder named in Latin-1 is fine")
    return prefix + "/".join([_link(head), *parts[last + 1:]])


def _link(target: str) -> str:
    with _lock:
        pid = os.getpid()
        folder = _folder.get(pid)
        if folder is None:  # also in a forked child: the parent removes its own folder when it ends
            folder = _folder[pid] = tempfile.mkdtemp(prefix="imalys-names-")
            atexit.register(_remove, folder, pid)
        raw = os.fsencode(target)
        plain = _NOT_PLAIN.sub("_", os.path.basename(raw).decode("ascii", "replace"))
        link = os.path.join(folder, f"{hashlib.sha1(raw).hexdigest()[:12]}-{plain}")
        if not os.path.islink(link):
            os.symlink(raw, link)
        _links[link] = target
    return link


def _remove(folder: str, pid: int) -> None:
    if os.getpid() == pid:
        shutil.rmtree(folder, ignore_errors=True)


def shown(text: str) -> str:
    """``text`` (a GDAL message) with each link :func:`gdal_name` made replaced by the user's path."""
    with _lock:
        links = list(_links.items())
    for link, target in links:
        if link in text:
            text = text.replace(link, target)
    return text


def vrt_bytes(text: str) -> bytes:
    """A VRT's XML as the bytes to write: UTF-8, with a file name that is not UTF-8 kept as the
    bytes it has on disk (GDAL reads a VRT's source names byte for byte and opens exactly those;
    ``Path.write_text`` would refuse the text)."""
    return text.encode("utf-8", "surrogateescape")
