"""Products and exported files open in the ecosystem's loaders, pixel for pixel.

A chain on the small synthetic archives (import → compile → reduce → export) writes its items;
each is read as a STAC client does (JSON, no migration: pystac's default migration drops
``proj:epsg``, the only CRS field stackstac 0.5 reads) and loaded with odc-stac (default
arguments) and stackstac (the single-band assets, ``snap_bounds=False``: see docs/loaders.md).
The reference is rasterio reading the same files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.stac.search import read_item

from .conftest import SIX_BANDS

odc_stac = pytest.importorskip("odc.stac")
stackstac = pytest.importorskip("stackstac")

# third-party deprecations raised inside odc-geo/affine while odc-stac loads (not ours to fix)
pytestmark = [
    pytest.mark.filterwarnings("ignore:Use `@` matmul"),
    pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform"),
]


@pytest.fixture(scope="module")
def run(synthetic_archives, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("loaders")
    chain = tmp / "chain.txt"
    chain.write_text(f"""IMALYS [loaders]
home
\tdirectory = {tmp}/wd
\tclear = true
import
\tselect = {synthetic_archives.folder}/*.tar
{SIX_BANDS}compile
\tsearch = LC08*
compile
\tsearch = LC08*
\tcrsystem = 32633
\ttarget = zone33
reduce
\tselect = compile
\texecute = bestof
\tpreserve = bands
export
\tselect = bestof
\ttarget = {tmp}/out/bestof.tif
export
\tselect = compile
\ttarget = {tmp}/out/stack.tif
""")
    run_chain(load_chain(chain))
    return tmp


def _items(run: Path) -> dict[str, Path]:
    wd = run / "wd"
    imports = sorted(p for p in wd.iterdir() if p.name.startswith("LC08_"))
    return {"import": imports[0] / f"{imports[0].name}.json", "compile": wd / "compile" / "compile.json",
            "reduce": wd / "bestof" / "bestof.json", "export": run / "out" / "bestof.json",
            "export-stack": run / "out" / "stack.json", "compile-warped": wd / "zone33" / "zone33.json"}


def _read_bands(path: str, bands: list[int] | None = None) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(bands or list(range(1, ds.count + 1)), masked=True).filled(np.nan).astype("float64")


@pytest.mark.parametrize("kind", ["import", "compile", "compile-warped", "reduce", "export", "export-stack"])
def test_odc_stac_default_load_gives_the_files_pixels(run, kind):
    item = read_item(_items(run)[kind])
    ds = odc_stac.load([item])
    raster = next(a for a in item.assets.values()
                  if "data" in (a.roles or []) and len(a.extra_fields.get("raster:bands") or []) > 1)
    expected = _read_bands(raster.href)
    names = [b["name"] for b in raster.extra_fields["eo:bands"]]
    assert list(ds.data_vars) == names  # the bands by name (no asset key hides them)
    got = np.stack([ds[v].isel(time=0).values.astype("float64") for v in ds.data_vars])
    assert got.shape == expected.shape
    assert np.array_equal(got, expected, equal_nan=True)
    with rasterio.open(raster.href) as src:
        assert tuple(ds.odc.geobox.affine)[:6] == tuple(src.transform)[:6]
        assert ds.odc.geobox.crs.epsg == src.crs.to_epsg()


@pytest.mark.parametrize("kind", ["import", "compile", "compile-warped", "reduce", "export", "export-stack"])
def test_stackstac_reads_the_single_band_assets_exactly(run, kind):
    item = read_item(_items(run)[kind])
    keys = [k for k, a in item.assets.items() if len(a.extra_fields.get("raster:bands") or []) == 1]
    # the multi-band file the band assets are views of, read independently
    raster = next(a for a in item.assets.values() if len(a.extra_fields.get("raster:bands") or []) > 1)
    names = [b["name"] for b in raster.extra_fields["eo:bands"]]
    assert keys == [f"{n}.vrt" for n in names]  # one asset per band, named by the band
    da = stackstac.stack([item], assets=keys, snap_bounds=False)
    expected = _read_bands(raster.href)
    assert da.shape == (1,) + expected.shape
    assert np.array_equal(da.values[0], expected, equal_nan=True)
    assert list(da.band.values) == keys


def test_multi_band_assets_keep_stackstac_out_unless_named(run):
    """stackstac refuses a multi-band asset; the band assets it can read carry one entry each."""
    item = read_item(_items(run)["reduce"])
    data = item.assets["data"]
    assert len(data.extra_fields["raster:bands"]) == 6
    with pytest.raises(ValueError, match="Multi-band"):
        stackstac.stack([item], assets=["data"])


def test_items_carry_both_projection_fields(run):
    for path in _items(run).values():
        props = read_item(path).properties
        assert props["proj:epsg"] == int(props["proj:code"].split(":")[1])
        assert len(props["proj:transform"]) >= 6 and len(props["proj:shape"]) == 2


def test_compile_view_places_each_image_where_the_import_has_it(run):
    """Each band of the compile's VRT is its image's band on the stack's grid (independent read:
    the import's own VRT, windowed by the two grids' offsets)."""
    from rasterio.windows import from_bounds

    item = read_item(_items(run)["compile"])
    with rasterio.open(item.assets["stack"].href) as stack:
        names = list(stack.descriptions)
        got = stack.read()
        bounds = stack.bounds
    for imp in item.properties["imalys:inputs"]:
        it = read_item(run / "wd" / imp / f"{imp}.json")
        with rasterio.open(it.assets["image"].href) as src:
            window = from_bounds(*bounds, transform=src.transform)
            want = src.read(window=window, boundless=True, fill_value=np.nan, masked=False)
            for b, band in enumerate(src.descriptions):
                layer = names.index(f"{it.datetime:%Y%m%d}_{band}")
                assert np.array_equal(got[layer], want[b], equal_nan=True)


def test_compile_view_of_another_zone_is_each_image_warped_onto_the_grid(run):
    """A compile that reprojects sees each image through a warped VRT; reference: rasterio's
    reproject of the import's VRT onto the stack's grid (bilinear, as compile resamples)."""
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    item = read_item(_items(run)["compile-warped"])
    assert item.properties["proj:epsg"] == 32633
    with rasterio.open(item.assets["stack"].href) as stack:
        names, got, transform, crs = list(stack.descriptions), stack.read(), stack.transform, stack.crs
    imp = item.properties["imalys:inputs"][0]
    it = read_item(run / "wd" / imp / f"{imp}.json")
    with rasterio.open(it.assets["image"].href) as src:
        for b, band in enumerate(src.descriptions, start=1):
            want = np.full(got.shape[1:], np.nan, dtype="float32")
            reproject(rasterio.band(src, b), want, dst_transform=transform, dst_crs=crs, src_nodata=np.nan,
                      dst_nodata=np.nan, resampling=Resampling.bilinear)
            layer = got[names.index(f"{it.datetime:%Y%m%d}_{band}")]
            assert np.isfinite(layer).mean() > 0.5
            np.testing.assert_allclose(layer, want, rtol=1e-6, equal_nan=True)


def test_odc_stac_selects_bands_by_name(run):
    item = read_item(_items(run)["export"])
    ds = odc_stac.load([item], bands=["red", "nir08"])
    with rasterio.open(item.assets["data"].href) as src:
        names = list(src.descriptions)
        want = src.read([names.index("red") + 1, names.index("nir08") + 1])
    assert list(ds.data_vars) == ["red", "nir08"]
    assert np.array_equal(np.stack([ds.red.values[0], ds.nir08.values[0]]), want, equal_nan=True)


def test_stackstac_default_grid_is_the_files_when_its_edges_are_multiples_of_the_pixel(run):
    """stackstac snaps its grid to multiples of the pixel size; a grid whose edges are such
    multiples (a compile warped into another zone) loads exactly with snap_bounds left as it is,
    so the item's grid fields (bbox, shape, transform) agree with the file."""
    item = read_item(_items(run)["compile-warped"])
    keys = [k for k, a in item.assets.items() if k.endswith(".vrt")]
    t = item.properties["proj:transform"]
    assert t[2] % t[0] == 0 and t[5] % t[0] == 0
    da = stackstac.stack([item], assets=keys)
    expected = _read_bands(item.assets["stack"].href)
    assert da.shape == (1,) + expected.shape
    assert np.array_equal(da.values[0], expected, equal_nan=True)


def test_no_item_holds_an_integer_a_double_cannot_keep(run):
    """JSON readers that parse numbers as doubles (JavaScript, STAC Browser) change integers above
    2^53; the file stamps (nanosecond times) were such integers."""
    import json

    def big(o):
        if isinstance(o, dict):
            return [x for v in o.values() for x in big(v)]
        if isinstance(o, list):
            return [x for v in o for x in big(v)]
        return [o] if isinstance(o, int) and not isinstance(o, bool) and abs(o) > 2**53 else []

    files = sorted(run.rglob("*.json"))
    assert len(files) > 8
    for path in files:
        assert big(json.loads(path.read_text(encoding="utf-8"))) == [], path
