"""Planning: which archive items form one acquisition, what it is called and on which grid it is
read — plain functions on metadata, no I/O, testable without a chain file (the habit of
stackstac's `prepare.py`). Commands translate parameters into calls of these.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Iterable

import numpy as np
import pystac

from ..registry import provider_for_item
from .grid import Frame, Grid, asset_grid, transform_bounds


def scene_key(item: pystac.Item) -> tuple[str, str, str]:
    """(sensor, orbit, YYYYMMDD) by the item's provider: tiles with equal keys are one acquisition."""
    from ..providers.base import generic_scene_key

    provider = provider_for_item(item)
    return provider.scene_key(item) if provider is not None else generic_scene_key(item)


def product_name(items: list[pystac.Item]) -> str:
    """Name of the product of one acquisition's tiles, by their provider."""
    from ..providers.base import generic_product_name, generic_scene_key

    provider = provider_for_item(items[0])
    if provider is not None:
        return str(provider.product_name(items))
    sensor, _, date = generic_scene_key(items[0])
    return generic_product_name(items, sensor, date)


def group_items(items: list[pystac.Item]) -> list[list[pystac.Item]]:
    groups: dict[tuple, list[pystac.Item]] = defaultdict(list)
    for it in items:
        groups[scene_key(it)].append(it)
    return [sorted(g, key=lambda i: i.id) for _, g in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0]))]


def choose_grid(items: list[pystac.Item], key: str, frame: Frame | None, warp: int | None, pixel: float | None) -> Grid:
    """The archive's own grid by default; `warp`/`pixel` reproject; the frame's rectangle crops."""
    native = asset_grid(items[0], key)
    epsg, res, anchor = native.epsg, native.res_xy, native.anchor
    target_epsg = warp or epsg
    target_res = (pixel, pixel) if pixel else res
    if target_epsg != epsg or target_res != res:
        anchor = (0.0, 0.0)
    bounds = frame.bounds_in(target_epsg) if frame is not None else union_bounds(
        [asset_grid(it, key) for it in items], target_epsg)
    return Grid.aligned(target_epsg, bounds, target_res[0], anchor, yres=target_res[1])


def union_bounds(grids: Iterable[Grid], epsg: int) -> tuple[float, float, float, float]:
    """The rectangle around all `grids`, in `epsg`."""
    boxes = np.array([transform_bounds(g.bounds, g.epsg, epsg) if g.epsg != epsg else g.bounds for g in grids])
    return (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())


def common_grid(grids: list[Grid], native: list[bool], *, epsg: int | None = None, pixel: float | None = None,
                frame: Frame | None = None) -> Grid:
    """One grid for images on `grids`: `epsg` (default the most common CRS), `pixel` (default the
    finest), the frame's rectangle (default the union of the images), aligned to the pixel grid
    the images kept from their archives (`native`: read without resampling) so those are not
    resampled; images warped at import have an arbitrary anchor and do not vote."""
    epsg = epsg or Counter(g.epsg for g in grids).most_common(1)[0][0]
    finest = min(grids, key=lambda g: g.res_xy)
    res = (pixel, pixel) if pixel else finest.res_xy
    same = [g for g in grids if g.epsg == epsg and g.res_xy == res]
    kept = [g for g, n in zip(grids, native) if n and g in same]
    pool = kept or same
    anchor = Counter(g.anchor for g in pool).most_common(1)[0][0] if pool else (0.0, 0.0)
    bounds = frame.bounds_in(epsg) if frame is not None else union_bounds(grids, epsg)
    return Grid.aligned(epsg, bounds, res[0], anchor, yres=res[1])
