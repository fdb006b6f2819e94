"""docs/extending.md followed to the letter: one toy reducer and one toy format, each added with
one registry entry (`register_reducer`, `register_format`) plus its code, then a chain that uses
both, end to end: `import` → `compile` → `reduce execute = range` → `export target = x.npy`."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from imalys_stac import registry
from imalys_stac.chain import ChainError, load_chain, parse_chain_text
from imalys_stac.commands import run_chain
from imalys_stac.products import cube_of
from imalys_stac.workdir import WorkDir
from imalys_stac.write.atomic import atomic_path


# ------------------------------------------------------------------------ the toy reducer's code
def range_kernel(block, quality, threshold, want_source):
    """Block kernel (the registry's signature): the sum of the largest and the smallest valid value
    per band-pixel (a toy: not a reducer anyone needs, but one no built-in kernel computes)."""
    top = np.fmax.reduce(block, axis=0)  # fmax/fmin skip NaN and give NaN where all are (no warning)
    bottom = np.fmin.reduce(block, axis=0)
    return (top + bottom).astype(np.float32), None, None


def range_reference(stack):
    """Plain loop: for each band-pixel, max + min of the values that are not NaN; NaN if none."""
    T, B, Y, X = stack.shape
    out = np.full((B, Y, X), np.nan, dtype=np.float32)
    for b in range(B):
        for y in range(Y):
            for x in range(X):
                vals = [float(stack[t, b, y, x]) for t in range(T) if not math.isnan(stack[t, b, y, x])]
                if vals:
                    out[b, y, x] = np.float32(np.float32(max(vals)) + np.float32(min(vals)))
    return out


# -------------------------------------------------------------------------- the toy format's code
def write_npy(da, target, *, tags=None, band_names=None):
    """Writer (the registry's signature): the array as a NumPy .npy file, atomically; the band
    names and tags in a JSON companion `<name>.npy.names`."""
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(da.values, dtype=np.float32))
    names = list(band_names) if band_names is not None else [str(b) for b in da.coords[da.dims[0]].values]
    with atomic_path(target.with_name(target.name + ".names")) as tmp:
        tmp.write_text(json.dumps({"bands": names, "tags": tags or {}}))
    return target


RANGE = registry.Reducer("range", per_band=True, summary="largest plus smallest valid value (a toy)",
                         kernel=range_kernel, reference=range_reference)
NPY = registry.OutputFormat(".npy", "NumPy array (.npy) with a JSON header beside it", "application/x-npy",
                            companions=(".names",), companions_appended=True, writer=write_npy)


@pytest.fixture
def extended():
    registry.register_reducer(RANGE)
    registry.register_format(NPY)
    yield
    registry.unregister_reducer("range")
    registry.unregister_format(".npy")


def test_without_the_entries_the_chain_refuses_both():
    text = "IMALYS\nhome\n\tdirectory = /tmp/w\nreduce\n\tselect = compile\n\texecute = range\n"
    with pytest.raises(ChainError, match="must be one of"):
        parse_chain_text(text, "t.txt", check_files=False)
    text = "IMALYS\nhome\n\tdirectory = /tmp/w\nexport\n\tselect = x\n\ttarget = /tmp/w/a.npy\n"
    with pytest.raises(ChainError, match="unknown format"):
        parse_chain_text(text, "t.txt", check_files=False)


def test_entries_are_checked_when_registered(extended):
    with pytest.raises(ValueError, match="registered already"):
        registry.register_reducer(RANGE)
    with pytest.raises(ValueError, match="kernel and its reference"):
        registry.register_reducer(registry.Reducer("nokernel", True))
    with pytest.raises(ValueError, match="a chain can pass"):
        registry.register_reducer(registry.Reducer("x", False, needs=("swir",), kernel=range_kernel,
                                                   reference=range_reference))
    with pytest.raises(ValueError, match="its writer"):
        registry.register_format(registry.OutputFormat(".raw", "raw", "application/octet-stream"))
    # an entry names its behaviour as "module:attribute" as well (what the built-in ones do)
    assert registry.load("tests.test_extending:range_kernel") is range_kernel


def test_a_toy_reducer_and_a_toy_format_run_in_a_chain(extended, synthetic_archives, tmp_path):
    folder = synthetic_archives.folder
    results = tmp_path / "results"
    chain = tmp_path / "chain.txt"
    chain.write_text(f"""IMALYS
home
	directory = {tmp_path}/work
	clear = true
import
	select = {folder}/*.tar
	bands = red, nir08
	factor = auto
compile
	period = 20220501-20220731
reduce
	select = compile
	execute = range
	preserve = bands
export
	select = range
	target = {results}/range.npy
""")
    run_chain(load_chain(chain))
    # exactly the files the format entry announces, and the export's item
    expected_files = {p.name for p in registry.companion_paths(results / "range.npy")} | {"range.npy.json"}
    assert {p.name for p in results.iterdir()} == expected_files == {"range.npy", "range.npy.names", "range.npy.json"}
    item = json.loads((results / "range.npy.json").read_text())
    assert item["assets"]["data"]["type"] == "application/x-npy"
    got = np.load(results / "range.npy")
    # the reference, on the compiled stack the chain reduced
    wd = WorkDir(tmp_path / "work")
    stack = cube_of(wd, wd.load("compile")).values
    header = json.loads((results / "range.npy.names").read_text())
    expected = range_reference(stack)
    assert got.shape == expected.shape == (2, *stack.shape[2:]) and len(header["bands"]) == 2
    np.testing.assert_array_equal(got, expected)
    finite = got[np.isfinite(got)]
    assert finite.size > 0.5 * got.size and finite.std() > 0
