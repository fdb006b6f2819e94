"""`import` from the three kinds of source gives the same products: archives named with `select`,
a catalog made by `catalog` (`database`), and a real STAC API serving that catalog (`stac`)."""
from __future__ import annotations

import json
from datetime import date

import pytest

from imalys_stac.chain import load_chain
from imalys_stac.commands import run_chain
from imalys_stac.synth import Landscape, SceneSpec, write_frame, write_landsat_archive
from tests.stac_api import serve_collection

DATES = [date(2022, 6, 16), date(2022, 7, 2), date(2022, 9, 4)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    land = Landscape(seed=7)
    scenes = []
    for i, d in enumerate(DATES):
        for row in (26, 27):
            scenes.append(write_landsat_archive(root / "archives", SceneSpec(path=193, row=row, acquired=d, size=96,
                                                                             cloud_cover=0.1, seed=20 + 2 * i + row), landscape=land))
    s = scenes[0]
    from shapely.geometry import box

    l, b, r, t = s.bounds
    frame = write_frame(root / "frame.shp", box(l + 800, b - 300, r - 800, b + 900), s.crs)
    chain = root / "catalog.txt"
    chain.write_text(f"IMALYS\nhome\n\tdirectory = {root}/wdc\n\tclear = true\ncatalog\n\tarchives = {root}/archives/*_L2SP_*.tar\n\ttarget = {root}/archives/bonds.csv\n")
    run_chain(load_chain(chain))
    return root, frame


def _import(root, name, selection):
    chain = root / f"{name}.txt"
    chain.write_text(f"""IMALYS
home
	directory = {root}/wd_{name}
	clear = true
import
{selection}	period = 20220601-20220731
	bands = red, nir08
	factor = auto
""")
    run_chain(load_chain(chain))
    wd = root / f"wd_{name}"
    out = {}
    for d in sorted(p for p in wd.iterdir() if p.is_dir() and not p.name.startswith(".")):
        item = json.loads((d / f"{d.name}.json").read_text())
        p = item["properties"]
        out[d.name] = (sorted(p["imalys:sources"]), round(p["imalys:quality"], 6), p["proj:bbox"])
    return out


def test_select_database_and_stac_api_agree(world):
    root, frame = world
    by_select = _import(root, "select", f"\tselect = {root}/archives/*.tar\n\tframe = {frame}\n")
    by_database = _import(root, "database", f"\tdatabase = {root}/archives/bonds.csv\n\tframe = {frame}\n")
    with serve_collection(root / "archives" / "bonds" / "landsat-c2-l2") as url:
        by_api = _import(root, "api", f"\tstac = {url}\n\tcollections = landsat-c2-l2\n\tframe = {frame}\n")
    assert list(by_select) == ["LC08_193026_20220616", "LC08_193026_20220702"]  # September is outside the period
    assert by_select == by_database == by_api
    # both rows of each date were merged
    assert all(len(v[0]) == 2 for v in by_select.values())
