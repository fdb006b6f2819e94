"""Provider archives read in place: the generic container helpers (:mod:`.container`: tar/zip
members, TIFF header signatures, member grids, ``/vsitar/``/``/vsizip/`` hrefs) and the band record
(:mod:`.bands`). Which provider reads a file is the registry's business
(:func:`imalys_stac.registry.open_archive`): this package imports nothing that imports it."""
from __future__ import annotations

from .bands import BandInfo
from .container import ArchiveError, MemberGrid, read_grid, vsitar, vsizip

__all__ = ["ArchiveError", "BandInfo", "MemberGrid", "read_grid", "vsitar", "vsizip"]
