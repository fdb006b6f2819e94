"""The tutorial archive collection of the seed chapter, and frame files."""
from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from pyproj import Transformer
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry

from .landscape import Landscape
from .scene import SceneSpec, SyntheticScene, write_landsat_archive
from .wrs import scene_grid

_DRIVERS = {".shp": "ESRI Shapefile", ".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}


def write_frame(path: str | Path, geometry: BaseGeometry, crs: Any) -> Path:
    """Write one geometry (given in ``crs``) as a vector file; the format follows the
    extension: .shp, .gpkg, .geojson/.json."""
    path = Path(path)
    driver = _DRIVERS.get(path.suffix.lower())
    if driver is None:
        raise ValueError(f"unsupported frame extension {path.suffix!r}; accepted: {', '.join(_DRIVERS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    gdf = gpd.GeoDataFrame({"name": [path.stem]}, geometry=[geometry], crs=crs)
    gdf.to_file(path, driver=driver)
    return path


#: 16-day cycle of Landsat 8 path 193 in 2022 and the cloud cover drawn on each date
#: (06-16 and 09-04 are cloudy enough for quality = 0.7 to reject them)
TUTORIAL_DATES: tuple[tuple[date, float], ...] = (
    (date(2022, 5, 15), 0.05), (date(2022, 5, 31), 0.10), (date(2022, 6, 16), 0.65),
    (date(2022, 7, 2), 0.04), (date(2022, 7, 18), 0.12), (date(2022, 8, 3), 0.25),
    (date(2022, 8, 19), 0.08), (date(2022, 9, 4), 0.72), (date(2022, 9, 20), 0.15),
    (date(2022, 10, 6), 0.10), (date(2022, 10, 22), 0.30),
)
#: path 192 (UTM 33) is seen 9 days after path 193 on the same cycle
PATH192_DATES: tuple[tuple[date, float], ...] = (
    (date(2022, 5, 24), 0.08), (date(2022, 7, 11), 0.20), (date(2022, 8, 28), 0.12),
)
#: Landsat 9 flies 8 days out of phase with Landsat 8
L9_DATE: tuple[date, float] = (date(2022, 6, 24), 0.06)


def tutorial_frame(size: int, pixel: float = 30.0) -> tuple[Polygon, Polygon]:
    """The ``bounding-box`` frame: (lon/lat rectangle, the same in EPSG:32632, densified).

    Placed relative to scene 193/26: ~55 % of its side, mostly inside it, reaching into the
    row 26/27 overlap to the south and into path 192's swath to the east."""
    g = scene_grid(193, 26, size, pixel)
    w = size * pixel
    left, bottom, right, top = g.bounds
    cx, cy = (left + right) / 2, (bottom + top) / 2
    utm = box(cx - 0.22 * w, cy - 0.46 * w, cx + 0.32 * w, cy + 0.10 * w)
    tr = Transformer.from_crs(g.epsg, 4326, always_xy=True)
    lon, lat = tr.transform(*utm.exterior.coords.xy)
    ll = box(min(lon), min(lat), max(lon), max(lat))
    back = Transformer.from_crs(4326, 32632, always_xy=True)
    dense = ll.segmentize(max(ll.bounds[2] - ll.bounds[0], ll.bounds[3] - ll.bounds[1]) / 10)
    return ll, shapely.transform(dense, lambda xy: np.column_stack(back.transform(xy[:, 0], xy[:, 1])))


def write_tutorial_collection(root: str | Path, size: int = 256, seed: int = 0) -> dict[str, Any]:
    """Write the tutorial layout under ``root``: ``archives/*.tar`` (Landsat 8 path 193 rows 26
    and 27 on 11 dates from 2022-05-15 to 2022-10-22, three path-192 scenes in UTM 33 and one
    Landsat 9 scene), ``frames/bounding-box.{shp,gpkg,geojson}`` (EPSG:4326) and
    ``frames/bounding-box-utm.gpkg`` (EPSG:32632), and an empty ``results/``.

    Returns ``{"archives": [SyntheticScene, ...], "frame": Path(.shp), "landscape": Landscape}``.
    """
    root = Path(root)
    archives = root / "archives"
    frames = root / "frames"
    (root / "results").mkdir(parents=True, exist_ok=True)
    landscape = Landscape(seed)
    scenes: list[SyntheticScene] = []
    k = 0
    specs: list[SceneSpec] = []
    for d, cc in TUTORIAL_DATES:
        for row in (26, 27):
            specs.append(SceneSpec("LC08", 193, row, d, size=size, cloud_cover=cc, seed=seed * 1000 + k))
            k += 1
    for d, cc in PATH192_DATES:
        specs.append(SceneSpec("LC08", 192, 26, d, size=size, cloud_cover=cc, seed=seed * 1000 + k))
        k += 1
    specs.append(SceneSpec("LC09", 193, 26, L9_DATE[0], size=size, cloud_cover=L9_DATE[1], seed=seed * 1000 + k))
    for spec in specs:
        scenes.append(write_landsat_archive(archives, spec, landscape))
    ll, utm = tutorial_frame(size)
    shp = write_frame(frames / "bounding-box.shp", ll, "EPSG:4326")
    write_frame(frames / "bounding-box.gpkg", ll, "EPSG:4326")
    write_frame(frames / "bounding-box.geojson", ll, "EPSG:4326")
    write_frame(frames / "bounding-box-utm.gpkg", utm, "EPSG:32632")
    return {"archives": scenes, "frame": shp, "landscape": landscape}
