"""Writers: COG validity and overview content, exact round trips, ENVI bytes, other formats,
atomicity, distributed clients, streaming. References are plain numpy computed independently."""
from __future__ import annotations

import tracemalloc
from pathlib import Path

import dask
import dask.array as dsa
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor these tests use)
import xarray as xr
from affine import Affine
from PIL import Image

from imalys_stac.write import FORMATS, atomic_path, check_cog, write_cog, write_envi, write_image, write_quicklook
from imalys_stac.write.cog import overview_factors
from imalys_stac.write.quicklook import guess_rgb

H, W = 700, 900
NAMES = ["red", "green", "nir08"]
X0, Y0, RES = 600000.0, 5400000.0, 30.0


def reference() -> np.ndarray:
    """3 × 700 × 900 float32 with NaN areas aligned to 4-pixel blocks (so every overview block is
    either all-NaN or all-valid and block means are unambiguous) plus scattered NaN pixels."""
    rng = np.random.default_rng(42)
    a = rng.random((3, H, W), dtype=np.float32) * 0.5
    a[:, :100, :] = np.nan  # a stripe
    a[1, 200:320, 400:600] = np.nan  # a hole in one band only
    return a


def as_da(a: np.ndarray, chunks=(3, 256, 256), names=NAMES) -> xr.DataArray:
    data = dsa.from_array(a, chunks=chunks) if chunks else a
    return xr.DataArray(
        data, dims=("band", "y", "x"),
        coords={"band": names, "y": Y0 - RES / 2 - RES * np.arange(a.shape[1]),
                "x": X0 + RES / 2 + RES * np.arange(a.shape[2])},
    ).rio.write_crs("EPSG:32632")


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """Independent overview reference: mean of the valid pixels of each f × f block."""
    b, h, w = a.shape
    blocks = a.reshape(b, h // f, f, w // f, f)
    valid = np.isfinite(blocks)
    n = valid.sum(axis=(2, 4))
    s = np.where(valid, blocks, 0).astype(np.float64).sum(axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / n, np.nan)


@pytest.fixture(scope="module")
def ref() -> np.ndarray:
    return reference()


# ---------------------------------------------------------------- COG


def test_cog_structure_values_and_metadata(tmp_path, ref):
    from rio_cogeo.cogeo import cog_validate

    out = write_cog(as_da(ref), tmp_path / "p.tif", blocksize=256, tags={"IMALYS_PROCESS": "bestof"})
    assert out == tmp_path / "p.tif"
    valid, errors, _ = cog_validate(str(out), quiet=True)
    assert valid, errors
    ok, errors, _ = check_cog(out)
    assert ok, errors
    with rasterio.open(out) as src:
        st = src.tags(ns="IMAGE_STRUCTURE")
        assert st["LAYOUT"] == "COG" and st["COMPRESSION"] == "ZSTD" and st["PREDICTOR"] == "3"
        assert src.profile["tiled"] and src.block_shapes[0] == (256, 256)
        assert np.isnan(src.nodata)
        assert src.descriptions == tuple(NAMES)
        assert src.tags()["IMALYS_PROCESS"] == "bestof"
        assert src.crs.to_epsg() == 32632
        assert src.transform == Affine(RES, 0, X0, 0, -RES, Y0)
        assert src.overviews(1) == [2, 4]
        np.testing.assert_array_equal(src.read(), ref)  # exact, NaN where NaN
    for level, f in enumerate([2, 4]):
        with rasterio.open(out, overview_level=level) as ov:
            o = ov.read()
        expect = block_mean(ref, f)
        assert np.array_equal(np.isnan(o), np.isnan(expect))
        np.testing.assert_allclose(o[np.isfinite(o)], expect[np.isfinite(expect)], rtol=1e-5)
        assert np.nanmax(np.abs(o)) > 0.1  # the rioxarray-410 trap: all-zero overviews


def test_cog_deflate_numpy_input_and_2d(tmp_path, ref):
    out = write_cog(as_da(ref, chunks=None), tmp_path / "n.tif", compress="deflate", level=6)
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
        np.testing.assert_array_equal(src.read(), ref)
    two = as_da(ref)[0].drop_vars("band")
    out = write_cog(two, tmp_path / "one.tif", band_names=["ndvi"])
    with rasterio.open(out) as src:
        assert src.count == 1 and src.descriptions == ("ndvi",)
        np.testing.assert_array_equal(src.read(1), ref[0])
    assert check_cog(out)[0]


def test_cog_integer_uses_predictor_2(tmp_path):
    a = np.arange(600 * 600, dtype=np.uint16).reshape(1, 600, 600) % 1000
    out = write_cog(as_da(a, chunks=(1, 200, 200), names=["count"]), tmp_path / "c.tif")
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        np.testing.assert_array_equal(src.read(), a)
    assert check_cog(out)[0]


def test_check_cog_catches_wrong_overviews(tmp_path, ref):
    """A structurally valid COG whose overviews do not show its pixels (all zero) must fail."""
    src_path = tmp_path / "src.tif"
    profile = dict(driver="GTiff", width=W, height=H, count=3, dtype="float32", crs="EPSG:32632",
                   transform=Affine(RES, 0, X0, 0, -RES, Y0), nodata=np.nan, tiled=True,
                   blockxsize=256, blockysize=256)
    with rasterio.open(src_path, "w", **profile) as dst:
        dst.write(np.zeros_like(ref))
        dst.build_overviews([2, 4], rasterio.enums.Resampling.average)  # overviews of zeros…
        dst.write(np.nan_to_num(ref, nan=0.3))  # …then the real pixels: stale overviews
    bad = tmp_path / "bad.tif"
    rasterio.shutil.copy(src_path, bad, driver="COG", OVERVIEWS="FORCE_USE_EXISTING", BLOCKSIZE=256)
    ok, errors, _ = check_cog(bad)
    assert not ok
    assert any("all zero" in e for e in errors)


def gdal_average_reference(a: np.ndarray, ow: int, oh: int) -> np.ndarray:
    """Independent reference of GDAL's `average` overview of one level from the one above, as
    area overlap: overview pixel i covers the source interval [i·W/ow, (i+1)·W/ow); each source
    pixel weighs by the length of its overlap with that interval; NaN pixels are left out."""
    def overlap(n, on):
        r = n / on
        lo = np.arange(on)[:, None] * r
        s = np.arange(n)[None, :]
        w = np.clip(np.minimum(s + 1, lo + r) - np.maximum(s, lo), 0, None)
        return np.where(w > 1e-6, w, 0)

    wy, wx = overlap(a.shape[1], oh), overlap(a.shape[2], ow)
    ok = np.isfinite(a)
    num = np.stack([wy @ np.where(ok[k], a[k], 0).astype(np.float64) @ wx.T for k in range(a.shape[0])])
    den = np.stack([wy @ ok[k].astype(np.float64) @ wx.T for k in range(a.shape[0])])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def assert_overviews_are_averages(path) -> None:
    """Every overview level equals the reference average of the level above (GDAL builds each
    level from the previous one), same NaN pattern."""
    with rasterio.open(path) as src:
        prev = src.read()
        levels = src.overviews(1)
    for level in range(len(levels)):
        with rasterio.open(path, overview_level=level) as ov:
            got = ov.read()
        expect = gdal_average_reference(prev, got.shape[2], got.shape[1])
        assert np.array_equal(np.isnan(got), np.isnan(expect))
        np.testing.assert_allclose(got[np.isfinite(got)], expect[np.isfinite(expect)], rtol=1e-5, atol=1e-7)
        prev = got


def masked_pattern(h: int, w: int, seed: int, valid_fraction: float) -> np.ndarray:
    """Reflectance-like values with clouds: a few big NaN blobs plus salt-and-pepper NaN, so most
    overview pixels cover a mix of valid and masked pixels (mean of block means ≠ pooled mean)."""
    rng = np.random.default_rng(seed)
    a = (0.02 + 0.3 * rng.random((3, h, w))).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    a[:, (yy - h / 3) ** 2 + (xx - w / 4) ** 2 < (min(h, w) / 4) ** 2] = np.nan
    a[rng.random((3, h, w)) > valid_fraction] = np.nan
    a[:, :, : w // 10] *= 3  # a bright strip: block means vary strongly
    return a


@pytest.mark.parametrize("shape,valid", [((701, 903), 0.05), ((1030, 517), 0.3), ((640, 640), 0.6)])
def test_cog_check_heavily_masked_passes(tmp_path, shape, valid):
    """The false alarm of issue 8: heavily masked images (odd sizes too) pass the self-check,
    and their overviews are indeed the averages of the valid pixels they cover."""
    a = masked_pattern(*shape, seed=shape[0], valid_fraction=valid)
    out = write_cog(as_da(a, chunks=(3, 200, 300)), tmp_path / "m.tif", blocksize=128)
    ok, errors, _ = check_cog(out)
    assert ok, errors
    assert len(rasterio.open(out).overviews(1)) >= 2
    assert_overviews_are_averages(out)


def cloud_edges(h: int = 512, w: int = 640) -> np.ndarray:
    """Brighter where cloudier: the chance that a pixel is masked grows with its value (cloud
    edges and haze), so the blocks with few valid pixels are the bright ones."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    v = (0.5 + 0.5 * np.sin(xx / 9.0) * np.cos(yy / 7.0)).astype(np.float32)
    a = np.broadcast_to(0.02 + 0.4 * v, (3, h, w)).copy()
    a[rng.random((3, h, w)) < 0.97 * v] = np.nan
    return a


def pooled_mean_alarms(path, window: int = 32) -> int:
    """The old rule of issue 8: the mean of an overview window against the pooled mean of the valid
    full-resolution pixels it covers (tolerance 0.1·std + 1 %). Returns how many windows alarm."""
    alarms = 0
    with rasterio.open(path) as src:
        for level in range(len(src.overviews(1))):
            with rasterio.open(path, overview_level=level) as ov:
                f = src.width / ov.width
                for row in range(0, ov.height - window, window):
                    for col in range(0, ov.width - window, window):
                        o = ov.read(window=rasterio.windows.Window(col, row, window, window)).astype(float)
                        full = src.read(window=rasterio.windows.Window(
                            round(col * f), round(row * f), round(window * f), round(window * f))).astype(float)
                        for b in range(full.shape[0]):
                            if np.isfinite(full[b]).any():
                                fm, fs, om = np.nanmean(full[b]), np.nanstd(full[b]), np.nanmean(o[b])
                                alarms += abs(om - fm) > 0.1 * fs + 0.01 * abs(fm) + 1e-6
    return alarms


def test_pooled_mean_rule_cried_wolf_the_new_check_does_not(tmp_path):
    """Issue 8's false alarm in small: where masking correlates with brightness, the pooled mean
    and the mean of the overview pixels differ although every overview pixel is the right
    average; the old rule alarms, the new check passes, and the overviews are right."""
    out = write_cog(as_da(cloud_edges()), tmp_path / "w.tif", blocksize=128)
    assert pooled_mean_alarms(out) > 10
    ok, errors, _ = check_cog(out)
    assert ok, errors
    assert_overviews_are_averages(out)


def _reprojected(a: np.ndarray, **kw) -> xr.DataArray:
    from rasterio.enums import Resampling

    return as_da(a, chunks=None).rio.reproject(resampling=Resampling.bilinear, nodata=np.nan, **kw)


@pytest.mark.parametrize("how", ["warped", "upsampled", "downsampled"])
def test_cog_check_warped_and_resampled_results_pass(tmp_path, how):
    """Results warped to another CRS (NaN corners), upsampled (×2.7) and downsampled (÷2.3),
    heavily masked: valid COGs, overviews checked like with like."""
    a = masked_pattern(600, 700, seed=7, valid_fraction=0.25)
    if how == "warped":
        da = _reprojected(a, dst_crs="EPSG:3035")
    elif how == "upsampled":
        da = _reprojected(a, dst_crs="EPSG:32632", resolution=RES / 2.7)
    else:
        da = _reprojected(a, dst_crs="EPSG:32632", resolution=RES * 2.3)
    assert np.isnan(da.values).mean() > 0.5
    out = write_cog(da.chunk({"band": -1, "y": 333, "x": 333}), tmp_path / f"{how}.tif", blocksize=128)
    ok, errors, _ = check_cog(out)
    assert ok, errors
    assert_overviews_are_averages(out)


def _cog_with_stale_overviews(tmp_path, base: np.ndarray, real: np.ndarray, resampling="average") -> Path:
    """A structurally valid COG, tagged as having `average` overviews, whose overviews were built
    from `base` while its pixels are `real`."""
    h, w = base.shape[1:]
    src_path = tmp_path / "src.tif"
    profile = dict(driver="GTiff", width=w, height=h, count=base.shape[0], dtype="float32", crs="EPSG:32632",
                   transform=Affine(RES, 0, X0, 0, -RES, Y0), nodata=np.nan, tiled=True,
                   blockxsize=128, blockysize=128)
    with rasterio.open(src_path, "w", **profile) as dst:
        dst.write(base)
        dst.build_overviews([2, 4], rasterio.enums.Resampling[resampling])
        dst.write(real)
        dst.update_tags(OVR_RESAMPLING_ALG="AVERAGE")
    bad = tmp_path / "bad.tif"
    rasterio.shutil.copy(src_path, bad, driver="COG", OVERVIEWS="FORCE_USE_EXISTING", BLOCKSIZE=128)
    assert cog_validate(bad)
    return bad


def cog_validate(path) -> bool:
    from rio_cogeo.cogeo import cog_validate as validate

    return validate(str(path), quiet=True)[0]


def test_check_cog_catches_subtly_wrong_overviews(tmp_path):
    """Genuinely wrong overviews are still caught, even when they are not empty: 3 % too bright,
    a NaN pattern that does not match, and nearest-neighbour overviews that claim to be averages."""
    a = masked_pattern(600, 700, seed=3, valid_fraction=0.5)
    ok, errors, _ = check_cog(_cog_with_stale_overviews(tmp_path, a * np.float32(1.03), a))
    assert not ok and any("differ from the average" in e for e in errors), errors
    ok, errors, _ = check_cog(_cog_with_stale_overviews(tmp_path, np.nan_to_num(a, nan=0.1), a))
    assert not ok and any("nodata in one of" in e for e in errors), errors
    full = np.nan_to_num(a, nan=0.2)
    ok, errors, _ = check_cog(_cog_with_stale_overviews(tmp_path, full, full, resampling="nearest"))
    assert not ok and any("differ from the average" in e for e in errors), errors
    # the same file with right overviews passes: the test can tell the difference
    ok, errors, _ = check_cog(_cog_with_stale_overviews(tmp_path, a, a))
    assert ok, errors


def test_write_cog_checks_before_moving_into_place(tmp_path, ref, monkeypatch):
    """A COG that fails its check is never moved onto the target: an existing file stays as it
    was, nothing is left beside it, and the error says why."""
    from imalys_stac.write import cog

    target = tmp_path / "p.tif"
    target.write_bytes(b"the previous product")
    calls = []
    real_assemble = cog.assemble

    def assemble_then_spoil(levels, dst):
        calls.append(1)
        real_assemble(levels, dst)
        # pixels changed after the overviews were built
        with rasterio.open(dst, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
            ds.write(np.full((ds.count, ds.height, ds.width), 0.9, dtype="float32"))

    monkeypatch.setattr(cog, "assemble", assemble_then_spoil)
    with pytest.raises(cog.InvalidCOG, match="differ from the average"):
        write_cog(as_da(ref), target, blocksize=256)
    assert calls and target.read_bytes() == b"the previous product"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.tif"]


def test_real_scene_frame_exports(tmp_path):
    """Issue 8's report: the real USGS scene, a 1° × 1° frame, quality 0.05, compile onto 100 m
    EPSG:32618, reduce bestof, export a COG → exit 0, with the COG and its STAC item."""
    import json

    from imalys_stac.cli import main
    from tests.realdata import tar_real_scene

    tar_real_scene(tmp_path / "archives")
    (tmp_path / "frame.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
            [[-75.6, 0.9], [-74.6, 0.9], [-74.6, 1.9], [-75.6, 1.9], [-75.6, 0.9]]]}}]}))
    chain = tmp_path / "chain.txt"
    chain.write_text(f"""IMALYS real scene frame
home
\tdirectory = {tmp_path}/wd
\tclear = true
\tlog = {tmp_path}/log
catalog
\tarchives = {tmp_path}/archives/*_L2SP_*.tar
\ttarget = {tmp_path}/archives/bonds.csv
import
\tdatabase = {tmp_path}/archives/bonds.csv
\tperiod = 20191101-20191231
\tframe = {tmp_path}/frame.geojson
\tquality = 0.05
\tbands = _B2, _B3, _B4, _B5, _B6, _B7
\tfactor = auto
compile
\tselect = LC08_008059_20191201
\tcrsystem = 32618
\tpixel = 100
reduce
\tselect = compile
\texecute = bestof
export
\tselect = bestof
\ttarget = {tmp_path}/out/bestof.tif
""")
    assert main(["run", str(chain)]) == 0
    out = tmp_path / "out" / "bestof.tif"
    assert (tmp_path / "out" / "bestof.json").is_file()
    ok, errors, _ = check_cog(out)
    assert ok, errors
    with rasterio.open(out) as src:
        assert src.res == (100.0, 100.0) and src.crs.to_epsg() == 32618 and src.overviews(1)
        assert 0.3 < np.isnan(src.read()).mean() < 1  # heavily masked: ~77 % cloud in the scene
    assert_overviews_are_averages(out)


def test_overview_factors_match_gdal_auto():
    assert overview_factors(4096, 4096, 512) == [2, 4, 8]
    assert overview_factors(900, 700, 512) == [2]
    assert overview_factors(500, 300, 512) == []


def test_cog_bad_arguments(tmp_path, ref):
    with pytest.raises(ValueError, match="deflate"):
        write_cog(as_da(ref), tmp_path / "x.tif", compress="jpeg2000")
    with pytest.raises(ValueError, match="overviews"):
        write_cog(as_da(ref), tmp_path / "x.tif", overviews="some")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- ENVI


def parse_hdr(text: str) -> dict[str, str]:
    lines = text.splitlines()
    assert lines[0] == "ENVI"
    out = {}
    for line in lines[1:]:
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def test_envi_header_raw_values_and_gdal(tmp_path, ref):
    out = write_image(as_da(ref, chunks=(1, 300, 400)), tmp_path / "bestof", tags={"IMALYS_PROCESS": "bestof"})
    assert out == tmp_path / "bestof"
    hdr = parse_hdr((tmp_path / "bestof.hdr").read_text())
    assert (hdr["samples"], hdr["lines"], hdr["bands"]) == ("900", "700", "3")
    assert hdr["header offset"] == "0" and hdr["file type"] == "ENVI Standard"
    assert hdr["data type"] == "4" and hdr["interleave"] == "bsq" and hdr["byte order"] == "0"
    assert hdr["map info"] == "{UTM, 1, 1, 600000.0, 5400000.0, 30.0, 30.0, 32, North, WGS-84, units=Meters}"
    assert "UTM_Zone_32N" in hdr["coordinate system string"]
    assert hdr["band names"] == "{red, green, nir08}"
    assert hdr["data ignore value"] == "nan"
    assert "IMALYS_PROCESS=bestof" in hdr["description"]
    raw = np.fromfile(out, dtype="<f4")
    assert raw.size == 3 * H * W
    np.testing.assert_array_equal(raw.reshape(3, H, W), ref)
    with rasterio.open(out) as src:
        assert src.driver == "ENVI"
        assert src.transform.almost_equals(Affine(RES, 0, X0, 0, -RES, Y0))
        assert src.crs.to_epsg() == 32632
        assert np.isnan(src.nodata)
        assert src.descriptions == tuple(NAMES)
        np.testing.assert_array_equal(src.read(), ref)


# ---------------------------------------------------------------- other formats


def test_netcdf_zarr_vrt(tmp_path, ref):
    nc = write_image(as_da(ref), tmp_path / "p.nc", tags={"K": "v"})
    with xr.open_dataset(nc, engine="h5netcdf") as ds:
        assert list(ds["band"].values) == NAMES and ds.attrs["K"] == "v"
        np.testing.assert_array_equal(ds["p"].values, ref)
        np.testing.assert_allclose(ds["x"].values, X0 + 15 + 30 * np.arange(W))
        assert ds["p"].rio.crs.to_epsg() == 32632
    zr = write_image(as_da(ref), tmp_path / "p.zarr")
    with xr.open_zarr(zr) as ds:
        np.testing.assert_array_equal(ds["p"].values, ref)
        assert list(ds["band"].values) == NAMES
        assert ds["p"].rio.crs.to_epsg() == 32632
    vrt = write_image(as_da(ref), tmp_path / "p.vrt")
    assert "relativeToVRT=\"1\"" in vrt.read_text()
    with rasterio.open(vrt) as src:
        assert src.driver == "VRT" and src.descriptions == tuple(NAMES)
        assert src.transform == Affine(RES, 0, X0, 0, -RES, Y0)
        np.testing.assert_array_equal(src.read(), ref)
    assert check_cog(tmp_path / "p.tif")[0]


def test_zarr_replaces_existing_store(tmp_path, ref):
    write_image(as_da(ref), tmp_path / "p.zarr")
    write_image(as_da(ref * 2), tmp_path / "p.zarr")
    with xr.open_zarr(tmp_path / "p.zarr") as ds:
        np.testing.assert_array_equal(ds["p"].values, ref * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.zarr"]


def test_png_quicklook(tmp_path, ref):
    png = write_image(as_da(ref), tmp_path / "q.png")
    img = Image.open(png)
    img.load()
    assert img.format == "PNG" and img.mode == "RGBA" and max(img.size) <= 1024
    assert img.size == (W, H)
    small = write_quicklook(as_da(ref), tmp_path / "s.png", max_size=300)
    a = np.asarray(Image.open(small))
    assert a.shape == (234, 300, 4)  # 700/3 padded up, 900/3
    assert (a[:33, :, 3] == 0).all() and (a[:33, :, :3] == 0).all()  # NaN stripe: black, transparent
    assert (a[40:, :, 3] == 255).mean() > 0.9
    cog = write_cog(as_da(ref), tmp_path / "c.tif", blocksize=256)
    from_file = np.asarray(Image.open(write_quicklook(cog, tmp_path / "f.png", max_size=200, rgb=["red"])))
    assert from_file.shape[2] == 2 and max(from_file.shape[:2]) <= 200


def test_guess_rgb():
    assert guess_rgb(["blue", "green", "red", "nir08", "swir16"], 5) == [3, 2, 1]
    assert guess_rgb(["blue", "green", "red"], 3) == [2, 1, 0]
    assert guess_rgb(["20220515_blue", "20220515_green", "20220515_red"], 3) == [2, 1, 0]
    assert guess_rgb(["a", "b", "c", "d"], 4) == [0, 1, 2]
    assert guess_rgb(None, 1) == [0]


def test_unknown_ending(tmp_path, ref):
    with pytest.raises(ValueError, match=r"\.tif.*\.zarr.*ENVI"):
        write_image(as_da(ref), tmp_path / "p.jpg")
    assert "" in FORMATS and ".tif" in FORMATS


# ---------------------------------------------------------------- atomicity


def failing(ref: np.ndarray) -> xr.DataArray:
    """A lazy array whose last block raises while writing."""
    good = as_da(ref)

    def boom(block, block_info=None):
        if block_info[0]["chunk-location"][1:] == (2, 3):
            raise RuntimeError("block failed")
        return block

    return good.copy(data=good.data.map_blocks(boom, dtype=good.dtype))


@pytest.mark.parametrize("name", ["p.tif", "p", "p.nc", "p.zarr", "p.vrt", "p.png"])
def test_atomic_on_error(tmp_path, ref, name):
    with pytest.raises(RuntimeError, match="block failed"):
        write_image(failing(ref), tmp_path / name)
    assert list(tmp_path.iterdir()) == []
    # an existing product stays untouched
    write_image(as_da(ref), tmp_path / name)
    before = {p.name: (p.read_bytes() if p.is_file() else None) for p in tmp_path.iterdir()}
    with pytest.raises(RuntimeError, match="block failed"):
        write_image(failing(ref), tmp_path / name)
    after = {p.name: (p.read_bytes() if p.is_file() else None) for p in tmp_path.iterdir()}
    assert after == before


def test_atomic_path(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(KeyError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".t.txt.tmp-")
            tmp.write_text("half")
            raise KeyError("x")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


# ---------------------------------------------------------------- schedulers and streaming


@pytest.fixture(scope="module")
def thread_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


def spy_distributed(monkeypatch) -> list[int]:
    """Record that chunks went through the client path (computed on workers, written here)."""
    from imalys_stac.write import blocks

    calls: list[int] = []
    real = blocks._stream_distributed

    def spy(data, sink, client):
        calls.append(1)
        return real(data, sink, client)

    monkeypatch.setattr(blocks, "_stream_distributed", spy)
    return calls


def test_distributed_in_process(tmp_path, ref, thread_client, monkeypatch):
    calls = spy_distributed(monkeypatch)
    out = write_cog(as_da(ref, chunks=(3, 128, 128)), tmp_path / "d.tif")
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(), ref)
    assert check_cog(out)[0]
    write_envi(as_da(ref), tmp_path / "d")
    np.testing.assert_array_equal(np.fromfile(tmp_path / "d", "<f4").reshape(3, H, W), ref)
    with pytest.raises(RuntimeError, match="block failed"):
        write_cog(failing(ref), tmp_path / "e.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "d.hdr", "d.tif"]
    assert len(calls) == 3


@pytest.mark.system  # a Dask cluster of worker processes
def test_distributed_processes(tmp_path, ref, monkeypatch):
    from distributed import Client, LocalCluster

    calls = spy_distributed(monkeypatch)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster):
        out = write_image(as_da(ref), tmp_path / "d.tif")
        nc = write_image(as_da(ref), tmp_path / "d.nc")
    assert len(calls) == 2
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(), ref)
    with xr.open_dataset(nc, engine="h5netcdf") as ds:
        np.testing.assert_array_equal(ds["d"].values, ref)


def test_synchronous_scheduler(tmp_path, ref):
    with dask.config.set(scheduler="sync"):
        out = write_cog(as_da(ref), tmp_path / "s.tif")
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(), ref)


def test_never_materialised(tmp_path):
    """A 72 MB lazy array in 0.75 MB chunks: numpy memory traced while writing stays a small
    fraction of the whole (GDAL's own cache is C memory, bounded by GDAL_CACHEMAX). The writer
    buffers about a row of 512-px tiles (they are compressed whole) and a row of chunks: memory
    that grows with the width, not the height, so the image is taller than wide."""
    n, c = 1536, 256
    ny = 8192

    def make(block_info=None):
        (b0, b1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        return np.broadcast_to(((yy * 7 + xx * 3) % 1000).astype(np.float32), (b1 - b0, y1 - y0, x1 - x0)).copy()

    data = dsa.map_blocks(make, chunks=((3,), (c,) * (ny // c), (c,) * (n // c)), dtype=np.float32)
    total = 3 * ny * n * 4
    # a first small write outside the trace: the modules and compiled kernels a first call loads
    # (tens of MB of Python objects) are not the array's memory, and whether an earlier test of the
    # same worker loaded them must not decide this test
    small = xr.DataArray(np.zeros((3, 600, 600), np.float32), dims=("band", "y", "x"),
                         coords={"y": Y0 - 15 - 30 * np.arange(600), "x": X0 + 15 + 30 * np.arange(600)})
    write_cog(small.chunk({"y": 256, "x": 256}).rio.write_crs(32632), tmp_path / "warm.tif")
    tracemalloc.start()
    try:
        write_cog(xr.DataArray(data, dims=("band", "y", "x"),
                               coords={"y": Y0 - 15 - 30 * np.arange(ny), "x": X0 + 15 + 30 * np.arange(n)}
                               ).rio.write_crs(32632), tmp_path / "big.tif")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < total / 2, f"peak {peak / 2**20:.1f} MiB for a {total / 2**20:.0f} MiB array"
    with rasterio.open(tmp_path / "big.tif") as src:
        window = src.read(window=((300, 310), (500, 520)))
    yy, xx = np.mgrid[300:310, 500:520]
    np.testing.assert_array_equal(window[2], ((yy * 7 + xx * 3) % 1000).astype(np.float32))
