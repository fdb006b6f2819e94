"""Large areas in parts: `reduce` computes a grid larger than a part window by window (one bounded
graph each) into one COG. The file must be byte-identical to the one graph of the whole grid —
including images warped from the other UTM zone, whose pixels depend on the chunk they are
warped for — and the values those of an independent numpy reference."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.commands.reduce import reduce_parts
from imalys_stac.composite import reduce_stack
from imalys_stac.composite import reference as ref
from imalys_stac.cube.grid import Grid
from imalys_stac.products import cube_of
from imalys_stac.workdir import WorkDir
from imalys_stac.write import write_cog
from imalys_stac.write.blocks import Parts, part_windows

PATHS_ROWS = ((193, 26), (193, 27), (192, 26), (192, 27))
SIZE = 80


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    """Two paths (UTM 32 and 33) × two rows, two dates each, imported and compiled onto EPSG:32632."""
    from imalys_stac.synth import Landscape, SceneSpec, write_frame, write_landsat_archive, wrs_centre

    root = tmp_path_factory.mktemp("area")
    land = Landscape(seed=13)
    for i in range(2):
        for path, row in PATHS_ROWS:
            acquired = date(2022, 6, 1) + timedelta(days=16 * i + (9 if path == 192 else 0))
            write_landsat_archive(root / "archives", SceneSpec(path=path, row=row, acquired=acquired, size=SIZE,
                                                               cloud_cover=0.25, seed=500 + 10 * i + path + row),
                                  landscape=land, truth=False)
    centres = [wrs_centre(p, r, SIZE) for p, r in PATHS_ROWS]
    lons, lats = [c[0] for c in centres], [c[1] for c in centres]
    pad = 0.3 * SIZE * 30 / (111320 * np.cos(np.radians(np.mean(lats))))
    frame = write_frame(root / "frame.geojson", box(min(lons) - pad, min(lats), max(lons) + pad, max(lats)), 4326)
    chain = root / "chain.txt"
    chain.write_text(f"""IMALYS [area in parts]
