"""A PNG of a compiled stack is read onto a coarse grid (issue 20: the quicklook of a huge stack
computed every layer at full resolution first). The small synthetic stack stands in for a huge
one by lowering the quicklook's side; the picture is compared with the one made from the full
resolution stack by block means (the independent way the quicklook writer reduces arrays)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from imalys_stac.chain import parse_chain_text
from imalys_stac.commands import export as export_module
from imalys_stac.commands import run_chain

SIDE = 16  # the synthetic scenes are 64 px a side: a 4× decimation


@pytest.fixture
def workdir(tmp_path, finished_workdir):
    wd = tmp_path / "wd"
    shutil.copytree(finished_workdir.workdir, wd)
    return wd


def _export(wd, target):
    run_chain(parse_chain_text(f"IMALYS q\nhome\n\tdirectory = {wd}\nexport\n\tselect = compile\n\ttarget = {target}\n",
                               wd.parent / "q.txt"))


def test_png_of_a_compiled_stack_reads_no_pixel_at_full_resolution(workdir, tmp_path, monkeypatch):
    from imalys_stac.cube.grid import Grid
    from imalys_stac.workdir import WorkDir

    full_grid = Grid.from_stac(WorkDir(workdir).load("compile").properties)
    grids = []
    cube_of = export_module.cube_of

    def spy(*args, **kwargs):
        cube = cube_of(*args, **kwargs)
        grids.append(cube.shape[-2:])
        return cube

    monkeypatch.setattr(export_module, "QUICKLOOK_SIDE", SIDE)
    monkeypatch.setattr(export_module, "cube_of", spy)
    _export(workdir, tmp_path / "out" / "stack.png")

    assert max(full_grid.shape) > SIDE
    assert grids and all(max(shape) <= SIDE for shape in grids), grids  # never the full grid
    small = np.asarray(Image.open(tmp_path / "out" / "stack.png"))
    assert max(small.shape[:2]) <= SIDE

    # the same picture from the full resolution stack, sampled at the centre of each coarse
    # pixel (a decimated read takes the nearest full resolution pixel); the stretch of the two
    # pictures differs (its percentiles come from other samples), so colours are compared by
    # correlation and the transparent (NaN) pixels exactly
    monkeypatch.setattr(export_module, "cube_of", cube_of)
    monkeypatch.setattr(export_module, "QUICKLOOK_SIDE", 10**6)
    _export(workdir, tmp_path / "full" / "stack.png")
    f = max(full_grid.shape) // SIDE
    with Image.open(tmp_path / "full" / "stack.png") as full_png:
        reference = np.asarray(full_png)[f // 2::f, f // 2::f]
    assert small.shape == reference.shape
    np.testing.assert_array_equal(small[..., 3] > 0, reference[..., 3] > 0)
    valid = small[..., 3] > 0
    assert valid.sum() >= 20
    for band in range(3):
        r = np.corrcoef(small[..., band][valid].astype(float), reference[..., band][valid].astype(float))[0, 1]
        assert r > 0.9, (band, r)
