"""Scale: a stack larger than the memory given to the Dask workers reduces without running out of
memory (a real local process cluster with a per-worker memory limit). Slow: `-m "not slow"` skips it."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
import rasterio

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

SIZE = 2048
DATES = 8
WORKER_MEMORY = "700MB"


def chain_text(root, wd, target, home_extra=""):
    return f"""IMALYS [scale test]
home
	directory = {wd}
	clear = true
{home_extra}import
	select = {root}/*.tar
	bands = _B2, _B3, _B4, _B5, _B6, _B7
	factor = 2.75e-5
	offset = -0.2
compile
	search = LC08*
reduce
	select = compile
	execute = bestof
	preserve = bands
export
	select = bestof
	target = {target}
"""


@pytest.mark.slow
@pytest.mark.timeout(900)  # a worker paused for memory never answers: fail, do not hang the suite
def test_stack_larger_than_worker_memory(tmp_path, dask_processes):
    root = tmp_path / "archives"
    land = Landscape(seed=11)
    for i in range(DATES):
        write_landsat_archive(root, SceneSpec(path=193, row=26, acquired=date(2022, 5, 15) + timedelta(days=16 * i),
                                              size=SIZE, cloud_cover=0.25, seed=100 + i), landscape=land, truth=False)
    stack_bytes = DATES * 6 * SIZE * SIZE * 4
    limit = 700e6
    assert stack_bytes > limit, "the stack must not fit in one worker"
    chain = tmp_path / "limited.txt"
    cluster = dask_processes(workers=1, threads=1, memory_limit=WORKER_MEMORY, nanny=True)  # a nanny enforces the limit
    chain.write_text(chain_text(root, tmp_path / "wd1", tmp_path / "limited.tif", f"\tscheduler = {cluster.address}\n"))
    run_chain(load_chain(chain))
    # the same chain in-process (no memory limit) as the reference
    ref = tmp_path / "threads.txt"
    ref.write_text(chain_text(root, tmp_path / "wd2", tmp_path / "threads.tif"))
    run_chain(load_chain(ref))
    with rasterio.open(tmp_path / "limited.tif") as a, rasterio.open(tmp_path / "threads.tif") as b:
        assert a.count == 6 and a.shape == (SIZE, SIZE)
        # compare a strip per band (reading both fully would be 2 × 100 MB: fine, but keep it light)
        win = rasterio.windows.Window(0, SIZE // 2 - 64, SIZE, 128)
        np.testing.assert_array_equal(a.read(window=win), b.read(window=win))
        assert np.isfinite(a.read(1, window=win)).mean() > 0.5


# ------------------------------------------------------------------ seamless over several tiles
def test_seamless_bestof_over_two_paths_two_rows_and_two_utm_zones(tmp_path):
    """Tiles of paths 193 (UTM 32) and 192 (UTM 33), rows 26 and 27, three dates per path, one
    frame over all four: import merges same-day rows, compile puts every image on one EPSG:32632
    grid, bestof gives one seamless composite. Reference: the generator's ground reflectance."""
    from shapely.geometry import box

    from imalys_stac.synth import write_frame, wrs_centre
    from imalys_stac.synth.landscape import CHANNELS

    size = 96
    root = tmp_path / "archives"
    land = Landscape(seed=13)
    scenes = []
    for i in range(3):
        for path, row in ((193, 26), (193, 27), (192, 26), (192, 27)):
            acquired = date(2022, 6, 1) + timedelta(days=16 * i + (9 if path == 192 else 0))
            scenes.append(write_landsat_archive(root, SceneSpec(path=path, row=row, acquired=acquired, size=size, cloud_cover=0.2,
                                                                seed=500 + 10 * i + path + row), landscape=land))
    centres = [wrs_centre(p, r, size) for p, r in ((193, 26), (193, 27), (192, 26), (192, 27))]
    lons, lats = [c[0] for c in centres], [c[1] for c in centres]
    pad = 0.3 * size * 30 / (111320 * np.cos(np.radians(np.mean(lats))))  # a third of a scene east and west
    frame = write_frame(tmp_path / "frame.geojson", box(min(lons) - pad, min(lats), max(lons) + pad, max(lats)), 4326)
    chain = tmp_path / "area.txt"
    chain.write_text(f"""IMALYS [seamless]
home
	directory = {tmp_path}/wd
	clear = true
import
	select = {root}/*.tar
	frame = {frame}
	bands = _B2, _B3, _B4, _B5, _B6, _B7
	factor = 2.75e-5
	offset = -0.2
compile
	search = LC0*
	frame = {frame}
	crsystem = 32632
	pixel = 30
reduce
	select = compile
	execute = bestof
	preserve = bands
export
	select = bestof
	target = {tmp_path}/area.tif
""")
    ctx = run_chain(load_chain(chain))
    products = sorted(p.name for p in (tmp_path / "wd").iterdir() if p.is_dir() and p.name.startswith("LC08"))
    # one product per path and date: the two rows of a path and date were merged
    assert len(products) == 6, products
    with rasterio.open(tmp_path / "area.tif") as ds:
        assert ds.crs.to_epsg() == 32632 and ds.res == (30.0, 30.0)
        data = ds.read()
        ds_transform = ds.transform
        xs = ds.transform.c + 30 * (np.arange(ds.width) + 0.5)
        ys = ds.transform.f - 30 * (np.arange(ds.height) + 0.5)
    valid = np.isfinite(data[0])
    # where some scene saw the ground clearly (its own masks, warped onto the output grid): the
    # pixels the composite must have, whichever tile, path, row or zone they came from
    from rasterio.warp import Resampling, reproject

    seen = np.zeros(valid.shape, dtype=bool)
    for sc in scenes:
        m = sc.truth
        clear = ~(m["fill"] | m["cloud"] | m["dilated_cloud"] | m["shadow"] | m["cirrus"])
        out = np.zeros(valid.shape, dtype=np.uint8)
        reproject(clear.astype(np.uint8), out, src_transform=sc.transform, src_crs=sc.crs,
                  dst_transform=ds_transform, dst_crs="EPSG:32632", resampling=Resampling.nearest)
        seen |= out.astype(bool)
    from pyproj import Transformer

    border_x, _ = Transformer.from_crs(4326, 32632, always_xy=True).transform(12.0, float(np.mean(lats)))
    west, east = xs < border_x, xs >= border_x
    assert west.sum() > 10 and east.sum() > 10, "the frame must straddle the UTM zone border"
    assert seen[:, west].mean() > 0.5 and seen[:, east].mean() > 0.5
    # seamless: every pixel some scene saw clearly has a value, on both sides of the border,
    # inside the frame polygon up to its edge (compile's frame: outside it is nodata; the grid is
    # its rectangle, whose corners lie outside the polygon — see test_area_edges.py)
    from imalys_stac.cube.grid import Frame, Grid, geometry_mask

    rows, cols = valid.shape
    t = ds_transform
    inner = geometry_mask(Frame.read(frame).geometry_in(32632), Grid(32632, (t.c, t.f + t.e * rows, t.c + t.a * cols, t.f), 30.0))
    assert not (valid & ~inner).any()
    for side in (west, east):
        want = seen & inner & side[None, :]
        assert valid[want].mean() == 1.0, valid[want].mean()
    assert not (valid & ~seen).any()  # nothing made up where no scene saw the ground
    col = int(np.searchsorted(xs, border_x))
    m = 6
    band = (slice(m, -m), slice(col - 2, col + 2))  # the columns either side of the zone border
    assert seen[band].mean() > 0.5 and (valid[band] == seen[band]).all()  # no seam there
    # values are the ground's reflectance (exact on the zone-32 grid up to the DN step, close
    # where an image of zone 33 was resampled onto it)
    truth = land.evaluate_grid(xs, ys, "EPSG:32632")
    bands = [CHANNELS.index(c) for c in ("blue", "green", "red", "nir08", "swir16", "swir22")]
    err = np.abs(data - truth[bands])[:, valid]
    assert np.median(err) < 0.002 and np.percentile(err, 90) < 0.03, (np.median(err), np.percentile(err, 90))
    assert ctx.runlog.errors == 0
