"""What product items say: the frame a compile covers, numbers any JSON reader keeps, single-band
views of multi-band files, and a storage layer that does not read rasters."""
from __future__ import annotations

import ast
import json
import re
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from shapely.geometry import box, mapping

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.cube.grid import Grid
from imalys_stac.product_records import ImportRecord, file_stamp
from imalys_stac.workdir import WorkDir

PACKAGE = Path(__file__).resolve().parents[1] / "imalys_stac"

# a frame across the border of UTM zones 32 and 33 (12° E), in lon/lat
FRAME = box(11.95, 48.10, 12.05, 48.16)


def _frame_rectangle(epsg: int, points: int = 2000) -> tuple[float, float, float, float]:
    """The rectangle around all points of FRAME in `epsg`, from a dense walk along its outline
    (independent of the package's densified reprojection)."""
    tr = Transformer.from_crs(4326, epsg, always_xy=True)
    w, s, e, n = FRAME.bounds
    t = np.linspace(0, 1, points)
    lon = np.concatenate([w + (e - w) * t, np.full(points, e), e - (e - w) * t, np.full(points, w)])
    lat = np.concatenate([np.full(points, s), s + (n - s) * t, np.full(points, n), n - (n - s) * t])
    x, y = tr.transform(lon, lat)
    return float(np.min(x)), float(np.min(y)), float(np.max(x)), float(np.max(y))


def _aligned(bounds, res=30.0, anchor=15.0):
    left, bottom, right, top = bounds
    return (anchor + np.floor((left - anchor) / res) * res, anchor + np.floor((bottom - anchor) / res) * res,
            anchor + np.ceil((right - anchor) / res) * res, anchor + np.ceil((top - anchor) / res) * res)


def _import_product(wd: WorkDir, name: str, epsg: int, day: int) -> None:
    """An import product as `import frame = …` stores it in zone `epsg`: its grid is the frame's
    rectangle in that zone, on the Landsat pixel grid (edges at 15 m + k·30 m)."""
    left, bottom, right, top = _aligned(_frame_rectangle(epsg))
    grid = Grid(epsg, (left, bottom, right, top), 30.0)
    record = ImportRecord(sources=(f"{name}_src",), bands=("red", "nir08"), factor=(1.0, 1.0), offset=(0.0, 0.0),
                          resampling="nearest", quality=1.0, cover=1.0, frame="frame.gpkg",
                          frame_geometry=FRAME.wkt, frame_crs="EPSG:4326")
    item = pystac.Item(id=name, geometry=mapping(FRAME), bbox=list(FRAME.bounds),
                       datetime=datetime(2022, 5, day, 10, tzinfo=timezone.utc),
                       properties={**record.to_properties(), **grid.to_stac()})
    wd.save(item)


def test_compile_of_imports_from_two_zones_covers_the_frame_rectangle(tmp_path):
    """The seed: "the result will be a rectangle including all points of the given geometry" —
    an image imported in the neighbouring zone must not widen the compiled grid."""
    wd = WorkDir(tmp_path / "wd")
    wd.prepare()
    _import_product(wd, "LC08_193026_20220510", 32632, 10)
    _import_product(wd, "LC08_192026_20220511", 32633, 11)
    chain = tmp_path / "chain.txt"
    chain.write_text(f"IMALYS [frame]\nhome\n\tdirectory = {wd.path}\ncompile\n\tsearch = LC08*\n")
    run_chain(load_chain(chain))
    grid = Grid.from_stac(wd.load("compile").properties)
    expected = _aligned(_frame_rectangle(32632))
    assert grid.epsg == 32632
    assert grid.bounds == pytest.approx(expected, abs=1e-6)
    assert grid.shape == (round((expected[3] - expected[1]) / 30), round((expected[2] - expected[0]) / 30))


def test_file_stamps_hold_no_integer_a_double_cannot_keep(tmp_path):
    f = tmp_path / "x.tif"
    f.write_bytes(b"12345")
    stamp = file_stamp(f)
    assert stamp is not None
    for value in stamp:
        assert not (isinstance(value, int) and abs(value) > 2**53)
    # a JSON reader that parses numbers as doubles keeps the stamp exactly
    assert json.loads(json.dumps(stamp), parse_int=float, parse_float=float) == [5.0, stamp[1]]
    assert int(stamp[1]) == f.stat().st_mtime_ns


def test_band_vrt_is_one_band_of_the_file_named_relatively(tmp_path):
    from imalys_stac.cube.vrt import band_vrt

    data = np.arange(3 * 5 * 7, dtype="float32").reshape(3, 5, 7)
    data[1, 2, 3] = np.nan
    tif = tmp_path / "sub" / "x.tif"
    tif.parent.mkdir()
    profile = dict(driver="GTiff", width=7, height=5, count=3, dtype="float32", crs="EPSG:32632", nodata=np.nan,
                   transform=Affine(30, 0, 720945, 0, -30, 5343855))
    with rasterio.open(tif, "w", **profile) as ds:
        ds.write(data)
        ds.set_band_description(2, "green")
    vrt = tif.with_name("x.green.vrt")
    vrt.write_text(band_vrt(tif, 2, relative_to=vrt.parent))
    assert 'relativeToVRT="1">x.tif<' in vrt.read_text()
    moved = tmp_path / "moved"
    (tmp_path / "sub").rename(moved)
    with rasterio.open(moved / "x.green.vrt") as ds:
        assert ds.count == 1 and ds.descriptions == ("green",)
        assert ds.transform == profile["transform"] and ds.crs.to_epsg() == 32632
        assert np.array_equal(ds.read(1), data[1], equal_nan=True)


