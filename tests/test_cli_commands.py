"""The one-off commands (catalog, search, plan), `--json` (one document on stdout, messages on
stderr) and `--version` on every entry point — in-process: the process boundary is not what is
tested here (tests/test_api_system.py starts real processes)."""
from __future__ import annotations

import json
from datetime import date

import pytest

from imalys_stac import __version__
from imalys_stac.cli import main, r_imalys, x_imalys

from .conftest import SYNTHETIC_DATES, bestof_chain


def _json(capsys) -> tuple[dict, str]:
    out, err = capsys.readouterr()
    return json.loads(out), err  # exactly one JSON document, nothing else on stdout


def test_version_on_every_entry_point(capsys):
    assert x_imalys(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"imalys-stac {__version__}"
    assert r_imalys(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"imalys-stac {__version__}"
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"imalys-stac {__version__}"


def test_catalog_then_search_json_matches_the_truth(synthetic_archives, tmp_path, capsys):
    assert main(["catalog", str(synthetic_archives.folder), str(tmp_path / "cat"), "--json"]) == 0
    doc, _ = _json(capsys)
    assert doc["ok"] and len(doc["added"]) == len(SYNTHETIC_DATES)
    assert doc["catalog"] == str(tmp_path / "cat" / "catalog.json")

    assert main(["search", str(tmp_path / "cat"), "--max-cloud", "30", "--json"]) == 0
    doc, _ = _json(capsys)
    assert doc["type"] == "FeatureCollection"
    days = [f["properties"]["datetime"][:10] for f in doc["features"]]
    assert days == [d.isoformat() for d, cloud in SYNTHETIC_DATES if 100 * cloud <= 30]

    # the archive folder itself, a period in the Imalys form, plain text output
    assert main(["search", str(synthetic_archives.folder), "--datetime", "20220520-20221231"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert [line.split("\t")[1] for line in lines] == [d.isoformat() for d, _ in SYNTHETIC_DATES if d >= date(2022, 5, 20)]
    assert f"{len(lines)} item(s)" in err


@pytest.mark.parametrize("args, message", [
    (["--bbox", "1,2,3"], "bbox"),
    (["--bbox", "a,b,c,d"], "--bbox a,b,c,d: accepted is west,south,east,north"),
    (["--datetime", "someday"], "datetime 'someday' is not a date"),
])
def test_search_refuses_bad_arguments_in_one_line(synthetic_archives, capsys, args, message):
    assert main(["search", str(synthetic_archives.folder), *args, "--json"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: search: ") and message in err and len(err.strip().splitlines()) == 1
    assert json.loads(out) == {"ok": False, "error": err.strip().removeprefix("error: ")}


def test_plan_json_and_text_write_nothing(synthetic_archives, tmp_path, capsys):
    chain = bestof_chain(tmp_path, synthetic_archives.folder, "p")
    chain.write_text(chain.read_text().replace("\tbands = red", "\tquality = 0.5\n\tbands = red"))
    assert main(["plan", str(chain), "--json"]) == 0
    doc, _ = _json(capsys)
    assert doc["ok"] and doc["working_directory"] == str(tmp_path / "wd_p")
    names = [c["command"] for c in doc["commands"]]
    assert names == ["import", "compile", "reduce", "export"]
    acquisitions = doc["commands"][0]["acquisitions"]
    assert [a["date"][:10] for a in acquisitions] == [d.isoformat() for d, _ in SYNTHETIC_DATES]
    assert all(a["kept"] == (a["quality"] >= 0.5) for a in acquisitions)

    assert main(["plan", str(chain)]) == 0
    text = capsys.readouterr().out
    assert "rejected: quality" in text and "64 × 64 px" in text
    assert not (tmp_path / "wd_p").exists() and not (tmp_path / "p.tif").exists()


def test_plan_of_a_bad_chain_names_file_and_line(tmp_path, capsys):
    chain = tmp_path / "bad.txt"
    chain.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\ncompile\n\tsearch = LC0*\n")
    assert main(["plan", str(chain), "--json"]) == 1
    out, err = capsys.readouterr()
    assert "bad.txt:5: compile" in err and "no imported image" in err
    assert json.loads(out)["ok"] is False


def test_run_json_reports_products_and_exports(synthetic_archives, tmp_path, capsys):
    chain = bestof_chain(tmp_path, synthetic_archives.folder, "r")
    assert main(["run", str(chain), "--json"]) == 0
    doc, err = _json(capsys)
    assert "bestof" in err  # the messages stay on stderr
    (run,) = doc["runs"]
    assert run["products"]["bestof"]["kind"] == "reduce"
    assert run["exports"] == [{"file": str(tmp_path / "r.tif"), "item": str(tmp_path / "r.json")}]
    for path in (run["log"], run["products"]["compile"]["item"], run["exports"][0]["item"]):
        assert (tmp_path / path).exists()


def test_run_json_on_failure_is_still_one_document(tmp_path, capsys):
    chain = tmp_path / "c.txt"
    chain.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\nreduce\n\tselect = nothing\n\texecute = bestof\n")
    assert main(["run", str(chain), "--json"]) == 1
    doc, err = _json(capsys)
    assert doc["ok"] is False and "c.txt:5: reduce: no product 'nothing'" in doc["error"]
    assert err.strip().splitlines()[-1] == f"error: {doc['error']}"


def test_repeat_mode_json_lists_every_run(tmp_path, capsys):
    chain = tmp_path / "c.txt"
    chain.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd_$1\n")
    rows = tmp_path / "rows.txt"
    rows.write_text("a\nb\n")
    assert main(["run", str(chain), "--vars", str(rows), "--json"]) == 0
    doc, _ = _json(capsys)
    assert [r["working_directory"] for r in doc["runs"]] == [str(tmp_path / "wd_a"), str(tmp_path / "wd_b")]
    assert [r["variables"]["values"] for r in doc["runs"]] == [{"$1": "a"}, {"$1": "b"}]


def test_plan_takes_the_grid_of_a_projection_template(synthetic_archives, tmp_path, capsys):
    import numpy as np
    import rasterio
    from affine import Affine

    template = tmp_path / "template.tif"
    with rasterio.open(template, "w", driver="GTiff", width=7, height=5, count=1, dtype="uint8", crs="EPSG:32632",
                       transform=Affine(60, 0, 721000, 0, -60, 5343800)) as ds:
        ds.write(np.zeros((1, 5, 7), np.uint8))
    chain = tmp_path / "c.txt"
    chain.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\nimport\n\tselect = {synthetic_archives.archives[0]}\n"
                     f"\tbands = red\n\tfactor = auto\ncompile\n\tprojection = {template}\n"
                     "reduce\n\tselect = compile\n\texecute = median\n\tpreserve = bands\n")
    assert main(["plan", str(chain), "--json"]) == 0
    doc, _ = _json(capsys)
    compiled, reduced = doc["commands"][1], doc["commands"][2]
    assert (compiled["grid"]["width"], compiled["grid"]["height"], compiled["grid"]["resolution"]) == (7, 5, [60.0, 60.0])
    assert reduced["outputs"][0]["grid"] == {**compiled["grid"], "bands": 1}


def test_plan_of_a_chain_that_catalogs_then_imports_writes_no_catalog(synthetic_archives, tmp_path, capsys):
    chain = tmp_path / "c.txt"
    chain.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\ncatalog\n\tarchives = {synthetic_archives.folder}/*.tar\n"
                     f"\ttarget = {tmp_path}/bonds.csv\nimport\n\tdatabase = {tmp_path}/bonds.csv\n"
                     "\tperiod = 20220501-20220601\n\tbands = red\n\tfactor = auto\n")
    assert main(["plan", str(chain), "--json"]) == 0
    doc, _ = _json(capsys)
    assert doc["commands"][0] == {"command": "catalog", "line": 4, "archives": len(SYNTHETIC_DATES),
                                  "target": str(tmp_path / "bonds.csv")}
    dates = [a["date"][:10] for a in doc["commands"][1]["acquisitions"]]
    assert dates == [d.isoformat() for d, _ in SYNTHETIC_DATES if d <= date(2022, 6, 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.txt"]  # no catalog, no table, no working directory
