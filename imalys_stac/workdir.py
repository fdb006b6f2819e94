"""The working directory: a folder of products that is itself a static STAC catalog.

Each product lives in `<dir>/<name>/<name>.json` (a STAC item) beside its files; `catalog.json`
links them all, so pystac and STAC Browser can open the folder. Products are addressed by bare
name as in Imalys (`select = compile`), and `search` patterns match names; an ending such as
`.hdr` in an old chain (the original's ENVI header) is ignored when matching.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

import pystac

MARKER = ".imalys-stac"
CATALOG_ID = "imalys-working-directory"
#: endings that old chains append to image names (the original's ENVI files, GeoTIFFs…)
NAME_ENDINGS = (".hdr", ".bsq", ".img", ".tif", ".tiff", ".json", ".vrt")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class WorkdirError(Exception):
    """A problem with the working directory that the user must resolve."""


def strip_ending(name: str) -> str:
    low = name.lower()
    for ending in NAME_ENDINGS:
        if low.endswith(ending):
            return name[: -len(ending)]
    return name


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON through a temporary file in the same folder and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a catalog is meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class WorkDir:
    """One working directory (the `home` of a chain)."""

    def __init__(self, path: Path):
        self.path = Path(path).expanduser().absolute()

    # -- life cycle -----------------------------------------------------------------------------
    def prepare(self, clear: bool = False) -> None:
        """Create the folder (with its parents) and, with `clear`, empty it safely.

        The original runs `rm -R dir/*`, so a typo in `directory` could wipe a user's folder. We
        clear only a folder this tool made (it holds our marker) or an empty one.
        """
        if self.path.exists() and not self.path.is_dir():
            raise WorkdirError(f"{self.path} exists and is not a folder")
        # Only a folder we create (or find empty) becomes ours: a user's non-empty folder used with
        # clear = false must never get the marker, or a later clear = true would empty it.
        ours = not self.path.exists() or not any(self.path.iterdir()) or (self.path / MARKER).exists()
        if clear and self.path.exists() and any(self.path.iterdir()) and not (self.path / MARKER).exists():
            raise WorkdirError(
                f"refusing to clear {self.path}: it is not empty and was not made by imalys-stac "
                f"(no {MARKER} marker inside). Choose a new or empty folder for `directory`, "
                "or empty it yourself if it really is a working directory"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        if clear:
            for entry in self.path.iterdir():
                if entry.name == MARKER:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        marker = self.path / MARKER
        if ours and not marker.exists():
            marker.write_text("This folder is an imalys-stac working directory; `home clear = true` may empty it.\n")
        if not (self.path / "catalog.json").exists():
            self.write_catalog()

    # -- products ---------------------------------------------------------------------------------
    def product_folder(self, name: str) -> Path:
        if not _NAME_OK.match(name):
            raise WorkdirError(
                f"{name!r} is not a usable product name (letters, digits, '_', '-', '.'; no path)"
            )
        return self.path / name

    def item_path(self, name: str) -> Path:
        return self.product_folder(name) / f"{name}.json"

    def names(self) -> list[str]:
        out = []
        for sub in sorted(self.path.iterdir()) if self.path.exists() else []:
            if sub.is_dir() and (sub / f"{sub.name}.json").exists():
                out.append(sub.name)
        return out

    def exists(self, name: str) -> bool:
        """Whether a product of that name is here; a path or other non-name is never a product."""
        name = strip_ending(name)
        return bool(_NAME_OK.match(name)) and self.item_path(name).exists()

    def load(self, name: str) -> pystac.Item:
        name = strip_ending(name)
        path = self.item_path(name)
        if not path.exists():
            known = ", ".join(self.names()) or "none yet"
            raise WorkdirError(f"no product {name!r} in the working directory {self.path} (products: {known})")
        from .stac import read_item  # no migration: keeps proj:epsg, which stackstac reads

        item = read_item(path)
        item.make_asset_hrefs_absolute()
        return item

    def search(self, patterns: Iterable[str]) -> list[str]:
        """Names matching any of the shell patterns (ending such as `.hdr` ignored), in name order."""
        names = self.names()
        hits: list[str] = []
        for pattern in patterns:
            pat = strip_ending(pattern)
            for n in names:
                if fnmatch.fnmatchcase(n, pat) and n not in hits:
                    hits.append(n)
        return sorted(hits)

    def remove(self, name: str) -> None:
        folder = self.product_folder(name)
        if folder.exists():
            shutil.rmtree(folder)
        self.write_catalog()

    def save(self, item: pystac.Item, files: dict[str, Path] | None = None) -> Path:
        """Store a product: move its files (already complete, e.g. temp outputs) into the product
        folder, point the assets at them relatively, write the item JSON atomically and relink the
        catalog. An existing product of the same name is replaced (results are overwritten, as in
        Imalys)."""
        name = item.id
        folder = self.product_folder(name)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.path))
        staging.chmod(0o755)  # mkdtemp makes 0700; workers and browsers under other users must read it
        try:
            for key, src in (files or {}).items():
                dst = staging / Path(src).name
                shutil.move(str(src), dst)
                item.assets[key].href = f"./{dst.name}"
            item.clear_links()
            item.add_link(pystac.Link("root", "../catalog.json", media_type="application/json"))
            item.add_link(pystac.Link("parent", "../catalog.json", media_type="application/json"))
            data = item.to_dict(include_self_link=False, transform_hrefs=False)
            write_json_atomic(staging / f"{name}.json", data)
            if folder.exists():
                old = self.path / f".{name}.old-{os.getpid()}"
                os.replace(folder, old)
                os.replace(staging, folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.write_catalog()
        return folder / f"{name}.json"

    def write_catalog(self) -> None:
        links = [
            {"rel": "root", "href": "./catalog.json", "type": "application/json"},
        ]
        for n in self.names():
            links.append({"rel": "item", "href": f"./{n}/{n}.json", "type": "application/geo+json", "title": n})
        data = {
            "type": "Catalog",
            "stac_version": pystac.get_stac_version(),
            "id": CATALOG_ID,
            "title": "imalys-stac working directory",
            "description": f"Products of imalys-stac process chains in {self.path.name}",
            "links": links,
        }
        write_json_atomic(self.path / "catalog.json", data)
