"""Scaled 16-bit output (`export format = int16`): what it writes reads back, through rasterio,
rioxarray, stackstac and odc-stac, as the float32 export's values within half a scale step."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio

from imalys_stac.chain import ChainError, load_chain
from imalys_stac.commands import run_chain
from imalys_stac.write.scaled import Scaling

from .conftest import bestof_chain


def _reference_encode(values, scale, offset, nodata):
    """One value at a time, as the rule reads: round half to even, clip to int16, NaN → nodata,
    a value landing on nodata moved one step towards zero."""
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(nodata)
            continue
        dn = round((v - offset) / scale)  # Python rounds halves to even, like numpy.rint
        dn = max(-32768, min(32767, dn))
        if dn == nodata:
            dn += 1 if nodata < 0 else -1
        out.append(dn)
    return out


def test_encode_matches_a_plain_loop():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.uniform(-0.3, 1.7, 500), [np.nan, np.inf, -np.inf, -0.9999, 5.0, -5.0, 0.00005, 0.00015]])
    values = values.astype(np.float32)
    for scaling in (Scaling(), Scaling(scale=2.75e-5, offset=-0.2)):
        got = scaling.encode(values)
        assert got.dtype == np.int16
        want = _reference_encode([float(v) for v in values], scaling.scale, scaling.offset, scaling.nodata)
        assert got.tolist() == want


def test_decode_is_within_half_a_step_and_keeps_gaps():
    rng = np.random.default_rng(4)
    values = rng.uniform(-0.2, 1.6, (3, 40, 50)).astype(np.float32)
    values[0, :5] = np.nan
    s = Scaling()
    back = s.decode(s.encode(values))
    assert np.array_equal(np.isnan(back), np.isnan(values))
    ok = ~np.isnan(values)
    # half a step, plus float32 rounding of the values themselves
    assert np.abs(back[ok].astype(np.float64) - values[ok]).max() <= s.scale / 2 + 1e-6


@pytest.mark.parametrize("bad", [dict(scale=0.0), dict(scale=-1e-4), dict(offset=float("nan")), dict(nodata=40000)])
def test_bad_scaling_is_refused(bad):
    with pytest.raises(ValueError):
        Scaling(**bad)


def _chain_error(write_chain, tmp_path, body: str) -> str:
    path = write_chain(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\nexport\n\tselect = bestof\n"
                       + body.replace("{tmp}", str(tmp_path)))
    with pytest.raises(ChainError) as info:
        load_chain(path)
    return str(info.value)


def test_scale_without_int16_is_a_located_error(write_chain, tmp_path):
    text = _chain_error(write_chain, tmp_path, "\ttarget = {tmp}/out.tif\n\tscale = 0.0001\n")
    assert "scale" in text and "format = int16" in text and ":7:" in text


def test_int16_to_a_format_without_scaling_is_a_located_error(write_chain, tmp_path):
    text = _chain_error(write_chain, tmp_path, "\ttarget = {tmp}/out.nc\n\tformat = int16\n")
    assert "format = int16" in text and ".tif" in text


@pytest.fixture(scope="module")
def exports(synthetic_archives, tmp_path_factory):
    """One bestof, exported as float32 and as int16 (default scale) and int16 VRT (own scale/offset)."""
    folder = tmp_path_factory.mktemp("int16")
    chain = bestof_chain(folder, synthetic_archives.folder, "float")
    text = chain.read_text() + (
        f"export\n\tselect = bestof\n\ttarget = {folder}/scaled.tif\n\tformat = int16\n"
        f"export\n\tselect = bestof\n\ttarget = {folder}/shifted.vrt\n\tformat = int16\n\tscale = 0.0002\n\toffset = -0.1\n"
    )
    chain.write_text(text)
    run_chain(load_chain(chain))
    with rasterio.open(folder / "float.tif") as ds:
        reference = ds.read().astype(np.float64)
    assert np.isnan(reference).any() and (~np.isnan(reference)).any()  # the case has both
    return folder, reference


def _close(values: np.ndarray, reference: np.ndarray, step: float) -> None:
    assert values.shape == reference.shape
    assert np.array_equal(np.isnan(values), np.isnan(reference))
    ok = ~np.isnan(reference)
    assert np.abs(values[ok] - reference[ok]).max() <= step / 2 + 1e-6


def test_rasterio_calibrates_the_int16_cog(exports):
    folder, reference = exports
    with rasterio.open(folder / "scaled.tif") as ds:
        assert ds.dtypes[0] == "int16" and ds.nodata == -9999
        dn = ds.read(masked=True)
        values = dn.astype(np.float64).filled(np.nan) * np.array(ds.scales)[:, None, None] + np.array(ds.offsets)[:, None, None]
    _close(values, reference, 1e-4)
    assert (folder / "scaled.tif").stat().st_size < (folder / "float.tif").stat().st_size


@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")  # rioxarray's use of affine
def test_rioxarray_and_the_vrt_calibrate(exports):
    import rioxarray

    folder, reference = exports
    da = rioxarray.open_rasterio(folder / "scaled.tif", mask_and_scale=True)
    _close(da.values.astype(np.float64), reference, 1e-4)
    vrt = rioxarray.open_rasterio(folder / "shifted.vrt", mask_and_scale=True)
    _close(vrt.values.astype(np.float64), reference, 2e-4)
    da.close()
    vrt.close()


@pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")  # rioxarray's use of affine
def test_band_views_of_the_int16_cog_calibrate(exports):
    """The per-band VRTs beside a multi-band export carry the COG's scale and offset."""
    import rioxarray

    folder, reference = exports
    views = sorted((folder / "scaled.bands").glob("*.vrt"))
    assert len(views) == reference.shape[0]
    item = json.loads((folder / "scaled.json").read_text())
    for key, asset in item["assets"].items():
        if key == "data":
            continue
        band = [e["name"] for e in item["assets"]["data"]["eo:bands"]].index(key[: -len(".vrt")])
        da = rioxarray.open_rasterio(folder / asset["href"], mask_and_scale=True)
        _close(da.values.astype(np.float64), reference[band:band + 1], 1e-4)
        da.close()


