"""Provider archives read in place: the generic container helpers (:mod:`.container`: tar/zip
members, TIFF header signatures, member grids, ``/vsitar/``/``/vsizip/`` hrefs), the band record
(:mod:`.bands`). Handing a file to the provider whose containers it is, is the registry's
(``imalys_stac.registry.open_archive``): this layer sits below the registry and never imports it."""
from __future__ import annotations

from .bands import BandInfo
from .container import ArchiveError, MemberGrid, read_grid, vsitar, vsizip

__all__ = ["ArchiveError", "BandInfo", "MemberGrid", "read_grid", "vsitar", "vsizip"]
