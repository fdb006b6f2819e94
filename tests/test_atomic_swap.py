"""The one folder swap (write.atomic.replace) and its crash recovery, shared by the working
directory's products and exported folders (Zarr): a run killed between the two renames loses
nothing; the next run puts the old folder back, or removes it when the new one is in place."""
from __future__ import annotations

import os
import subprocess
import sys

from imalys_stac.write.atomic import moved_aside, recover_swaps, replace, sweep_stale


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # reaped: no process has this id now (until the system reuses it)


def _folder(path, text):
    path.mkdir()
    (path / "data.txt").write_text(text)
    return path


def test_replace_swaps_a_folder_and_leaves_nothing_aside(tmp_path):
    target = _folder(tmp_path / "store.zarr", "old")
    new = _folder(tmp_path / ".store.zarr.tmp-1-x", "new")
    replace(new, target)
    assert (target / "data.txt").read_text() == "new" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.zarr"]
    assert moved_aside(target).name == f".store.zarr.old-{os.getpid()}"


def test_a_swap_killed_between_its_renames_is_undone_by_the_next_run(tmp_path):
    dead = _dead_pid()
    # killed after moving the old folder aside, before the new one moved in
    target = tmp_path / "bestof"
    _folder(tmp_path / f".bestof.old-{dead}", "old")
    # the temporary sweep (run first or alone) must not take the old folder for a temporary
    assert sweep_stale(tmp_path) == [] and (tmp_path / f".bestof.old-{dead}").exists()
    assert recover_swaps(tmp_path) == ["bestof"]
    assert (target / "data.txt").read_text() == "old" and not (tmp_path / f".bestof.old-{dead}").exists()
    # killed after the new folder moved in, before the old one was removed: the new one stays
    _folder(tmp_path / f".bestof.old-{dead}", "older")
    assert recover_swaps(tmp_path) == []
    assert (target / "data.txt").read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["bestof"]


def test_a_swap_of_a_running_process_is_left_alone(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        aside = _folder(tmp_path / f".bestof.old-{other.pid}", "old")
        assert recover_swaps(tmp_path) == [] and aside.exists()  # that run may still finish its swap
        own = _folder(tmp_path / f".x.old-{os.getpid()}", "own")
        assert recover_swaps(tmp_path, include_own=False) == [] and own.exists()
        assert recover_swaps(tmp_path) == ["x"]  # a run that has just started swaps nothing yet
    finally:
        other.kill()
        other.wait()
