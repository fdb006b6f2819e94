"""The documentation is checked like code: the chain reference is what the models give, the API
page names every public function with its parameters, links resolve, the README's quick start
runs, and examples/composite.py produces a composite equal to the chain's."""
from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

import imalys_stac as ims

from .conftest import SYNTHETIC_DATES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: pages other branches of issue 16 add (errors: inputs, clusters: runtime, serving: serve,
#: testing: tests); the lead empties this set once they are merged, so their links are checked too
PAGES_FROM_OTHER_BRANCHES = {"docs/errors.md", "docs/clusters.md", "docs/serving.md", "docs/testing.md"}


def test_chain_reference_is_current():
    from imalys_stac.docs import chain_reference, undocumented

    assert undocumented() == ([], []), "describe every parameter in imalys_stac/docs.py DESCRIPTIONS"
    assert (DOCS / "chains.md").read_text(encoding="utf-8") == chain_reference(), \
        "docs/chains.md is stale: run `python -m imalys_stac.docs`"


def test_chain_reference_lists_every_command_parameter_and_alias():
    """Independent of the generator: every key the parser accepts appears in the page."""
    from imalys_stac.chain.models import COMMANDS

    text = (DOCS / "chains.md").read_text(encoding="utf-8")
    for command, model in COMMANDS.items():
        section = text.split(f"## `{command}`", 1)[1].split("\n## ", 1)[0]
        for f in model.__dataclass_fields__.values():
            for key in (f.name, *f.metadata.get("aliases", ())) if "parser" in f.metadata else ():
                assert f"| `{key}`" in section or f" `{key}` |" in section, (command, key)


def test_readme_is_short_and_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 150
    assert "make demo" in readme and "make test" in readme
    missing = set()
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            if not path.exists():
                missing.add(path.relative_to(ROOT).as_posix())
    assert missing <= PAGES_FROM_OTHER_BRANCHES, sorted(missing - PAGES_FROM_OTHER_BRANCHES)


def test_every_public_function_has_a_docstring_and_its_parameters_in_docs_api():
    api_page = (DOCS / "api.md").read_text(encoding="utf-8")
    headings = [line for line in api_page.splitlines() if line.startswith("## `")]
    for name in ims.__all__:
        value = getattr(ims, name)
        if name.startswith("__"):
            continue
        assert inspect.getdoc(value), name
        if not inspect.isfunction(value):
            continue
        heading = next((h for h in headings if h.startswith(f"## `{name}(")), None)
        assert heading is not None, f"docs/api.md has no section for {name}"
        for parameter in inspect.signature(value).parameters.values():
            shown = f"**{parameter.name}" if parameter.kind is parameter.VAR_KEYWORD else parameter.name
            assert shown in heading, f"docs/api.md: {name} does not show its parameter {parameter.name}"


def _frame_file(folder: Path, bounds) -> Path:
    import geopandas as gpd
    from shapely.geometry import box

    path = folder / "area.gpkg"
    gpd.GeoDataFrame(geometry=[box(*bounds)], crs="EPSG:32632").to_file(path)
    return path


def test_readme_quick_start_chain_runs(synthetic_archives, tmp_path, capsys):
    """The chain of the README, with its paths pointed at a synthetic archive folder."""
    from imalys_stac.cli import main

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    chain_text = next(block for block in re.findall(r"^```[a-z]*\n(.*?)^```", readme, re.S | re.M) if block.startswith("IMALYS"))
    with rasterio.open(f"/vsitar/{synthetic_archives.archives[0]}/"
                       f"{synthetic_archives.archives[0].name[:-4]}_QA_PIXEL.TIF") as ds:
        b = ds.bounds
    frame = _frame_file(tmp_path, (b.left + 300, b.bottom + 300, b.right - 300, b.top - 300))
    assert main(["catalog", str(synthetic_archives.folder), str(tmp_path / "bonds")]) == 0
    chain = tmp_path / "summer.txt"
    chain.write_text(chain_text.replace("~/ESIS/archives/bonds", str(tmp_path / "bonds"))
                     .replace("~/ESIS/frames/area.gpkg", str(frame))
                     .replace("~/ESIS/work", str(tmp_path / "work"))
                     .replace("~/ESIS/results", str(tmp_path / "results")))
    assert main(["plan", str(chain)]) == 0
    assert "kept" in capsys.readouterr().out
    assert main(["run", str(chain)]) == 0
    with rasterio.open(tmp_path / "results" / "bestof_summer.tif") as ds:
        assert ds.count == 6 and ds.width == round((b.right - b.left - 600) / 30)
        assert np.isfinite(ds.read()).any()


def _example():
    spec = importlib.util.spec_from_file_location("composite_example", ROOT / "examples" / "composite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example_and_compare(source: str, synthetic_archives, tmp_path) -> dict:
    """examples/composite.py on `source`; its COG against the chain import → compile → reduce
    bestof → export of the same archives and bands."""
    out = _example().main([source, str(tmp_path / "out"), "--bands", "red,green,blue"])
    chain = tmp_path / "chain.txt"
    chain.write_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\n\tclear = true\nimport\n"
                     f"\tselect = {synthetic_archives.folder}/*.tar\n\tbands = red, green, blue\n\tfactor = auto\n"
                     "compile\nreduce\n\tselect = compile\n\texecute = bestof\n\tpreserve = bands\n"
                     f"export\n\tselect = bestof\n\ttarget = {tmp_path}/chain.tif\n")
    ims.run_chain(chain)
    with rasterio.open(out["cog"]) as a, rasterio.open(tmp_path / "chain.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.transform == b.transform and a.crs == b.crs
    assert (tmp_path / "out" / "bestof.json").exists()
    return out


def test_example_composite_on_a_catalog(synthetic_archives, tmp_path):
    assert ims.catalog(synthetic_archives.folder, tmp_path / "cat").added
    out = run_example_and_compare(str(tmp_path / "cat"), synthetic_archives, tmp_path)
    assert [str(t)[:10] for t in out["cube"].time.values] == [d.isoformat() for d, _ in SYNTHETIC_DATES]
    from PIL import Image

    with Image.open(out["plot"]) as picture:  # one panel per scene and the composite, side by side
        assert picture.width > 3 * picture.height


@pytest.mark.parametrize("bad", [["--bands"]])
def test_example_usage_errors_exit(bad, capsys):
    with pytest.raises(SystemExit):
        _example().main(bad)
