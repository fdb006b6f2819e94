"""Start-up: what a command loads is what it needs. A fresh interpreter imports the CLI (and runs
small chains) and reports the heavy libraries in `sys.modules` — no timing, only which modules:
xarray + pandas, dask.array, numba and distributed each cost a quarter to a full second of CPU
before the first pixel, which a tutorial-sized chain would otherwise pay on every run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imalys_stac.cube import fuse

pytestmark = pytest.mark.system  # starts interpreters

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numba", "xarray", "pandas", "dask.array", "distributed", "rioxarray", "rio_cogeo", "scipy", "stackstac",
         "odc.stac", "matplotlib", "h5netcdf", "zarr")

_PROBE = """
import json, sys
from imalys_stac.cli import main
rc = main(sys.argv[1:]) if len(sys.argv) > 1 else 0
print(json.dumps({"rc": rc, "loaded": [m for m in HEAVY if m in sys.modules]}))
"""


def _loaded(*argv: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IMALYS_NO_MALLOC_TUNING": "1"}
    code = f"HEAVY = {heavy!r}\n{_PROBE}"
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=300,
                         cwd=ROOT)
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert last.startswith("{"), out.stderr[-2000:]
    result = json.loads(last)
    assert result["rc"] == 0, out.stderr[-2000:]
    return result["loaded"]


def test_importing_the_cli_loads_no_heavy_library():
    assert _loaded() == []


def test_check_loads_no_heavy_library(write_chain, tmp_path):
    chain = write_chain(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\nexport\n\tselect = bestof\n\ttarget = {tmp_path}/x.tif\n")
    assert _loaded("check", str(chain)) == []


def test_catalog_loads_no_array_library(write_chain, synthetic_archives, tmp_path):
    chain = write_chain(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\ncatalog\n"
                        f"\tarchives = {synthetic_archives.folder}/*.tar\n\ttarget = {tmp_path}/bonds.csv\n")
    # pandas is allowed: pyarrow's dataset reader and stac-geoparquet (the search index) import it
    assert [m for m in _loaded("run", str(chain)) if m != "pandas"] == []


def test_small_import_needs_no_compiled_kernel_and_no_cluster(write_chain, synthetic_archives, tmp_path):
    chain = write_chain(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\nimport\n"
                        f"\tselect = {synthetic_archives.folder}/*.tar\n\tbands = red, nir08\n\tfactor = auto\n")
    loaded = _loaded("run", str(chain))
    assert "numba" not in loaded and "distributed" not in loaded


def test_compile_reduce_export_of_a_small_stack_load_no_compiled_kernel(write_chain, synthetic_archives,
                                                                                    tmp_path):
    """A tutorial-sized bestof runs in numpy (composite.small, fuse small=True); run again, with every product up to date, the
    chain imports no array library at all (the commands import them where they compute)."""
    from imalys_stac.cli import main

    from .conftest import bestof_chain

    chain = bestof_chain(tmp_path, synthetic_archives.folder, "small")
    assert main(["run", str(chain)]) == 0  # the import (and a first reduce), in this process
    again = write_chain(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd_small\ncompile\n\tsearch = LC08*\n"
                        f"reduce\n\tselect = compile\n\texecute = bestof\n\tpreserve = bands\n\ttarget = fresh\n"
                        f"export\n\tselect = fresh\n\ttarget = {tmp_path}/fresh.tif\n", name="again.txt")
    first = _loaded("run", str(again))  # a new product: computed and written
    assert [m for m in first if m in ("numba", "distributed", "scipy", "stackstac")] == []
    assert (tmp_path / "fresh.tif").is_file()
    assert _loaded("run", str(again)) == []  # up to date: compile only, reduce and export keep their products


def _reference_counts(qa, present_t, clear_t, keep):
    """Pixel by pixel: some tile present / some tile clear, inside keep."""
    present = clear = 0
    for y in range(qa.shape[1]):
        for x in range(qa.shape[2]):
            if keep is not None and not keep[y, x]:
                continue
            present += any(present_t[q] for q in qa[:, y, x])
            clear += any(clear_t[q] for q in qa[:, y, x])
    return present, clear


@pytest.mark.parametrize("small", [True, False], ids=["numpy", "kernel"])
def test_quality_count_paths_agree_with_a_plain_loop(monkeypatch, small):
    """The numpy path (small blocks) and the compiled one count the same pixels."""
    if not small:
        monkeypatch.setattr(fuse, "SMALL_COUNT", 0)
    rng = np.random.default_rng(11)
    qa = rng.integers(0, 40, (3, 23, 31)).astype(np.uint16)
    present_t = np.zeros(65536, bool)
    present_t[1:] = True
    clear_t = np.zeros(65536, bool)
    clear_t[rng.integers(0, 40, 12)] = True
    keep = rng.random((23, 31)) < 0.7
    for k in (None, keep):
        assert fuse.count_present_clear(qa, present_t, clear_t, k) == _reference_counts(qa, present_t, clear_t, k)


# ------------------------------------------------------------------ import and catalog chains
#: what an import of a tutorial frame and a catalog do not need: the array stack, the compiled
#: kernels, geopandas for the frame (cube.vector reads plain ones), pyarrow's dataset layer for
#: the search index, and a Dask scheduler (the quality count runs in this process)
SMALL_CHAIN_HEAVY = HEAVY + ("geopandas", "pyogrio", "pyarrow.dataset", "stac_geoparquet", "dask")

_MODULES_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps({"rc": 0, "loaded": [m for m in HEAVY if m in sys.modules]}))
"""


