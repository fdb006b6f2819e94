"""Provider archives read in place: the generic container helpers (:mod:`.container`: tar/zip
members, TIFF header signatures, member grids, ``/vsitar/``/``/vsizip/`` hrefs), the band record
(:mod:`.bands`) and :func:`open_archive`, which hands a file to the provider whose containers it is
(``imalys_stac.registry.provider_for_path``)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .bands import BandInfo
from .container import ArchiveError, MemberGrid, read_grid, vsitar, vsizip

if TYPE_CHECKING:
    from ..providers.base import SceneMetadata


def open_archive(path: str | Path) -> "SceneMetadata":
    """Read one provider archive in place (Landsat C2 L2 ``.tar``, Sentinel-2 L2A ``.zip``, …) into
    its provider's :class:`~imalys_stac.providers.base.SceneMetadata`.

    Raises :class:`ArchiveError` (``"<file>: <reason>"``) for archives that cannot be catalogued.
    """
    from ..registry import provider_for_path

    path = Path(path).expanduser().resolve()
    return provider_for_path(path).open(path)


__all__ = ["ArchiveError", "BandInfo", "MemberGrid", "open_archive", "read_grid", "vsitar", "vsizip"]
