"""benchmarks/bench_original.py without the original binary: the archive layout it needs (short
names only, symlinks to the generated archives), the chains in its dialect, and the comparison of
two results on shifted grids (against a plain numpy window computed here)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.bench_original import TAGS, compare_images, original_chain, prepare_original, scenes_in, short_name

LONG = ["LC08_L2SP_193026_20220515_20220518_02_T1.tar", "LC09_L2SP_193026_20220624_20220627_02_T1.tar"]


def test_short_name():
    assert short_name(LONG[0]) == "LC08_L2SP_193026_20220515.tar"
    with pytest.raises(ValueError, match="not a USGS"):
        short_name("bonds.csv")


def test_layout_holds_only_short_names_linked_to_the_data(tmp_path):
    data = tmp_path / "data"
    (data / "archives").mkdir(parents=True)
    (data / "frames").mkdir()
    (data / "frames" / "bounding-box.shp").write_bytes(b"shp")
    for name in LONG:
        (data / "archives" / name).write_bytes(name.encode())
    (data / "archives" / "bonds.csv").write_text("x")  # imalys-stac's catalog stays out of the original's folder
    root = tmp_path / "orig"
    (root / ".imalys").mkdir(parents=True)
    (root / ".imalys" / "stale").write_text("from an earlier run")
    chains = prepare_original(data, root)

    archives = sorted(p.name for p in (root / "archives").iterdir())
    assert archives == ["LC08_L2SP_193026_20220515.tar", "LC09_L2SP_193026_20220624.tar"]
    for p in (root / "archives").iterdir():
        assert p.is_symlink() and p.resolve().parent == (data / "archives").resolve()
        assert p.read_bytes().decode().startswith(p.name[:-4])
    assert (root / "frames" / "bounding-box.shp").read_bytes() == b"shp"
    assert not (root / ".imalys").exists() and (root / "scratch").is_dir() and (root / "results").is_dir()
    assert set(chains) == set(TAGS)
    text = chains["2a"].read_text()
    assert f"select = {root}/archives/LC08_L2SP_193026_20220515.tar" in text and "~" not in text
    assert json.loads((root / "chains" / "changes.json").read_text())["2c"] == []


def test_two_archives_with_one_short_name_are_refused(tmp_path):
    (tmp_path / "d" / "archives").mkdir(parents=True)
    for name in (LONG[0], LONG[0].replace("20220518", "20220601")):
        (tmp_path / "d" / "archives" / name).write_bytes(b"")
    with pytest.raises(ValueError, match="share the short name"):
        prepare_original(tmp_path / "d", tmp_path / "o")


def _params(text: str) -> dict[str, list[str]]:
    """command → its `key = value` lines, stripped (an independent reading of the chain)."""
    out: dict[str, list[str]] = {}
    cmd = ""
    for line in text.splitlines()[1:]:
        if line.startswith(("\t", " ")):
            out[cmd].append(" ".join(line.split()))
        elif line.strip():
            cmd = line.strip()
            out[cmd] = []
    return out


def test_original_dialect():
    chain = ("IMALYS [t]\nhome\n\tdirectory = /w\nimport\n\tselect = /a/x.tar\n\tquality = 0.7\n"
             "compile\n\tsearch = LC0*.hdr\n\tperiod = 20220501-20220731\n\tcrsystem = 32632\n\tpixel = 30\n"
             "reduce\n\tselect = compile\n\texecute = bestof\n\tpreserve = bands\n"
             "export\n\tselect = bestof\n\ttarget = /r/b.tif\n")
    text, changes = original_chain(chain)
    p = _params(text)
    assert text.splitlines()[0] == "IMALYS [t]"
    assert p["import"] == ["select = /a/x.tar", "quality = 0.7", "warp = 32632", "pixel = 30"]
    assert p["compile"] == ["period = 20220501-20220731"]
    assert p["reduce"] == ["select = compile", "execute = bestof"]
    assert p["export"] == ["select = bestof", "target = /r/b.tif"] and p["home"] == ["directory = /w"]
    assert len(changes) == 2 + 3 + 1


def test_compile_search_without_period_is_kept_and_given_warp_is_not_doubled():
    text, changes = original_chain("IMALYS\nimport\n\tselect = a\n\twarp = 25832\n\tpixel = 10\ncompile\n\tsearch = LC0*.hdr\n")
    p = _params(text)
    assert p["import"] == ["select = a", "warp = 25832", "pixel = 10"] and p["compile"] == ["search = LC0*.hdr"]
    assert changes == []


def test_scenes_in(tmp_path):
    for name in ("LC08_193026_20220515", "LC08_193026_20220515.hdr", "LC09_193026_20220624", "compile", "bestof"):
        (tmp_path / name).write_text("")
    assert scenes_in(tmp_path) == ["LC08_193026_20220515", "LC09_193026_20220624"]
    assert scenes_in(tmp_path / "missing") == []


def test_compare_images_on_shifted_grids(tmp_path):
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    a = rng.random((2, 6, 7)).astype("float32")
    a[0, 0, 0] = np.nan
    b = a[:, 1:5, 2:7].copy()  # the original's grid starts one row and two columns further in
    b[1, 0, 0] += 0.5
    for name, arr, x0, y0 in (("a.tif", a, 100.0, 500.0), ("b.tif", b, 160.0, 470.0)):
        with rasterio.open(tmp_path / name, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=2,
                           dtype="float32", crs="EPSG:32632", transform=from_origin(x0, y0, 30, 30)) as ds:
            ds.write(arr)
    r = compare_images(tmp_path / "a.tif", tmp_path / "b.tif")
    assert r["imalys-stac"]["shape"] == [2, 6, 7] and r["original"]["shape"] == [2, 4, 5]
    v = r["values"]
    assert v["common_window"] == [4, 5] and v["both_valid_share"] == 1.0
    # by hand: 40 pixel pairs, one differs by 0.5
    assert v["median_abs_diff"] == 0.0 and v["p95_abs_diff"] == 0.0 and v["identical_share"] == 39 / 40
    assert v["band_means"]["original"][1] == round(float(a[1, 1:5, 2:7].mean() + 0.5 / 20), 4)
    assert compare_images(tmp_path / "a.tif", tmp_path / "none.tif")["original"] == "missing"


def test_ours_start_without_the_catalog_and_results(tmp_path):
    from benchmarks.bench_original import prepare_ours

    (tmp_path / "archives" / "bonds").mkdir(parents=True)
    (tmp_path / "archives" / LONG[0]).write_bytes(b"tar")
    for name in ("bonds.csv", "bonds.csvt", "bonds.prj", "bonds/item.json"):
        (tmp_path / "archives" / name).write_text("x")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "bestof_summer.tif").write_text("old")
    chains = prepare_ours(tmp_path)
    assert sorted(p.name for p in (tmp_path / "archives").iterdir()) == [LONG[0]]
    assert list((tmp_path / "results").iterdir()) == []
    assert set(TAGS) <= set(chains) and f"{tmp_path}/archives/bonds.csv" in chains["2c"].read_text()
