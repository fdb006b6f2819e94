"""Frame edges of a seamless area compiled onto either UTM zone: every pixel inside the frame where a
scene saw the ground clearly has a value, up to the frame's edge (no margin), and nothing outside
the frame polygon has one (compile's `frame`: pixels outside become nodata).

Import crops each acquisition to the frame's rectangle in the tile's own CRS; compile does not
read through that crop but from the archive members onto its own grid, so an image warped onto
the other zone has data up to the frame edge as well. Reference: the generator's own masks,
warped onto the output grid (nearest neighbour), and the frame polygon rasterised on it."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, reproject
from shapely.geometry import box

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain

PATHS_ROWS = ((193, 26), (193, 27), (192, 26), (192, 27))  # paths 193 / 192: UTM zones 32 / 33
SIZE = 96


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    from imalys_stac.synth import Landscape, SceneSpec, write_frame, write_landsat_archive, wrs_centre

    root = tmp_path_factory.mktemp("edges")
    land = Landscape(seed=13)
    scenes = []
    for i in range(2):
        for path, row in PATHS_ROWS:
            acquired = date(2022, 6, 1) + timedelta(days=16 * i + (9 if path == 192 else 0))
            scenes.append(write_landsat_archive(root / "archives", SceneSpec(
                path=path, row=row, acquired=acquired, size=SIZE, cloud_cover=0.2, seed=500 + 10 * i + path + row),
                landscape=land))
    centres = [wrs_centre(p, r, SIZE) for p, r in PATHS_ROWS]
    lons, lats = [c[0] for c in centres], [c[1] for c in centres]
    pad = 0.3 * SIZE * 30 / (111320 * np.cos(np.radians(np.mean(lats))))
    frame = write_frame(root / "frame.geojson", box(min(lons) - pad, min(lats), max(lons) + pad, max(lats)), 4326)
    return root, frame, scenes


def _run(root, frame, epsg: int, compile_frame: bool, name: str):
    out = root / f"{name}.tif"
    chain = root / f"{name}.txt"
    chain.write_text(f"""IMALYS [frame edges]
home
\tdirectory = {root}/wd-{name}
\tclear = true
import
\tselect = {root}/archives/*.tar
\tframe = {frame}
\tbands = _B2, _B3, _B4
\tfactor = 2.75e-5
\toffset = -0.2
compile
\tsearch = LC0*
{f"	frame = {frame}" if compile_frame else ""}
\tcrsystem = {epsg}
\tpixel = 30
reduce
\tselect = compile
\texecute = bestof
\tpreserve = bands
export
\tselect = bestof
\ttarget = {out}
""")
    run_chain(load_chain(chain))
    with rasterio.open(out) as ds:
        return np.isfinite(ds.read(1)), ds.transform


def _seen(scenes, shape, transform, epsg):
    """Where some scene saw the ground clearly, on the output grid."""
    seen = np.zeros(shape, dtype=bool)
    for sc in scenes:
        m = sc.truth
        clear = ~(m["fill"] | m["cloud"] | m["dilated_cloud"] | m["shadow"] | m["cirrus"])
        out = np.zeros(shape, dtype=np.uint8)
        reproject(clear.astype(np.uint8), out, src_transform=sc.transform, src_crs=sc.crs,
                  dst_transform=transform, dst_crs=f"EPSG:{epsg}", resampling=Resampling.nearest)
        seen |= out.astype(bool)
    return seen


@pytest.mark.parametrize("epsg", [32632, 32633])  # either zone: the other zone's images are warped
def test_data_reaches_the_frame_edge_on_either_zone(archives, epsg):
    from imalys_stac.cube.grid import Frame, Grid, geometry_mask

    root, frame, scenes = archives
    valid, t = _run(root, frame, epsg, True, f"framed-{epsg}")
    rows, cols = valid.shape
    grid = Grid(epsg, (t.c, t.f + t.e * rows, t.c + t.a * cols, t.f), t.a)
    inside = geometry_mask(Frame.read(frame).geometry_in(epsg), grid)
    seen = _seen(scenes, valid.shape, t, epsg)
    assert inside.mean() > 0.8 and seen[inside].mean() > 0.5
    # no strip at the edges: every pixel of the frame a scene saw has a value, the outermost
    # rows and columns included
    want = seen & inside
    assert valid[want].all(), np.argwhere(want & ~valid)[:10]
    # the frame's edge itself is tested, not only its inside: pixels of the polygon next to the
    # outside (or on the grid's border), on all four sides
    padded = np.pad(inside, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge = want & ~interior
    r, c = np.nonzero(edge)
    assert edge.sum() > 100
    assert (r < 2).sum() > 10 and (r >= rows - 2).sum() > 10 and (c < 3).sum() > 3 and (c >= cols - 3).sum() > 3
    # the frame polygon is exact: outside it nodata (the grid is its bounding rectangle)
    assert not (valid & ~inside).any()
    assert (~inside).sum() > 0  # the corners of the rectangle lie outside the polygon in either zone
    assert not (valid & ~seen).any()  # nothing where no scene saw the ground


def test_without_a_compile_frame_the_grid_is_filled_to_its_edges(archives):
    """The grid is then the union of the imported rectangles in the target zone: the zone-33
    rectangle, rotated into zone 32, sticks out of the zone-32 ones; compile reads the archives
    there too (nothing is cut to the import's rectangle)."""
    root, frame, scenes = archives
    valid, t = _run(root, frame, 32632, False, "union-32632")
    seen = _seen(scenes, valid.shape, t, 32632)
    assert seen.mean() > 0.5
    assert valid[seen].all()
    assert not (valid & ~seen).any()
    for edge in (seen[0], seen[-1], seen[:, 0], seen[:, -1]):
        assert edge.sum() > 10