home
\tdirectory = {root}/wd
\tclear = true
import
\tselect = {root}/archives/*.tar
\tframe = {frame}
\tbands = _B2, _B3, _B4, _B5
\tfactor = 2.75e-5
\toffset = -0.2
compile
\tsearch = LC0*
\tframe = {frame}
\tcrsystem = 32632
\tpixel = 30
""")
    run_chain(load_chain(chain))
    return root


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


@pytest.mark.parametrize("method, kw", [
    ("bestof", dict(count=True, source=True)),
    ("median", {}),          # bands reduced alone: band chunks split
    ("medoid", dict(source=True)),
    ("ndvi", dict(red=3, nir=4)),
])
def test_parts_give_the_same_file_as_one_graph(area, tmp_path, method, kw):
    wd = WorkDir(area / "wd")
    item = wd.load("compile")
    grid = Grid.from_stac(item.properties)
    rows, cols = grid.shape
    side, chunk = 40, 32  # parts smaller than the grid, not a multiple of the chunks: parts cut through chunks
    assert rows > side and cols > 2 * side

    def red(cube):
        return reduce_stack(cube, method, quality=cube.coords["quality"].values, **kw)

    whole = red(cube_of(wd, item, chunksize=chunk))
    assert not isinstance(whole.data, Parts)
    parted, first = reduce_parts(lambda w: cube_of(wd, item, chunksize=chunk, window=w), grid, red, side=side)
    assert isinstance(parted.data, Parts) and len(parted.data.windows) == len(part_windows(rows, cols, side)) > 4
    assert first.shape[-2:] == (side, side)
    np.testing.assert_array_equal(parted.x.values, whole.x.values)
    np.testing.assert_array_equal(parted.y.values, whole.y.values)
    assert list(parted.band.values) == list(whole.band.values)
    a, b = write_cog(whole, tmp_path / "whole.tif"), write_cog(parted, tmp_path / "parts.tif")
    pa, pb = _read(a), _read(b)
    assert np.isfinite(pa[0]).mean() > 0.3
    np.testing.assert_array_equal(pa, pb)
    assert a.read_bytes() == b.read_bytes()


def test_parts_against_a_numpy_reference(area):
    """bestof and median from the plain per-pixel reference on the whole cube computed in numpy."""
    wd = WorkDir(area / "wd")
    item = wd.load("compile")
    grid = Grid.from_stac(item.properties)
    cube = cube_of(wd, item, chunksize=32)
    stack = cube.values  # (time, band, y, x) float32, the whole grid in one go
    quality = cube.coords["quality"].values
    # the warped zone-33 images take part
    assert np.isfinite(stack[1]).mean() > 0.1 and np.isfinite(stack[0]).mean() > 0.1
    for method, expect in (("bestof", ref.bestof(stack, quality)), ("median", ref.median(stack))):
        parted, _ = reduce_parts(lambda w: cube_of(wd, item, chunksize=32, window=w), grid,
                                 lambda c, method=method: reduce_stack(c, method, quality=c.coords["quality"].values), side=40)
        got = np.asarray(parted.data)
        np.testing.assert_allclose(got, expect, rtol=1e-6, atol=0)
        assert np.array_equal(np.isnan(got), np.isnan(expect))


def test_the_chain_reduces_in_parts(area, tmp_path, monkeypatch):
    """`IMALYS_PART_PIXELS` below the grid: the log names the parts, progress reaches 100 %, the
    exported COG equals the one of a run without parts."""
    def chain(name: str) -> Path:
        path = tmp_path / f"{name}.txt"
        path.write_text(f"""IMALYS
home
\tdirectory = {area}/wd
\tlog = {tmp_path}/{name}-log
reduce
\tselect = compile
\texecute = bestof
\tpreserve = bands
\ttarget = {name}
export
\tselect = {name}
\ttarget = {tmp_path}/{name}.tif
""")
        return path

    monkeypatch.setenv("IMALYS_PROGRESS_INTERVAL", "0")
    run_chain(load_chain(chain("plain")))
    monkeypatch.setenv("IMALYS_PART_PIXELS", "32")
    run_chain(load_chain(chain("parted")))
    log = "".join(p.read_text() for p in (tmp_path / "parted-log").glob("*.log"))
    assert "in 9 parts of at most 32²" in log or " parts of at most 32²" in log, log[-2000:]
    assert "bestof: 100 %" in log
    np.testing.assert_array_equal(_read(tmp_path / "plain.tif"), _read(tmp_path / "parted.tif"))


def test_part_windows_tile_the_grid():
    for h, w, side in ((1, 1, 5), (100, 37, 16), (64, 64, 64), (65, 64, 64), (7, 300, 100)):
        cover = np.zeros((h, w), int)
        for r0, r1, c0, c1 in part_windows(h, w, side):
            assert 0 < r1 - r0 <= side and 0 < c1 - c0 <= side
            cover[r0:r1, c0:c1] += 1
        assert (cover == 1).all()


def test_parts_refuse_windows_that_do_not_tile_and_parts_of_a_wrong_shape():
    import dask.array as da

    with pytest.raises(ValueError, match="cover"):
        Parts((1, 10, 10), np.float32, [(0, 5, 0, 10)], lambda w: None)
    bad = Parts((1, 10, 10), np.float32, [(0, 5, 0, 10), (5, 10, 0, 10)], lambda w: da.zeros((1, 4, 10)))
    with pytest.raises(ValueError, match="expected"):
        np.asarray(bad)
    good = Parts((2, 10, 10), np.float32, part_windows(10, 10, 4),
                 lambda w: da.full((2, w[1] - w[0], w[3] - w[2]), w[0] * 100 + w[2], dtype=np.float32))
    arr = np.asarray(good)
    assert arr[1, 9, 9] == 808 and arr[0, 0, 0] == 0 and arr[0, 5, 2] == 400


@pytest.mark.parametrize("window", [None, (10, 70, 25, 100)])
def test_tile_uses_counted_at_once_equal_the_chunk_by_chunk_windows(area, window):
    """The uses per tile (which decide how long the tile cache keeps a tile) are counted for all
    chunks at once; reference: `tiles_of` of each chunk, one by one — for sources that are crops
    of the grid (zone 32) and warped ones (zone 33), for a whole grid and a window of it."""
    from rasterio.enums import Resampling

    from imalys_stac.cube.tiles import OutGrid, SourcePlan, source_info, window_chunks
    from imalys_stac.products import group_from_item

    wd = WorkDir(area / "wd")
    item = wd.load("compile")
    grid = Grid.from_stac(item.properties)
    out = OutGrid(grid.epsg, grid.transform, *grid.shape)
    ych, xch = (20,) * (grid.shape[0] // 20) + (grid.shape[0] % 20,), (17,) * (grid.shape[1] // 17) + (grid.shape[1] % 17,)
    ych, xch = tuple(c for c in ych if c), tuple(c for c in xch if c)
    origin = (0, 0)
    if window is not None:
        oy, ych, _ = window_chunks(ych, window[0], window[1])
        ox, xch, _ = window_chunks(xch, window[2], window[3])
        origin = (oy, ox)
    kinds = set()
    for name in item.properties["imalys:inputs"]:
        for it in group_from_item(wd.load(name)).items:
            for key in ("SR_B3", "QA_PIXEL"):
                href = it.assets[key].href if key in it.assets else next(iter(it.assets.values())).href
                info = source_info(href)
                for rs in (Resampling.nearest, Resampling.bilinear):
                    memo: dict = {}
                    plan = SourcePlan(info, out, ych, xch, rs, np.uint16, 0, "t", origin=origin, memo=memo)
                    kinds.add(plan.offset is None)
                    expect = np.zeros(plan.ntiles, np.int32)
                    y0 = origin[0]
                    for h in ych:
                        x0 = origin[1]
                        for w in xch:
                            t = plan.tiles_of(y0, y0 + h, x0, x0 + w)
                            if t is not None:
                                expect[t[0]:t[1], t[2]:t[3]] += 1
                            x0 += w
                        y0 += h
                    np.testing.assert_array_equal(plan.uses, expect)
                    assert expect.sum() > 0
                    # a second source on the same grid shares the count
                    again = SourcePlan(info, out, ych, xch, rs, np.uint16, 0, "t", origin=origin, memo=memo)
                    assert again.uses is plan.uses
    assert kinds == {True, False}  # both warped and cropped sources were compared
