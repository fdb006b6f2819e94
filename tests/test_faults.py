"""Bad inputs and faults: each case asserts the exact message a user sees or the exact state
left behind (issue 8). Chains run through the CLI in this process (exit code, stderr), or in a
subprocess where a signal, a kill or a small file system is part of the case."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely.geometry import Polygon, box

from imalys_stac.cli import main
from imalys_stac.synth import write_frame
from imalys_stac.workdir import WorkDir

from .conftest import built_once

DEAD_PID = 2**22 + 12345  # above Linux's default pid_max: never a live process


# -- helpers ------------------------------------------------------------------------------------

@pytest.fixture
def archives(synthetic_archives, tmp_path) -> Path:
    """A private copy of the three synthetic archives (tests may damage it)."""
    folder = tmp_path / "archives"
    shutil.copytree(synthetic_archives.folder, folder)
    return folder


def middle_frame(synthetic_archives, folder: Path) -> Path:
    """``<folder>/frames/frame.gpkg``: the middle half of the scenes, in their own CRS."""
    sc = synthetic_archives.scenes[0]
    t, (rows, cols) = sc.transform, sc.shape
    geom = box(t.c + 0.25 * cols * t.a, t.f + 0.75 * rows * t.e, t.c + 0.75 * cols * t.a, t.f + 0.25 * rows * t.e)
    return write_frame(folder / "frames" / "frame.gpkg", geom, sc.crs)


@pytest.fixture
def frame(synthetic_archives, tmp_path) -> Path:
    """The middle half of the scenes, in their own CRS."""
    return middle_frame(synthetic_archives, tmp_path)


def chain_text(wd: Path, *blocks: str, clear: bool = False, log: Path | None = None) -> str:
    home = f"home\n\tdirectory = {wd}\n" + ("\tclear = true\n" if clear else "") + (f"\tlog = {log}\n" if log else "")
    return "IMALYS [fault test]\n" + home + "".join(blocks)


def import_block(archives: Path, frame: Path | None = None, quality: str | None = None, extra: str = "") -> str:
    text = f"import\n\tselect = {archives}/*.tar\n\tbands = _B2, _B3, _B4, _B5, _B6, _B7\n\tfactor = 2.75e-5\n\toffset = -0.2\n"
    if frame:
        text += f"\tframe = {frame}\n"
    if quality:
        text += f"\tquality = {quality}\n"
    return text + extra


REDUCE = "compile\n\tsearch = LC0*.hdr\nreduce\n\tselect = compile\n\texecute = bestof\n\tpreserve = bands\n"


def export_block(target: Path, extra: str = "") -> str:
    return f"export\n\tselect = bestof\n\ttarget = {target}\n" + extra


def run(write_chain, capsys, text: str, *args: str, name: str = "chain.txt") -> tuple[int, str]:
    path = write_chain(text, name)
    code = main(["run", str(path), *args])
    err = capsys.readouterr().err
    return code, err


def error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.startswith("error: ")]
    assert lines, err
    return lines[-1]


def temporaries(*folders: Path) -> list[str]:
    out = []
    for folder in folders:
        if folder.exists():
            out += [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    return out


# -- nothing to do: say why ---------------------------------------------------------------------

def test_import_that_keeps_nothing_warns_with_counts_and_compile_says_why(write_chain, capsys, archives, tmp_path):
    wd = tmp_path / "wd"
    code, err = run(write_chain, capsys, chain_text(wd, import_block(archives, quality="0.999")))
    assert code == 0
    assert "warning: import: nothing imported: import (chain.txt:4) kept 0 of 3, all below quality 0.999" in err
    assert "< 0.999 (" in err and "< 1.00" not in err  # the threshold as written, never rounded
    code, err = run(write_chain, capsys, chain_text(wd, REDUCE), name="chain2.txt")
    assert code == 1
    assert error_line(err) == (
        "error: chain2.txt:5: compile: no product matches LC0*.hdr: the last import (chain.txt:4) kept 0 of 3, "
        "all below quality 0.999 — lower quality or cover in import, or check the pattern")


def test_named_truncated_archive_is_an_error_naming_the_file(write_chain, capsys, archives, tmp_path):
    broken = sorted(archives.glob("*.tar"))[0]
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    code, err = run(write_chain, capsys, chain_text(tmp_path / "wd", f"import\n\tselect = {broken}\n"))
    assert code == 1
    line = error_line(err)
    assert line.startswith(f"error: chain.txt:5: import: cannot read the archive {broken}: ")
    assert line.endswith("— replace the file by a complete download, or remove it from select")
    assert "frame" not in line


def test_named_non_tar_file_is_an_error(write_chain, capsys, archives, tmp_path):
    fake = archives / "LC08_L2SP_193026_20220901_20220910_02_T1.tar"
    fake.write_text("not an archive\n")
    code, err = run(write_chain, capsys, chain_text(tmp_path / "wd", f"import\n\tselect = {fake}\n"))
    assert code == 1
    assert error_line(err).startswith(f"error: chain.txt:5: import: cannot read the archive {fake}: ")


def test_gzip_renamed_tar_is_an_error_naming_the_file(write_chain, capsys, archives, tmp_path):
    import gzip

    src = sorted(archives.glob("*.tar"))[0]
    fake = archives / "LC08_L2SP_193026_20220902_20220910_02_T1.tar"
    fake.write_bytes(gzip.compress(src.read_bytes()[:50000]))
    code, err = run(write_chain, capsys, chain_text(tmp_path / "wd", f"import\n\tselect = {fake}\n"))
    assert code == 1
    line = error_line(err)
    assert line.startswith(f"error: chain.txt:5: import: cannot read the archive {fake}: ")
    assert "the file is gzip-compressed, not a plain tar as USGS ships it" in line


def test_broken_archive_matched_by_wildcard_is_skipped_with_a_warning(write_chain, capsys, archives, tmp_path):
    fake = archives / "LC08_L2SP_193026_20220903_20220910_02_T1.tar"
    fake.write_bytes(b"\0" * 1024)
    wd = tmp_path / "wd"
    code, err = run(write_chain, capsys, chain_text(wd, import_block(archives)))
    assert code == 0
    assert f"warning: import: skipped {fake} (matched by a wildcard of select): " in err
    assert len([n for n in WorkDir(wd).names() if n.startswith("LC08_")]) == 3


def test_missing_archive(write_chain, capsys, tmp_path):
    code, err = run(write_chain, capsys, chain_text(tmp_path / "wd", f"import\n\tselect = {tmp_path}/nothing/LC08_x.tar\n"))
    assert code == 1
    assert "chain.txt:5: import:" in error_line(err) and "LC08_x.tar" in error_line(err)


def test_period_without_archives_warns_and_names_the_filter(write_chain, capsys, archives, tmp_path):
    code, err = run(write_chain, capsys, chain_text(tmp_path / "wd", import_block(archives, extra="\tperiod = 20200101-20200201\n")))
    assert code == 0
    assert "warning: import: no archive matches the selection (period); nothing imported" in err


# -- frames and sizes ---------------------------------------------------------------------------

def test_self_intersecting_frame_is_refused_with_the_reason(write_chain, capsys, archives, frame, tmp_path, synthetic_archives):
    l, b, r, t = rasterio.open(f"/vsitar/{sorted(archives.glob('*.tar'))[0]}/{sorted(archives.glob('*.tar'))[0].name[:-4]}_QA_PIXEL.TIF").bounds
    bowtie = Polygon([(l, b), (r, t), (r, b), (l, t)])  # the box's four corners, crossed
    path = write_frame(tmp_path / "bowtie.geojson", bowtie, synthetic_archives.scenes[0].crs)
    code, err = run(write_chain, capsys, chain_text(tmp_path / "wd", import_block(archives, frame=path)))
    assert code == 1
    line = error_line(err)
    assert line.startswith(f"error: chain.txt:9: import: the frame {path} is not a valid geometry (feature 1: Self-intersection")
    assert line.endswith("— list the polygon's corners in order around its outline, or repair it in a GIS (e.g. QGIS 'Fix geometries')")


def test_frame_without_features(write_chain, capsys, archives, tmp_path):
    import geopandas as gpd

    path = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame(geometry=[], crs=4326).to_file(path)
    code, err = run(write_chain, capsys, chain_text(tmp_path / "wd", import_block(archives, frame=path)))
    assert code == 1
    assert error_line(err) == f"error: chain.txt:9: import: the frame {path} holds no geometry"


def test_pixel_in_the_wrong_unit_is_refused_before_any_work(write_chain, capsys, archives, frame, tmp_path):
    wd = tmp_path / "wd"
    code, err = run(write_chain, capsys, chain_text(wd, import_block(archives, frame=frame),
                                                    "compile\n\tsearch = LC0*\n\tpixel = 0.001\n"))
    assert code == 1
    line = error_line(err)
    assert line.startswith("error: chain.txt:12: compile: the grid would be ")
    assert "the limit is 5e+10 pixels — check pixel (it is in metre of the grid's coordinate system) and the frame" in line
    assert not (wd / "compile").exists()


def test_import_pixel_in_the_wrong_unit_is_refused(write_chain, capsys, archives, frame, tmp_path):
    code, err = run(write_chain, capsys, chain_text(tmp_path / "wd", import_block(archives, frame=frame, extra="\tpixel = 0.0001\n")))
    assert code == 1
    assert error_line(err).startswith("error: chain.txt:10: import: the grid would be ")


def test_memory_too_small_for_a_worker(write_chain, capsys, tmp_path):
    code, err = run(write_chain, capsys, f"IMALYS x\nhome\n\tdirectory = {tmp_path}/wd\n\tmemory = 1KB\n")
    assert code == 1
    assert error_line(err) == (
        "error: chain.txt:4: home: memory = 1KB per worker is too small: a worker needs at least 268.4 MB (256 MiB) for Python, "
        "GDAL and one block of pixels — give e.g. memory = 2GB (per worker), or leave it out")


# -- nothing overwritten that imalys-stac did not write ------------------------------------------

@pytest.fixture(scope="session")
def reduced_once(tmp_path_factory, synthetic_archives) -> Path:
    """The working directory :func:`reduced` copies, made once per run (import in the middle frame,
    compile, reduce bestof). Its imports point into the shared synthetic archives: read-only."""

    def make(folder: Path) -> Path:
        wd = folder / "wd"
        chain = folder / "make.txt"
        frame = middle_frame(synthetic_archives, folder)
        chain.write_text(chain_text(wd, import_block(synthetic_archives.folder, frame=frame), REDUCE))
        assert main(["run", str(chain)]) == 0
        return wd

    return built_once(tmp_path_factory, "faults-reduced", make)


@pytest.fixture
def reduced(reduced_once, tmp_path) -> Path:
    """A working directory of this test's own holding imports, a compiled stack and a bestof (a copy
    of :func:`reduced_once`: a working directory holds no path of its own)."""
    wd = tmp_path / "wd"
    shutil.copytree(reduced_once, wd)
    return wd


@pytest.mark.parametrize("name", ["figure.tif", "notes", "notes.hdr", "notes.envi.json"])
def test_export_never_replaces_a_file_it_did_not_write(write_chain, capsys, reduced, tmp_path, name):
    results = tmp_path / "results"
    results.mkdir()
    (results / name).write_text("the user's own file\n")
    target = results / (name if name not in ("notes.hdr", "notes.envi.json") else "notes")
    code, err = run(write_chain, capsys, chain_text(reduced, export_block(target)))
    assert code == 1
    assert error_line(err) == (f"error: chain.txt:6: export: {results / name} exists and was not written by imalys-stac "
                               "— choose another target, or add `overwrite = true` to replace it")
    assert (results / name).read_text() == "the user's own file\n"
    assert sorted(p.name for p in results.iterdir()) == [name]


def test_export_never_replaces_a_json_beside_the_target(write_chain, capsys, reduced, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "figure.json").write_text('{"mine": true}')
    code, err = run(write_chain, capsys, chain_text(reduced, export_block(results / "figure.tif")))
    assert code == 1
    assert f"{results / 'figure.json'} exists and was not written by imalys-stac" in error_line(err)
    assert not (results / "figure.tif").exists()


def test_export_with_overwrite_replaces_and_then_owns_the_file(write_chain, capsys, reduced, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "figure.tif").write_text("old")
    code, err = run(write_chain, capsys, chain_text(reduced, export_block(results / "figure.tif", "\toverwrite = true\n")))
    assert code == 0, err
    with rasterio.open(results / "figure.tif") as ds:
        assert ds.count == 6
    item = json.loads((results / "figure.json").read_text())
    assert item["assets"]["data"]["href"] == "./figure.tif"
    # now ours: a second export without overwrite replaces it
    code, err = run(write_chain, capsys, chain_text(reduced, export_block(results / "figure.tif")))
    assert code == 0, err


def test_export_onto_a_folder_is_refused(write_chain, capsys, reduced, tmp_path):
    (tmp_path / "results" / "figure.tif").mkdir(parents=True)
    code, err = run(write_chain, capsys, chain_text(reduced, export_block(tmp_path / "results" / "figure.tif", "\toverwrite = true\n")))
    assert code == 1
    line = error_line(err)
    assert line.startswith(f"error: chain.txt:6: export: target = {tmp_path / 'results' / 'figure.tif'}") and "a file name" in line
    assert (tmp_path / "results" / "figure.tif").is_dir() and not any((tmp_path / "results" / "figure.tif").iterdir())


def test_demo_does_not_replace_a_users_result(tmp_path, capsys):
    results = tmp_path / "demo" / "results"
    results.mkdir(parents=True)
    (results / "bestof_summer.tif").write_text("my own composite")
    code = main(["demo", str(tmp_path / "demo"), "--size", "96"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{results / 'bestof_summer.tif'} exists and was not written by imalys-stac" in error_line(err)
    assert (results / "bestof_summer.tif").read_text() == "my own composite"


def test_home_on_an_archive_catalog_is_refused(write_chain, capsys, tmp_path):
    folder = tmp_path / "archives"
    folder.mkdir()
    original = json.dumps({"type": "Catalog", "id": "landsat-archives", "stac_version": "1.1.0", "description": "x", "links": []})
    (folder / "catalog.json").write_text(original)
    code, err = run(write_chain, capsys, f"IMALYS x\nhome\n\tdirectory = {folder}\n")
    assert code == 1
    assert error_line(err).startswith(f"error: chain.txt:3: home: {folder} holds a STAC catalog that is not an imalys-stac "
                                      "working directory (catalog.json id 'landsat-archives')")
    assert (folder / "catalog.json").read_text() == original
    assert sorted(p.name for p in folder.iterdir()) == ["catalog.json"]


def test_home_that_is_a_file(write_chain, capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, err = run(write_chain, capsys, f"IMALYS x\nhome\n\tdirectory = {tmp_path / 'afile'}\n")
    assert code == 1
    assert error_line(err) == (f"error: chain.txt:3: home: directory = {tmp_path / 'afile'} — is a file, expected a folder "
                               "(it is made when it does not exist)")


def test_clear_refuses_a_foreign_folder(write_chain, capsys, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.docx").write_text("x")
    code, err = run(write_chain, capsys, f"IMALYS x\nhome\n\tdirectory = {folder}\n\tclear = true\n")
    assert code == 1
    assert "refusing to clear" in error_line(err)
    assert (folder / "thesis.docx").exists() and not (folder / ".imalys-stac").exists()


# -- one run per working directory; earlier products that the parameters now reject ------------

def test_second_run_on_a_locked_working_directory_stops_with_a_clear_message(write_chain, capsys, tmp_path):
    wd = WorkDir(tmp_path / "wd")
    with wd.locked("chain other.txt"):
        code, err = run(write_chain, capsys, f"IMALYS x\nhome\n\tdirectory = {wd.path}\n\tclear = true\n")
    assert code == 1
    line = error_line(err)
    assert line.startswith(f"error: chain.txt:3: home: the working directory {wd.path} is in use by another imalys-stac run (pid {os.getpid()}, chain other.txt, since ")
    assert line.endswith("— wait until that run has finished, or give this chain its own `directory`")
    # and the lock dies with its holder: the same chain now runs
    code, err = run(write_chain, capsys, f"IMALYS x\nhome\n\tdirectory = {wd.path}\n\tclear = true\n")
    assert code == 0, err


def test_products_that_new_parameters_reject_are_removed_not_used(write_chain, capsys, archives, frame, tmp_path):
    wd = tmp_path / "wd"
    code, err = run(write_chain, capsys, chain_text(wd, import_block(archives, frame=frame), clear=True))
    assert code == 0, err
    before = [n for n in WorkDir(wd).names() if n.startswith("LC08")]
    assert len(before) == 3
    code, err = run(write_chain, capsys, chain_text(wd, import_block(archives, frame=frame, quality="0.7"), REDUCE))
    assert code == 0, err
    after = [n for n in WorkDir(wd).names() if n.startswith("LC08")]
    removed = sorted(set(before) - set(after))
    assert removed, "the cloudy scene should be rejected at quality 0.7"
    for name in removed:
        assert f"warning: import: removed {name} imported by an earlier run: quality " in err
    compiled = json.loads((wd / "compile" / "compile.json").read_text())
    assert sorted(compiled["properties"]["imalys:inputs"]) == sorted(after)


# -- errors for people, tracebacks for bugs ----------------------------------------------------

def test_a_bug_is_an_internal_error_with_the_log_and_debug_shows_the_traceback(write_chain, capsys, reduced, tmp_path, monkeypatch):
    import imalys_stac.commands.export as export

    def broken(*a, **k):
        return 1 / 0

    monkeypatch.setattr(export, "provenance_item", broken)
    text = chain_text(reduced, export_block(tmp_path / "r" / "x.tif"), log=tmp_path / "logs")
    code, err = run(write_chain, capsys, text)
    assert code == 1
    line = error_line(err)
    assert line.startswith("error: internal error (ZeroDivisionError: division by zero); this is a bug in imalys-stac, "
                           f"please report it with the run log {tmp_path / 'logs'}/imalys-chain-")
    assert line.endswith("(run again with --debug to see the traceback)")
    assert "Traceback" not in err
    assert not (tmp_path / "r" / "x.tif").exists() and temporaries(tmp_path / "r") == []
    log_text = next((tmp_path / "logs").glob("*.log")).read_text()
    assert "ZeroDivisionError" in log_text and "Traceback" in log_text
    code, err = run(write_chain, capsys, text, "--debug")
    assert code == 1 and "Traceback (most recent call last)" in err and "ZeroDivisionError" in err


def test_the_error_is_the_last_line_a_user_sees(write_chain, capsys, tmp_path):
    code, err = run(write_chain, capsys, f"IMALYS x\nhome\n\tdirectory = {tmp_path}/wd\ncompile\n\tsearch = LC0*\n")
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: chain.txt:5: compile: no product matches LC0*")
    assert "finished with" not in err


# -- temporaries of dead runs; a run stopped half way ------------------------------------------

def test_a_run_removes_temporaries_of_dead_runs_and_restores_a_half_replaced_product(write_chain, capsys, reduced, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    stale_dir = reduced / f".bestof.tmp-{DEAD_PID}-abcd"
    stale_dir.mkdir()
    (stale_dir / "bestof.src.tif").write_bytes(b"\0" * 4096)
    (results / f".out.tif.tmp-{DEAD_PID}").write_bytes(b"\0" * 4096)
    live = results / f".out.tif.tmp-{os.getppid()}"  # a live process's temporary stays
    live.write_bytes(b"\0")
    os.replace(reduced / "bestof", reduced / f".bestof.old-{DEAD_PID}")  # killed between two renames
    code, err = run(write_chain, capsys, chain_text(reduced, export_block(results / "out.tif")))
    assert code == 0, err
    assert not stale_dir.exists() and not (results / f".out.tif.tmp-{DEAD_PID}").exists() and live.exists()
    assert (reduced / "bestof" / "bestof.tif").exists() and not (reduced / f".bestof.old-{DEAD_PID}").exists()
    assert (results / "out.tif").exists()


def test_unchanged_products_are_kept_and_changed_ones_redone(write_chain, capsys, archives, frame, tmp_path):
    wd, results = tmp_path / "wd", tmp_path / "results"
    text = chain_text(wd, import_block(archives, frame=frame), REDUCE, export_block(results / "b.tif"))
    code, err = run(write_chain, capsys, text)
    assert code == 0, err
    tif, cog = wd / "bestof" / "bestof.tif", results / "b.tif"
    stamps = (tif.stat().st_mtime_ns, cog.stat().st_mtime_ns)
    code, err = run(write_chain, capsys, text)
    assert code == 0, err
    assert "bestof: up to date (same input and parameters" in err and f"{cog}: up to date" in err
    assert (tif.stat().st_mtime_ns, cog.stat().st_mtime_ns) == stamps
    code, err = run(write_chain, capsys, text.replace("preserve = bands\n", "preserve = bands\n\tthreshold = 0.3\n"))
    assert code == 0, err
    assert "up to date" not in err
    assert tif.stat().st_mtime_ns != stamps[0] and cog.stat().st_mtime_ns != stamps[1]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from imalys_stac.cli import main; sys.exit(main())", *args]


def _spawn(chain: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "IMALYS_NO_MALLOC_TUNING": "1"}
    return subprocess.Popen(_cli("run", str(chain)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


def _wait_for(proc: subprocess.Popen, log: Path, text: str, timeout: float = 120) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise AssertionError(f"finished before {text!r}: {proc.stderr.read()}")
        if log.exists() and any(text in p.read_text(errors="replace") for p in log.glob("*.log")):
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not seen")


@pytest.fixture(scope="module")
def big_archives(tmp_path_factory) -> Path:
    """Archives large enough that a reduce takes a few seconds (room for a signal)."""
    from datetime import date

    from imalys_stac.synth import Landscape, SceneSpec, write_landsat_archive

    folder = tmp_path_factory.mktemp("big")
    land = Landscape(seed=9)
    for i, d in enumerate((date(2022, 6, 1), date(2022, 6, 17), date(2022, 7, 3), date(2022, 7, 19))):
        write_landsat_archive(folder, SceneSpec(sensor="LC08", path=193, row=26, acquired=d, size=1536, cloud_cover=0.2, seed=i), landscape=land)
    return folder


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_stops_like_ctrl_c_and_leaves_no_temporary(big_archives, tmp_path, sig):
    wd, logs, results = tmp_path / "wd", tmp_path / "logs", tmp_path / "results"
    chain = tmp_path / "chain.txt"
    chain.write_text(chain_text(wd, import_block(big_archives), REDUCE, export_block(results / "b.tif"), log=logs))
    proc = _spawn(chain)
    _wait_for(proc, logs, "── reduce")
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    name = signal.Signals(sig).name
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert err.strip().splitlines()[-1] == (f"error: stopped by {name}: temporary files were removed; products finished "
                                            "before the stop are kept and the next run continues from them")
    assert temporaries(wd, results) == []
    assert not (wd / "bestof").exists() and (wd / "compile" / "compile.json").exists()
    assert f"stopped by {name}" in next(logs.glob("*.log")).read_text()


def test_sigkill_during_reduce_then_the_next_run_completes(big_archives, tmp_path):
    wd, logs, results = tmp_path / "wd", tmp_path / "logs", tmp_path / "results"
    chain = tmp_path / "chain.txt"
    chain.write_text(chain_text(wd, import_block(big_archives), REDUCE, export_block(results / "b.tif"), log=logs))
    proc = _spawn(chain)
    _wait_for(proc, logs, "── reduce")
    deadline = time.monotonic() + 60  # the reduce imports its array libraries first, then writes
    while not temporaries(wd) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    proc.kill()
    proc.communicate(timeout=60)
    assert temporaries(wd), "a killed reduce leaves its scratch folder (this is what the next run must clean)"
    proc = _spawn(chain)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert temporaries(wd, results) == []
    with rasterio.open(results / "b.tif") as ds:
        assert ds.count == 6 and np.isfinite(ds.read(1)).any()
    assert json.loads((results / "b.json").read_text())["assets"]["data"]["href"] == "./b.tif"


# -- full disk and read-only targets on a real small file system --------------------------------

def _in_own_mount(script: str, cwd: Path) -> subprocess.CompletedProcess | None:
    """Run `script` (sh) in a private mount namespace (unprivileged user namespace), or None where
    the machine does not allow one."""
    unshare = shutil.which("unshare")
    if not unshare:
        return None
    probe = subprocess.run([unshare, "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    env = {**os.environ, "IMALYS_NO_MALLOC_TUNING": "1"}
    return subprocess.run([unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.parametrize("select, name, message", [
    ("bestof", "b.tif", "No space left on device; nothing was replaced"),  # copy of the reduce COG
    ("compile", "c.tif", "No space left on device; nothing was replaced"),  # a COG written by GDAL
    ("compile", "c", "it needs"),  # ENVI: checked against the free space first
    ("compile", "c.nc", "it needs"),  # netCDF: HDF5 would crash on a full disk, so checked first
])
@pytest.mark.system  # a tmpfs mount in a namespace of its own
def test_export_to_a_full_disk_is_a_clear_error_and_leaves_no_partial_file(write_chain, reduced, tmp_path, select, name, message):
    small = tmp_path / "small"
    small.mkdir()
    chain = write_chain(chain_text(reduced, f"export\n\tselect = {select}\n\ttarget = {small / name}\n"), "full.txt")
    cmd = shlex.join(_cli("run", str(chain)))
    res = _in_own_mount(f"mount -t tmpfs -o size=12k tmpfs {small} && {cmd} ; rc=$? ; ls -A {small} ; exit $rc", tmp_path)
    if res is None:
        pytest.skip("no unprivileged mount namespace on this machine")
    assert res.returncode == 1, res.stderr
    line = error_line(res.stderr)
    assert line.startswith(f"error: full.txt:6: export: cannot write {small / name}: ") and message in line, line
    assert line.endswith("— free some space or choose another folder")
    assert res.stdout.strip() == ""  # nothing left in the folder, not even a temporary


@pytest.mark.system  # a tmpfs mount in a namespace of its own
@pytest.mark.parametrize("size", ["24k", "48k", "96k"])
def test_a_full_working_directory_is_a_clear_error_and_leaves_nothing_half_written(write_chain, archives, frame, tmp_path, size):
    wd = tmp_path / "wd"
    wd.mkdir()
    chain = write_chain(chain_text(wd, import_block(archives, frame=frame), REDUCE, log=tmp_path / "logs"), "full.txt")
    cmd = shlex.join(_cli("run", str(chain)))
    script = (f"mount -t tmpfs -o size={size} tmpfs {wd} && {cmd} ; rc=$? ; "
              f"for d in {wd}/*/; do f=\"$d$(basename $d).json\"; [ -e \"$f\" ] || continue; python3 -c 'import json,sys,os; d=json.load(open(sys.argv[1])); "
              f"[os.stat(os.path.join(os.path.dirname(sys.argv[1]), a[\"href\"])) for a in d[\"assets\"].values()]' $f || echo BROKEN $f; done; "
              f"ls -A {wd} ; exit $rc")
    res = _in_own_mount(script, tmp_path)
    if res is None:
        pytest.skip("no unprivileged mount namespace on this machine")
    assert res.returncode == 1, res.stderr
    line = error_line(res.stderr)
    # whichever command meets the full disk says so, at its own line
    assert re.fullmatch(rf"error: full\.txt:(5|10|12): (import|compile|reduce): cannot write in {re.escape(str(wd))}: "
                        r"No space left on device — free some space or choose another folder", line), line
    assert "BROKEN" not in res.stdout  # every product that exists is complete
    assert not any(".tmp-" in n for n in res.stdout.split())


@pytest.mark.system  # a tmpfs mount in a namespace of its own
def test_export_to_a_read_only_folder_is_a_clear_error(write_chain, reduced, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    chain = write_chain(chain_text(reduced, export_block(ro / "b.tif")), "ro.txt")
    cmd = shlex.join(_cli("run", str(chain)))
    res = _in_own_mount(f"mount -t tmpfs tmpfs {ro} && mount -o remount,ro {ro} && {cmd}", tmp_path)
    if res is None:
        pytest.skip("no unprivileged mount namespace on this machine")
    assert res.returncode == 1, res.stderr
    assert error_line(res.stderr).startswith(f"error: ro.txt:6: export: cannot write {ro / 'b.tif'}: Read-only file system")


def test_two_chains_started_together_on_one_working_directory(big_archives, tmp_path):
    """Summer and autumn chains 0.2 s apart on one working directory: the second stops with the
    lock message, the first's composite holds exactly its own dates (no mixing)."""
    wd, results = tmp_path / "wd", tmp_path / "results"
    chains = {}
    for season, period in (("summer", "20220601-20220630"), ("autumn", "20220701-20220731")):
        chains[season] = tmp_path / f"{season}.txt"
        chains[season].write_text(chain_text(wd, import_block(big_archives, extra=f"\tperiod = {period}\n"), REDUCE,
                                             export_block(results / f"{season}.tif"), log=tmp_path / f"log-{season}"))
    procs = {"summer": _spawn(chains["summer"])}
    time.sleep(0.2)
    procs["autumn"] = _spawn(chains["autumn"])
    errs = {season: proc.communicate(timeout=300)[1] for season, proc in procs.items()}
    # whichever took the lock first runs; the other stops at once with the lock message
    winners = [s for s, p in procs.items() if p.returncode == 0]
    assert len(winners) == 1, errs
    winner = winners[0]
    loser = "autumn" if winner == "summer" else "summer"
    assert procs[loser].returncode == 1
    assert errs[loser].strip().splitlines()[-1].startswith(
        f"error: {loser}.txt:3: home: the working directory {wd} is in use by another imalys-stac run "
        f"(pid {procs[winner].pid}, chain {winner}.txt")
    dates = json.loads((results / f"{winner}.json").read_text())["properties"]["imalys:dates"]
    assert dates == (["2022-06-01", "2022-06-17"] if winner == "summer" else ["2022-07-03", "2022-07-19"])
    assert not (results / f"{loser}.tif").exists()


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0, 4.5])
def test_sigkill_at_any_moment_leaves_states_that_the_next_run_completes(big_archives, tmp_path, delay):
    """Kill the whole chain (import → compile → reduce → export) after `delay` seconds; the
    working directory and results are as before or complete, and a re-run gives the result of an
    undisturbed run."""
    wd, results = tmp_path / "wd", tmp_path / "results"
    chain = tmp_path / "chain.txt"
    chain.write_text(chain_text(wd, import_block(big_archives), REDUCE, export_block(results / "b.tif"), export_block(results / "b"), log=tmp_path / "logs"))
    proc = _spawn(chain)
    time.sleep(delay)
    proc.kill()
    proc.communicate(timeout=60)
    for item in (f / f"{f.name}.json" for f in (wd.iterdir() if wd.exists() else []) if f.is_dir()):  # every product is complete
        if not item.exists():
            continue
        data = json.loads(item.read_text())
        for asset in data["assets"].values():
            assert (item.parent / asset["href"]).exists(), (item, asset)
    for exported in results.glob("*.json") if results.exists() else []:
        data = json.loads(exported.read_text())
        assert (results / data["assets"]["data"]["href"]).exists()
    proc = _spawn(chain)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 0, err
    assert temporaries(wd, results) == []
    with rasterio.open(results / "b.tif") as ds, rasterio.open(results / "b") as envi:
        a, e = ds.read(), envi.read()
    np.testing.assert_array_equal(a, e)
    assert np.isfinite(a).mean() > 0.5


