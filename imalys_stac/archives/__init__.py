"""Provider archive formats: member names, MTL parsing, QA bit meanings, ``/vsitar/`` hrefs."""
from .bands import BandInfo, SENSORS
from .landsat import ArchiveError, Grid, SceneMetadata, read_grid, vsitar
from .landsat import open_archive as open_landsat_archive

# --- Sentinel-2 L2A SAFE zips (added with archives/sentinel2.py): ``open_archive`` dispatches
# ``.zip`` to the Sentinel-2 reader; every other archive goes to the Landsat reader as before.
from pathlib import Path as _Path

from .sentinel2 import Sentinel2Metadata, open_sentinel2_archive, vsizip


def open_archive(path: str | _Path) -> SceneMetadata:
    """Read one provider archive in place: Landsat C2 L2 ``.tar`` or Sentinel-2 L2A ``.zip``.

    Raises :class:`ArchiveError` (``"<file>: <reason>"``) for archives that cannot be catalogued.
    """
    if str(path).lower().endswith(".zip"):
        return open_sentinel2_archive(path)
    return open_landsat_archive(path)
# --- end Sentinel-2


__all__ = ["ArchiveError", "BandInfo", "Grid", "SENSORS", "SceneMetadata", "Sentinel2Metadata", "open_archive",
           "open_landsat_archive", "open_sentinel2_archive", "read_grid", "vsitar", "vsizip"]
