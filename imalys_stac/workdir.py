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
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pystac

from .errors import ImalysError
from .text import markdown_escape
from .write.atomic import recover_swaps, remove, replace, scratch_dir, sweep_stale, write_json_atomic

MARKER = ".imalys-stac"
LOCK = ".imalys-stac.lock"
CATALOG_ID = "imalys-working-directory"
#: endings that old chains append to image names (the original's ENVI files, GeoTIFFs…)
NAME_ENDINGS = (".hdr", ".bsq", ".img", ".tif", ".tiff", ".json", ".vrt")
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class WorkdirError(ImalysError):
    """A problem with the working directory that the user must resolve."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def is_workdir(folder: Path) -> bool:
    """Whether `folder` is a working directory: it holds our marker, our lock, or a catalog.json
    with our id (a working directory whose marker was lost)."""
    return (folder / MARKER).exists() or (folder / LOCK).exists() or has_workdir_catalog(folder)


def has_workdir_catalog(folder: Path) -> bool:
    """Whether `folder` holds a catalog.json with a working directory's catalog id."""
    try:
        return json.loads((folder / "catalog.json").read_text(encoding="utf-8")).get("id") == CATALOG_ID
    except (OSError, ValueError, AttributeError):
        return False


def nested_workdirs(folder: Path) -> Iterator[Path]:
    """Working directories below `folder` (not `folder` itself), outermost first; symlinks are not
    followed (clearing removes a link, never what it points at)."""
    for root, dirs, _files in os.walk(folder, followlinks=False):
        if root != os.fspath(folder) and is_workdir(Path(root)):
            yield Path(root)
            dirs.clear()  # what is inside belongs to that working directory
            continue
        dirs.sort()


def lock_holder(folder: Path) -> str:
    """What the lock file of the working directory `folder` says about the run holding it, or ''
    when no run holds it (the lock is taken and released at once to find out)."""
    import fcntl

    try:
        fd = os.open(folder / LOCK, os.O_RDONLY)
    except OSError:
        return ""
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "a run holds its lock"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return ""
    finally:
        os.close(fd)


def strip_ending(name: str) -> str:
    low = name.lower()
    for ending in NAME_ENDINGS:
        if low.endswith(ending):
            return name[: -len(ending)]
    return name