def test_exports_of_one_name_in_two_formats_keep_their_own_items(write_chain, capsys, reduced, tmp_path):
    r = tmp_path / "results"
    code, err = run(write_chain, capsys, chain_text(reduced, export_block(r / "b.tif"), export_block(r / "b"), export_block(r / "b.png")))
    assert code == 0, err
    # b.bands/: one single-band VRT per band of b.tif (stackstac reads one band per asset)
    assert sorted(p.name for p in r.iterdir()) == ["b", "b.bands", "b.envi.json", "b.hdr", "b.json", "b.png", "b.png.json",
                                                   "b.tif"]
    for item, href in (("b.json", "./b.tif"), ("b.envi.json", "./b"), ("b.png.json", "./b.png")):
        assert json.loads((r / item).read_text())["assets"]["data"]["href"] == href
    code, err = run(write_chain, capsys, chain_text(reduced, export_block(r / "b.tif"), export_block(r / "b"), export_block(r / "b.png")))
    assert code == 0, err


def test_export_checks_a_reduce_cog_again_only_when_it_changed(write_chain, capsys, reduced, tmp_path, monkeypatch):
    """reduce checked its COG when it wrote it; export copies a file still stamped as checked
    without checking the copy again, and checks (and here refuses) one that changed since."""
    import imalys_stac.commands.export as export_cmd

    calls = []
    real = export_cmd.check_cog
    monkeypatch.setattr(export_cmd, "check_cog", lambda p: calls.append(p) or real(p))
    target = tmp_path / "results" / "figure.tif"
    target.parent.mkdir()
    code, err = run(write_chain, capsys, chain_text(reduced, export_block(target)))
    assert code == 0, err
    assert calls == []
    with rasterio.open(target) as a, rasterio.open(reduced / "bestof" / "bestof.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    # the product's COG replaced by a tiled GeoTIFF whose overviews were added after its pixels
    # (same pixels; its IFDs at the end, not a COG)
    source = reduced / "bestof" / "bestof.tif"
    with rasterio.open(source) as src:
        profile, pixels = src.profile, src.read()
    profile.update(driver="GTiff", tiled=True, blockxsize=16, blockysize=16, compress="none")
    with rasterio.open(tmp_path / "plain.tif", "w", **profile) as dst:
        dst.write(pixels)
    with rasterio.open(tmp_path / "plain.tif", "r+") as dst:
        dst.build_overviews([2, 4])
    os.replace(tmp_path / "plain.tif", source)
    code, err = run(write_chain, capsys, chain_text(reduced, export_block(tmp_path / "results" / "other.tif")))
    assert len(calls) == 1
    assert code == 1 and "the written file is not a valid COG" in error_line(err), err
    assert not (tmp_path / "results" / "other.tif").exists()


# -- a signal that arrives while a module is being imported -------------------------------------

_IMPORT_UNDER_SIGNAL = """
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from imalys_stac.cli import _signals_stop_cleanly
with _signals_stop_cleanly():
    try:
        import half_made  # its body signals this process, then takes a while
        time.sleep(10)
        print("not stopped")
    except KeyboardInterrupt as exc:  # what the command line catches
        module = sys.modules.get("half_made")
        print(getattr(exc, "signame", "SIGINT"), "complete" if getattr(module, "COMPLETE", False) else "half made")
"""

_SLOW_MODULE = """
import os, signal, sys, time
os.kill(os.getpid(), getattr(signal, sys.argv[2]))
for _ in range(40):  # the handler runs between these bytecodes
    time.sleep(0.005)
COMPLETE = True
"""


@pytest.mark.system
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_during_an_import_stops_the_run_after_the_import(tmp_path, signame):
    """Was: the interrupt was raised inside the module's body: the import system dropped the half-made
    module while dask's threads went on importing and filling the same modules, and a stop under load
    ended once as 'internal error (RuntimeError: dictionary changed size during iteration)'. Now the
    signal is delivered again once the import is complete, and stops the run as usual."""
    (tmp_path / "half_made.py").write_text(_SLOW_MODULE)
    proc = subprocess.run([sys.executable, "-c", _IMPORT_UNDER_SIGNAL, str(tmp_path), signame],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == [signame, "complete"], proc.stderr


@pytest.mark.system
def test_a_signal_the_process_ignores_stays_ignored():
    """`nohup imalys-stac run …` ignores SIGHUP; the run must not be stopped by a hang-up."""
    script = ("import os, signal, time\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
              "from imalys_stac.cli import _signals_stop_cleanly\nwith _signals_stop_cleanly():\n"
              "    os.kill(os.getpid(), signal.SIGHUP)\n    time.sleep(0.3)\nprint('still running')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "still running", proc.stderr