def _loaded_by_importing(*modules: str) -> set[str]:
    """Heavy modules that importing `modules` alone loads (their owners' start-up, not a chain's)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = f"HEAVY = {SMALL_CHAIN_HEAVY!r}\n{_MODULES_PROBE}"
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, env=env, timeout=300,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1])["loaded"])


@pytest.fixture(scope="module")
def shared_modules() -> set[str]:
    """What the modules an import shares with the cube loader load at import (cube.load builds
    the Dask cubes of compile and reduce; once it imports dask.array and xarray where it builds
    one, this is empty and the tests below ask for nothing heavy at all)."""
    return _loaded_by_importing("imalys_stac.cube.load", "imalys_stac.products")


@pytest.fixture()
def framed_tutorial_chain(write_chain, synthetic_archives, tmp_path):
    from shapely.geometry import box

    from imalys_stac.stac import item_from_archive
    from imalys_stac.synth import write_frame

    item = item_from_archive(synthetic_archives.archives[0])
    left, bottom, right, top = item.properties["proj:bbox"]
    frame = write_frame(tmp_path / "frame.shp", box(left + 300, bottom + 450, right - 600, top - 90),
                        f"EPSG:{item.properties['proj:epsg']}")
    return write_chain(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\nimport\n"
                       f"\tselect = {synthetic_archives.folder}/*.tar\n\tframe = {frame}\n\tquality = 0.3\n"
                       "\tbands = _B2, _B3, _B4\n\tfactor = 2.75e-5\n\toffset = -0.2\n")


def test_import_of_a_small_frame_loads_no_array_stack_no_geopandas_and_no_dask(framed_tutorial_chain, shared_modules):
    """The tutorial's import (chain 2a): frame from a shapefile, quality counted in this process."""
    loaded = set(_loaded("run", str(framed_tutorial_chain), heavy=SMALL_CHAIN_HEAVY))
    assert loaded <= shared_modules, sorted(loaded - shared_modules)
    assert not loaded & {"numba", "geopandas", "pyogrio", "pyarrow.dataset", "stac_geoparquet", "distributed"}


def test_catalog_and_import_from_it_load_no_pandas(write_chain, synthetic_archives, tmp_path, shared_modules):
    """Chains 2c and 2d: building a catalog writes its index with stac-geoparquet (which imports
    geopandas, and pandas through pyarrow.dataset); running it again unchanged, and importing from the catalog's
    table (its search index read with pyarrow alone), load none of it."""
    catalog = write_chain(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd_catalog\ncatalog\n"
                          f"\tarchives = {synthetic_archives.folder}/*.tar\n\ttarget = {tmp_path}/bonds.csv\n",
                          name="catalog.txt")
    first = _loaded("run", str(catalog), heavy=SMALL_CHAIN_HEAVY)
    assert not set(first) & {"numba", "xarray", "dask", "distributed"}  # stac-geoparquet: pandas, geopandas
    assert _loaded("run", str(catalog), heavy=SMALL_CHAIN_HEAVY) == []  # unchanged: nothing heavy at all
    database = write_chain(f"IMALYS\nhome\n\tdirectory = {tmp_path}/wd\nimport\n\tdatabase = {tmp_path}/bonds.csv\n"
                           "\tperiod = 20220501-20221031\n\tbands = _B4, _B5\n", name="database.txt")
    loaded = set(_loaded("run", str(database), heavy=SMALL_CHAIN_HEAVY))
    assert loaded <= shared_modules, sorted(loaded - shared_modules)
    assert not loaded & {"numba", "geopandas", "pyarrow.dataset", "stac_geoparquet", "distributed"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_takes_the_malloc_policy():
    """The console scripts' mallopt calls succeed (else they would start Python a second time)."""
    out = subprocess.run([sys.executable, "-c", "from imalys_stac.cli import _mallopt; print(_mallopt())"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "True", out.stderr