class WorkDir:
    """One working directory (the `home` of a chain)."""

    def __init__(self, path: Path):
        self.path = Path(path).expanduser().absolute()

    # -- life cycle -----------------------------------------------------------------------------
    def prepare(self, clear: bool = False) -> None:
        """Create the folder (with its parents) and, with `clear`, empty it safely.

        The original runs `rm -R dir/*`, so a typo in `directory` could wipe a user's folder. We
        clear only a folder this tool made (it holds our marker) or an empty one. The caller
        holds the lock (`locked`) so that no other run uses the folder meanwhile.
        """
        self.check_usable()
        # Only a folder we create (or find empty) becomes ours: a user's non-empty folder used with
        # clear = false must never get the marker, or a later clear = true would empty it.
        entries = [e for e in self.path.iterdir() if e.name != LOCK] if self.path.exists() else []
        ours = not entries or (self.path / MARKER).exists()
        if clear and entries and not (self.path / MARKER).exists():
            raise WorkdirError(
                f"refusing to clear {self.path}: it is not empty and was not made by imalys-stac "
                f"(no {MARKER} marker inside)",
                hint="choose a new or empty folder for `directory`, or empty it yourself if it really is a working directory",
            )
        if clear and entries:
            self._refuse_nested_workdirs()
        self.path.mkdir(parents=True, exist_ok=True)
        if clear:
            for entry in self.path.iterdir():
                if entry.name in (MARKER, LOCK):
                    continue
                remove(entry)
        else:
            self.recover()
        marker = self.path / MARKER
        if ours and not marker.exists():
            marker.write_text("This folder is an imalys-stac working directory; `home clear = true` may empty it.\n")
        self.write_catalog()

    def _refuse_nested_workdirs(self) -> None:
        """`clear` empties this folder only: another working directory inside it (another run's,
        in use or not; recognised by its marker, lock or catalog id) is refused, never deleted."""
        for found in nested_workdirs(self.path):
            in_use = lock_holder(found)
            raise WorkdirError(
                f"refusing to clear {self.path}: it holds another working directory, {found}"
                + (f", in use by another imalys-stac run ({in_use})" if in_use else ""),
                hint="give this chain its own `directory` (not a folder around another one), or move that "
                     "working directory out first")

    def check_usable(self) -> None:
        """Refuse a path that is a file, or a folder holding a STAC catalog of something else
        (an archive catalog): writing a working directory there would replace its catalog.json."""
        if self.path.exists() and not self.path.is_dir():
            raise WorkdirError(f"{self.path} exists and is not a folder", hint="give a folder for `directory`")
        cat = self.path / "catalog.json"
        if cat.exists():
            try:
                cat_id = json.loads(cat.read_text(encoding="utf-8")).get("id")
            except (OSError, ValueError, AttributeError):
                cat_id = None
            if cat_id != CATALOG_ID:
                raise WorkdirError(
                    f"{self.path} holds a STAC catalog that is not an imalys-stac working directory "
                    f"(catalog.json id {cat_id!r}); using it as `directory` would replace that catalog",
                    hint="choose another folder for `directory` (the archive catalog stays where it is and "
                         "import reads it with database = …)",
                )

    @contextmanager
    def locked(self, what: str = "") -> Iterator[None]:
        """Hold the working directory for one run. A second run on the same folder stops at once
        with a message that names the run holding it; the lock dies with its process (flock), so a
        killed run never leaves the folder locked."""
        import fcntl

        self.check_usable()
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / LOCK
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = ""
            try:
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            except OSError:
                pass
            os.close(fd)
            raise WorkdirError(
                f"the working directory {self.path} is in use by another imalys-stac run"
                + (f" ({holder})" if holder else ""),
                hint="wait until that run has finished, or give this chain its own `directory`",
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, {what}, since {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
            yield
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def recover(self) -> list[str]:
        """Repair what a killed run left (call with the lock held): put back a product folder that
        was moved aside while its replacement moved in, and remove temporaries of dead runs."""
        notes = [f"restored {name} (a run was stopped while replacing it)" for name in recover_swaps(self.path)]
        for path in sweep_stale(self.path, include_own=True):
            notes.append(f"removed {path.name} (temporary file of a stopped run)")
        return notes

    def scratch(self, name: str):
        """A temporary folder inside the working directory for a product being made."""
        return scratch_dir(self.path, name)

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
        Imalys). The item is stored as given: what its assets say about their bands is the
        product layer's business (``products.store``), never read here."""
        name = item.id
        folder = self.product_folder(name)
        with scratch_dir(self.path, name) as staging:  # removed if anything fails
            for key, src in (files or {}).items():
                dst = staging / Path(src).name
                shutil.move(str(src), dst)
                item.assets[key].href = f"./{dst.name}"
            # keep the links that say where a product comes from; the catalog links are ours
            kept = [link for link in item.links if link.rel not in ("root", "parent", "self", "collection")]
            item.clear_links()
            item.add_link(pystac.Link("root", "../catalog.json", media_type="application/json"))
            item.add_link(pystac.Link("parent", "../catalog.json", media_type="application/json"))
            for link in kept:
                item.add_link(link)
            data = item.to_dict(include_self_link=False, transform_hrefs=False)
            write_json_atomic(staging / f"{name}.json", data)
            # an existing product is moved aside first; a kill between the two renames leaves
            # `.<name>.old-<pid>`, which `recover` puts back
            replace(staging, folder)
        self.write_catalog()
        return folder / f"{name}.json"

    # -- what the last import kept (so a later command that finds nothing can say why) ---------
    IMPORT_NOTE = ".last-import.json"

    def note_import(self, summary: dict) -> None:
        write_json_atomic(self.path / self.IMPORT_NOTE, summary)

    def last_import(self) -> dict | None:
        try:
            return json.loads((self.path / self.IMPORT_NOTE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def why_empty(self) -> str:
        """`import kept 0 of 7, all below quality 0.999` — or '' when no import was recorded."""
        note = self.last_import()
        if not note:
            return ""
        kept, selected, rejected = note.get("kept", 0), note.get("selected", 0), note.get("rejected") or {}
        text = f"the last import ({Path(note.get('chain', '')).name}:{note.get('line', '?')}) kept {kept} of {selected}"
        if rejected:
            if len(rejected) == 1 and sum(rejected.values()) == selected:
                text += f", all {next(iter(rejected))}"
            else:
                text += ": " + ", ".join(f"{n} {r}" for r, n in rejected.items())
        elif selected == 0:
            text += " (no archive matched its selection)"
        return text

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
            "description": markdown_escape(f"Products of imalys-stac process chains in {self.path.name}"),
            "links": links,
        }
        write_json_atomic(self.path / "catalog.json", data)
