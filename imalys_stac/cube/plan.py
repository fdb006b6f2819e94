"""Planning: which archive items form one acquisition, what it is called and on which grid it is
read — plain functions on metadata, no I/O, testable without a chain file (the habit of
stackstac's `prepare.py`). Commands translate parameters into calls of these.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pystac

from ..errors import ImalysError
from ..registry import provider_for_item
from .bands import Calibration, image_assets, resolve_band
from .counts import DEFAULT_CHUNK, count_quality, fits_in_process, quality_counts
from .grid import Frame, Grid, asset_grid, transform_bounds
from .load import SceneGroup


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


# ------------------------------------------------------------------------------------- acquisitions


@dataclass(frozen=True)
class Recipe:
    """What `import` asks for, independent of the chain syntax."""

    bands: tuple[str, ...] = ()  # band names as given (empty: the provider's default bands)
    factor: Any = None  # float, "auto" or None (see cube.bands.Calibration.build)
    offset: Any = None
    rule: str = "flags"  # mask rule for the quality count
    mask: bool = True  # mask disturbed pixels in the product (fill is always masked)
    warp: int | None = None
    pixel: float | None = None
    polygon: bool = False  # the frame's exact polygon (not its rectangle) for quality and pixels


@dataclass(frozen=True)
class Acquisition:
    """One planned product: its tiles as a SceneGroup and the grid it is read on."""

    group: SceneGroup
    grid: Grid


class PlanError(ImalysError, ValueError):
    """A recipe the items cannot satisfy; `parameter` names the recipe field at fault."""

    def __init__(self, message: str, parameter: str):
        super().__init__(message)
        self.parameter = parameter


def default_bands(item: pystac.Item) -> list[str]:
    """Bands taken when none are given: every data image asset but those the item's provider
    calls auxiliary (quality, atmosphere; any provider's for an item none owns)."""
    from ..registry import providers

    provider = provider_for_item(item)
    judges = [provider] if provider is not None else providers()
    keys = []
    for key, asset in image_assets(item).items():
        if any(p.is_auxiliary(key) for p in judges):
            continue
        if {"data", "reflectance", "temperature"} & set(asset.roles or []):
            keys.append(key)
    return keys


def plan_acquisitions(items: Sequence[pystac.Item], recipe: Recipe, frame: Frame | None) -> list[Acquisition]:
    """Items → acquisitions (tiles of one sensor, orbit and day), each with its bands,
    calibration, mask rule, resampling, grid (cropped to the frame's rectangle) and, with
    `recipe.polygon`, the frame's exact polygon on that grid. Raises PlanError."""
    out = []
    for tiles in group_items(list(items)):
        try:
            labels = list(recipe.bands) or default_bands(tiles[0])
            keys = [resolve_band(tiles[0], b) for b in labels]
            for it in tiles[1:]:
                for b in labels:
                    resolve_band(it, b)
            calibration = Calibration.build(tiles[0], keys, recipe.factor, recipe.offset)
        except ValueError as exc:
            raise PlanError(str(exc), "bands" if "band" in str(exc) else "factor") from exc
        grid = choose_grid(tiles, keys[0], frame, recipe.warp, recipe.pixel)
        region_wkt = region_epsg = None
        if frame is not None and recipe.polygon:
            region_wkt, region_epsg = frame.geometry_in(grid.epsg).wkt, grid.epsg
        resampling = "bilinear" if (recipe.warp or recipe.pixel) else "nearest"
        group = SceneGroup(product_name(tiles), tiles, keys, calibration, recipe.rule if recipe.mask else None,
                           resampling, region_wkt=region_wkt, region_epsg=region_epsg)
        out.append(Acquisition(group, grid))
    return out


@dataclass(frozen=True)
class Coverage:
    """Pixel counts of one acquisition inside its grid (or the frame polygon on it)."""

    present: int  # some tile has data
    clear: int  # some tile is usable under the rule
    total: int  # pixels of the grid, or of the polygon on it

    @property
    def cover(self) -> float:
        return self.present / self.total if self.total else 0.0

    @property
    def quality(self) -> float:
        return self.clear / self.present if self.present else 0.0

    def rejection(self, *, cover: float | None, quality: float | None) -> str | None:
        """Why the acquisition fails the limits ("no data", "cover", "quality"), or None."""
        if self.present == 0:
            return "no data"
        if cover is not None and self.cover < cover:
            return "cover"
        if quality is not None and self.quality < quality:
            return "quality"
        return None


def coverage_graph(acquisitions: Sequence[Acquisition], rule: str, chunksize: int | None = None) -> list[tuple]:
    """Lazy (present, clear, total) per acquisition: one pass over the quality band only, meant
    to be computed together (``dask.compute(*graph)``) and turned into :class:`Coverage`."""
    graph = []
    for a in acquisitions:
        region = a.group.region_mask(a.grid)
        total = int(region.sum()) if region is not None else int(np.prod(a.grid.shape))
        present, clear = quality_counts(a.group, a.grid, rule, chunksize=chunksize or DEFAULT_CHUNK, region=region)
        graph.append((present, clear, total))
    return graph


def coverages(counts: Sequence[tuple]) -> list[Coverage]:
    """Computed (present, clear, total) → Coverage per acquisition."""
    return [Coverage(int(p), int(c), int(t)) for p, c, t in counts]


#: acquisitions from which `measure_coverages` counts several at a time (threads: the tile
#: decoding releases the GIL); fewer are counted one after the other
THREADED_FROM = 3


def measure_coverages(acquisitions: Sequence[Acquisition], rule: str, chunksize: int | None = None, *,
                      in_process: bool = True,
                      progress: Callable[[bool], AbstractContextManager[Any]] | None = None) -> list[Coverage]:
    """Coverage per acquisition, computed now: the numbers of ``coverages(dask.compute(*coverage_graph(…)))``.

    `in_process`: the files can be read here and no distributed cluster was asked for. Then a
    small count (a frame of a few hundred pixels, see `counts.fits_in_process`) reads its quality
    codes in this process without Dask (a tutorial's import: milliseconds of work against a
    second to import and schedule a graph); everything else is one Dask pass as before.
    `progress(dask)`: the step's progress display, entered around the count (`dask`: the count
    is a Dask pass; else the context's value is told the share done, `update(fraction, "tasks")`)."""
    from ..settings import current

    chunk = chunksize or DEFAULT_CHUNK
    small = (in_process and current().reader != "stackstac"
             and fits_in_process([a.group for a in acquisitions], [a.grid for a in acquisitions], chunk))
    if not small:
        import dask

        graph = coverage_graph(acquisitions, rule, chunksize)
        with progress(True) if progress is not None else nullcontext():
            return coverages(dask.compute(*graph))

    def one(a: Acquisition) -> tuple[int, int, int]:
        region = a.group.region_mask(a.grid)
        total = int(region.sum()) if region is not None else int(np.prod(a.grid.shape))
        return (*count_quality(a.group, a.grid, rule, chunksize=chunk, region=region), total)

    with ExitStack() as stack:
        step = stack.enter_context(progress(False)) if progress is not None else None
        if len(acquisitions) < THREADED_FROM:
            results: Iterable[tuple[int, int, int]] = map(one, acquisitions)
        else:
            import os
            from concurrent.futures import ThreadPoolExecutor

            pool = stack.enter_context(ThreadPoolExecutor(min(len(acquisitions), os.cpu_count() or 1, 4)))
            results = pool.map(one, acquisitions)
        counted = []
        for n, result in enumerate(results, 1):
            counted.append(result)
            if step is not None:
                step.update(n / len(acquisitions), "tasks")
    return coverages(counted)