def test_the_item_records_the_calibration(exports):
    folder, _ = exports
    item = json.loads((folder / "scaled.json").read_text())
    bands = item["assets"]["data"]["raster:bands"]
    assert len(bands) == 2
    assert all(b["data_type"] == "int16" and b["nodata"] == -9999 and b["scale"] == 1e-4 and b["offset"] == 0
               for b in bands)
    assert any("/raster/" in e for e in item["stac_extensions"])
    shifted = json.loads((folder / "shifted.vrt.json").read_text())["assets"]["data"]["raster:bands"]
    assert [(b["scale"], b["offset"]) for b in shifted] == [(2e-4, -0.1)] * 2


@pytest.fixture(scope="module")
def one_band(synthetic_archives, tmp_path_factory):
    """A one-band bestof exported as float32 and int16: stackstac reads one band per asset."""
    folder = tmp_path_factory.mktemp("int16-red")
    chain = bestof_chain(folder, synthetic_archives.folder, "float", bands="\tbands = red\n\tfactor = auto\n")
    chain.write_text(chain.read_text() + f"export\n\tselect = bestof\n\ttarget = {folder}/scaled.tif\n\tformat = int16\n")
    run_chain(load_chain(chain))
    with rasterio.open(folder / "float.tif") as ds:
        reference = ds.read().astype(np.float64)
    return folder, reference


