"""Realistic synthetic Landsat Collection 2 Level-2 archives for tests, the demo and benchmarks.

``Landscape`` is a deterministic reflectance field on the ground; ``write_landsat_archive``
draws a ``SceneSpec`` of it through clouds, shadows, cirrus and snow into a USGS-structured
``.tar``; ``write_tutorial_collection`` writes the seed chapter's tutorial layout.
"""
from .collection import write_frame, write_tutorial_collection
from .landscape import Landscape
from .scene import SceneSpec, SyntheticScene, encode_qa, write_landsat_archive
from .sentinel2 import SyntheticS2Scene, write_sentinel2_archive  # Sentinel-2 L2A SAFE zips
from .wrs import scene_grid, wrs_centre

__all__ = [
    "Landscape", "SceneSpec", "SyntheticScene", "write_landsat_archive", "write_tutorial_collection",
    "write_frame", "wrs_centre", "scene_grid", "encode_qa",
    "SyntheticS2Scene", "write_sentinel2_archive",
]
