"""Provider archive formats: member names, MTL parsing, QA bit meanings, ``/vsitar/`` hrefs."""
from .bands import BandInfo, SENSORS
from .landsat import ArchiveError, Grid, SceneMetadata, open_archive, read_grid, vsitar

__all__ = ["ArchiveError", "BandInfo", "Grid", "SENSORS", "SceneMetadata", "open_archive", "read_grid", "vsitar"]