def test_stackstac_rescales_from_the_item(one_band):
    import pystac
    import stackstac

    folder, reference = one_band
    item = pystac.Item.from_file(str(folder / "scaled.json")).make_asset_hrefs_absolute()
    # pystac migrates proj:epsg to proj:code on reading, which stackstac 0.5 does not read: the EPSG given
    epsg = int(str(item.properties.get("proj:code") or item.properties["proj:epsg"]).split(":")[-1])
    with rasterio.open(folder / "scaled.tif") as ds:  # the file's own grid, so pixels match one to one
        bounds, resolution = tuple(ds.bounds), ds.res[0]
    da = stackstac.stack([item], assets=["data"], epsg=epsg, bounds=bounds, resolution=resolution, snap_bounds=False,
                         rescale=True, dtype="float64", fill_value=np.nan, resampling=rasterio.enums.Resampling.nearest)
    values = da.isel(time=0).compute(scheduler="sync").values
    # stackstac reads the asset's bands as one "band" each of the data asset
    _close(values.reshape(reference.shape), reference, 1e-4)


@pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning")  # inside odc-geo 0.5
@pytest.mark.filterwarnings("ignore:Use .@. matmul instead of:PendingDeprecationWarning")  # odc-geo's use of affine
def test_odc_stac_loads_with_the_item_nodata_and_scale(exports):
    import pystac
    from odc.stac import load

    folder, reference = exports
    item = pystac.Item.from_file(str(folder / "scaled.json")).make_asset_hrefs_absolute()
    bands = item.assets["data"].extra_fields["raster:bands"]
    with rasterio.open(folder / "scaled.tif") as ds:
        crs, transform, shape = ds.crs, ds.transform, ds.shape
    from odc.geo.geobox import GeoBox

    box = GeoBox(shape, transform, crs)
    ds = load([item], geobox=box, chunks=None)
    assert len(ds.data_vars) == len(bands)
    # odc-stac keeps the integers and the nodata; the scale and offset are applied from the item
    layers = []
    names = [e["name"] for e in item.assets["data"].extra_fields["eo:bands"]]
    assert sorted(ds.data_vars) == sorted(names)  # odc-stac names the bands of the asset by eo:bands
    for name, band in zip(names, bands):
        dn = ds[name].isel(time=0).values
        assert dn.dtype == np.int16 and ds[name].attrs.get("nodata") == -9999
        layers.append(np.where(dn == band["nodata"], np.nan, dn * band["scale"] + band["offset"]))
    _close(np.stack(layers), reference, 1e-4)


def test_streamed_int16_overview_equals_gdals(tmp_path):
    """The ×2 level of a scaled COG, averaged while the blocks are written, holds what GDAL's own
    `average` overview of the same integers holds (odd sizes: footprints drift across pixels)."""
    import rioxarray  # noqa: F401
    import xarray as xr
    from rasterio.enums import Resampling

    from imalys_stac.write.cog import write_cog

    rng = np.random.default_rng(8)
    a = rng.uniform(-0.2, 1.2, (2, 1101, 1031)).astype(np.float32)
    a[0, 100:300, 200:260] = np.nan
    a[1, :, 7] = np.nan
    da = xr.DataArray(a, dims=("band", "y", "x")).rio.write_transform(
        rasterio.Affine(30, 0, 500000, 0, -30, 5000000)).rio.write_crs(32632)
    out = write_cog(da, tmp_path / "s.tif", scaling=Scaling())
    with rasterio.open(out) as ds:
        full, profile = ds.read(), ds.profile
    with rasterio.open(out, overview_level=0) as ov:
        streamed = ov.read()
    plain = {k: v for k, v in profile.items() if k not in ("blockxsize", "blockysize", "tiled", "interleave", "compress")}
    with rasterio.open(tmp_path / "gdal.tif", "w", **{**plain, "driver": "GTiff"}) as dst:
        dst.write(full)
        dst.build_overviews([2], Resampling.average)
    with rasterio.open(tmp_path / "gdal.tif", overview_level=0) as ov:
        gdal = ov.read()
    assert streamed.dtype == np.int16 and np.array_equal(streamed, gdal)