def test_the_storage_layer_imports_no_product_code():
    """WorkDir only stores (issue 18): it must not import the product layer (a cycle before)."""
    tree = ast.parse((PACKAGE / "workdir.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[-1])
        elif isinstance(node, ast.Import):
            imported.update(a.name.split(".")[-1] for a in node.names)
    assert not imported & {"products", "registry", "rasterio"}


def _compile_item(bands: tuple[str, ...], inputs: tuple[str, ...]) -> pystac.Item:
    from imalys_stac.product_records import CompileRecord

    return pystac.Item(id="compile", geometry=mapping(FRAME), bbox=list(FRAME.bounds),
                       datetime=datetime(2022, 5, 10, tzinfo=timezone.utc),
                       properties=CompileRecord(inputs=inputs, bands=bands).to_properties())


def test_reduce_without_preserve_warns_that_bands_and_dates_become_one_band():
    from imalys_stac.products import collapse_warning

    stack = _compile_item(("red", "nir08"), ("a", "b", "c"))
    text = collapse_warning("median", stack, None, per_band=True)
    assert text is not None and "6 layers" in text and "ONE band" in text and "preserve = bands" in text
    assert collapse_warning("median", stack, "bands", per_band=True) is None
    assert collapse_warning("ndvi", stack, None, per_band=False) is None  # an index combines bands itself
    assert collapse_warning("median", _compile_item(("red",), ("a",)), None, per_band=True) is None


def _rendered_text(markdown: str) -> str:
    """What a reader sees of CommonMark text: rendered (markdown-it, GitHub flavour as STAC
    Browser uses), tags dropped, entities decoded."""
    import html

    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark").enable("strikethrough").render(markdown)
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


@pytest.mark.parametrize("text", ["addressed as …/<archive>.tar/<member> in a *folder* of _my_ runs",
                                  "LC08_193026_20220515 & [bestof] ~~old~~ `x` \\n"])
def test_escaped_descriptions_render_as_written(text):
    from imalys_stac.text import markdown_escape

    assert _rendered_text(text) != text  # the trap: unescaped, text is lost or changed
    assert _rendered_text(markdown_escape(text)) == text
    assert markdown_escape("LC08_193026_20220515") == "LC08_193026_20220515"  # no noise inside names


def test_package_descriptions_lose_no_text():
    """The collection templates and the archive catalog's root say `…/<archive>.tar/<member>`
    inside a code span, where CommonMark shows it as written."""
    for path in sorted((PACKAGE / "templates").glob("*.json")):
        text = json.loads(path.read_text(encoding="utf-8"))["description"]
        assert _rendered_text(text) == text.replace("`", ""), path.name


def test_framed_chain_with_an_image_of_the_neighbouring_zone_is_the_frame(tmp_path):
    """The issue's case end to end: a frame in zone 32 over two paths, one scene in zone 33,
    imported with the frame and compiled without one: the stack is the frame's rectangle on the
    zone-32 Landsat grid, and it holds data from both scenes."""
    from imalys_stac.products import cube_of
    from imalys_stac.synth import Landscape, SceneSpec, write_frame, write_landsat_archive

    land = Landscape(seed=11)
    root = tmp_path / "a"
    s32 = write_landsat_archive(root, SceneSpec(path=193, row=26, acquired=date(2022, 6, 16), size=96, cloud_cover=0.0,
                                                seed=4), landscape=land)
    s33 = write_landsat_archive(root, SceneSpec(path=192, row=26, acquired=date(2022, 6, 25), size=96, cloud_cover=0.0,
                                                seed=5), landscape=land)
    assert (s32.crs.to_epsg(), s33.crs.to_epsg()) == (32632, 32633)
    tr = Transformer.from_crs(32633, 32632, always_xy=True)
    l33, b33, r33, t33 = s33.bounds
    x0, y0 = tr.transform(l33, b33)
    x1, y1 = tr.transform(l33 + 0.3 * (r33 - l33), t33)
    l32, b32, r32, t32 = s32.bounds
    rect = (max(x0, l32) + 7, max(y0, b32) + 11, min(x1, r32) - 5, min(y1, t32) - 13)  # off the pixel edges
    frame = write_frame(tmp_path / "f.gpkg", box(*rect), "EPSG:32632")
    chain = tmp_path / "chain.txt"
    chain.write_text(f"IMALYS [zones]\nhome\n\tdirectory = {tmp_path}/wd\n\tclear = true\n"
                     f"import\n\tselect = {root}/*.tar\n\tframe = {frame}\n\tbands = red\n\tfactor = auto\n"
                     f"compile\n\tsearch = LC08*\n")
    run_chain(load_chain(chain))
    wd = WorkDir(tmp_path / "wd")
    assert wd.load("LC08_192026_20220625").properties["proj:epsg"] == 32633
    grid = Grid.from_stac(wd.load("compile").properties)
    # the frame's rectangle (a rectangle in zone 32 already) on the scene's pixel edges
    anchor = s32.transform.c % 30
    expected = _aligned(rect, 30.0, anchor)
    assert grid.epsg == 32632
    assert grid.bounds == pytest.approx(expected, abs=1e-6)
    cube = cube_of(wd, wd.load("compile")).isel(band=0).values
    assert cube.shape[1:] == grid.shape
    assert all(np.isfinite(cube[t]).mean() > 0.5 for t in range(2))
