"""cube.tiles warping: the bands of a scene warped by one GDAL call, and without the nodata mask
where the source window holds no nodata — pixels identical to one masked GDAL call per band."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject

from imalys_stac.cube import tiles as T

SRC_T = Affine(30, 0, 600000, 0, -30, 5400000)
GRID = T.OutGrid(32633, Affine(30, 0, 160000, 0, -30, 5402000), 620, 640)  # UTM 33: every source pixel warped


def _tif(path, data, tile=128, nodata=0):
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype,
                       crs="EPSG:32632", transform=SRC_T, nodata=nodata, tiled=True, blockxsize=tile, blockysize=tile,
                       compress="deflate") as ds:
        ds.write(data, 1)
    return str(path)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """Three bands of one scene with nodata where a real scene has it (a fill corner in every band)
    and where it may not (a stripe in one band, a block in another), and a QA-like band."""
    tmp = tmp_path_factory.mktemp("warp")
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:700, 0:900]
    smooth = (20000 + 8000 * np.sin(xx / 37.0) * np.cos(yy / 23.0)).astype(np.uint16)
    bands = [smooth + rng.integers(0, 900, smooth.shape, dtype=np.uint16) for _ in range(3)]
    corner = xx + yy < 160  # the fill corner of a tilted scene
    for b in bands:
        b[corner] = 0
    bands[0][400:404, :] = 0
    bands[1][100:150, 600:700] = 0
    qa = rng.integers(21824, 21900, smooth.shape, dtype=np.uint16)
    qa[corner] = 1
    hrefs = [_tif(tmp / f"b{i}.tif", b) for i, b in enumerate(bands)]
    return {"hrefs": hrefs, "arrays": bands, "qa": _tif(tmp / "qa.tif", qa, nodata=1), "qa_array": qa}


def _masked_per_band(plan: T.SourcePlan, array: np.ndarray, y0, y1, x0, x1) -> np.ndarray:
    """The reference: one GDAL call for this band alone, with its nodata mask, over the window the
    plan reads (what the reader did before bands were warped together)."""
    out = np.full((y1 - y0, x1 - x0), plan.fill, dtype=plan.dtype)
    w = plan.source_window(y0, y1, x0, x1)
    if w is None:
        return out
    r0, r1, c0, c1 = w
    reproject(np.ascontiguousarray(array[r0:r1, c0:c1]), out, src_transform=SRC_T @ Affine.translation(c0, r0),
              src_crs="EPSG:32632", src_nodata=plan.info.nodata, dst_transform=GRID.transform @ Affine.translation(x0, y0),
              dst_crs="EPSG:32633", dst_nodata=plan.fill, resampling=plan.resampling, init_dest_nodata=True, num_threads=1)
    return out


@pytest.mark.parametrize("resampling", [Resampling.bilinear, Resampling.nearest])
def test_bands_warped_together_equal_one_masked_call_per_band(scene, resampling, monkeypatch):
    chunks = T.regular_chunks(GRID.height, 128), T.regular_chunks(GRID.width, 128)
    infos = T.source_infos(scene["hrefs"])
    plans = [T.SourcePlan(i, GRID, *chunks, resampling, np.dtype("uint16"), np.uint16(0), "test-warp") for i in infos]
    assert len({p.warp_key() for p in plans}) == 1
    calls = []  # per GDAL call: (bands, masked)
    real = T.reproject

    def spy(src, dst, **kw):
        calls.append((src.shape[0] if src.ndim == 3 else 1, kw["src_nodata"] is not None))
        return real(src, dst, **kw)

    monkeypatch.setattr(T, "reproject", spy)
    compared = 0
    y0 = 0
    for h in chunks[0]:
        x0 = 0
        for w in chunks[1]:
            got = T.warp_together(plans, y0, y0 + h, x0, x0 + w)
            for p, array, g in zip(plans, scene["arrays"], got):
                np.testing.assert_array_equal(g, _masked_per_band(p, array, y0, y0 + h, x0, x0 + w))
                compared += int((g > 0).sum())
            x0 += w
        y0 += h
    # every kind of call ran: all bands unmasked (inside the scene, away from nodata), all bands
    # masked (only the fill corner, the same in every band), band by band (a band's own nodata);
    # on enough valid pixels to mean something
    kinds = set(calls)
    assert {(3, False), (3, True), (1, True)} <= kinds, calls
    assert compared > 3 * 100_000


def test_read_stack_groups_a_scenes_bands_and_keeps_qa_apart(scene):
    """Through read_stack: bilinear bands in one call, the QA band (nearest, its own fill) in
    another; each equals its own single-band read."""
    hrefs = [scene["hrefs"] + [scene["qa"]]]
    kw = dict(chunksize=200, resampling=Resampling.bilinear, dtype="uint16", fill=np.uint16(0),
              band_fill=[np.uint16(0)] * 3 + [np.uint16(1)], band_resampling=[None] * 3 + [Resampling.nearest])
    data, how = T.read_stack(hrefs, GRID, **kw)
    assert how == "regular"
    dsk = dict(data.__dask_graph__())
    p = next(v for k, v in dsk.items() if isinstance(k, tuple))[1]
    assert p.warped == [[[0, 1, 2], [3]]] and p.alone == [[]]
    got = data.compute(scheduler="threads")[0]
    for b, href in enumerate(hrefs[0]):
        one, _ = T.read_stack([[href]], GRID, **{**kw, "band_fill": [kw["band_fill"][b]],
                                                 "band_resampling": [kw["band_resampling"][b]]})
        np.testing.assert_array_equal(got[b], one.compute(scheduler="threads")[0, 0])
    assert (got[3] == 1).mean() > 0.05 and (got[:3] > 0).mean() > 0.3  # fill and data both present
