"""Issue 20, inputs: every failure of the issue's battery that concerns chain and list files, the
working directory, path identity and exports gets a test here that reproduced it first.

Fast tier: in-process, small files in tmp_path, no subprocess.
"""
from __future__ import annotations

import os
import shutil
import tracemalloc
from pathlib import Path

import pytest

from imalys_stac.chain import ChainError, load_chain, load_chain_rows, parse_chain_text
from imalys_stac.chain import parser as chain_parser

CHAINS = Path(__file__).parent / "chains"


def chain(body: str, **kwargs):
    kwargs.setdefault("check_files", False)
    return parse_chain_text("IMALYS test\n" + body, "c.txt", **kwargs)


def error(body: str, **kwargs) -> ChainError:
    with pytest.raises(ChainError) as info:
        chain(body, **kwargs)
    return info.value


HOME = "home\n\tdirectory = /tmp/w\n"


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    """The environment of the machine running the tests must not override `home`."""
    for name in ("IMALYS_SCHEDULER", "IMALYS_WORKERS", "IMALYS_MEMORY"):
        monkeypatch.delenv(name, raising=False)


# --- 1. '#' is a comment only at the start of a line or after whitespace ------------------------

def test_hash_inside_a_target_is_part_of_the_name():
    """Was: `run#2.tif` cut at '#' → target `run` (an ENVI file) without a word."""
    c = chain(HOME + "export\n\tselect = bestof\n\ttarget = ~/ESIS/results/run#2.tif\n")
    assert c.commands[-1].params.target == Path(os.path.expanduser("~/ESIS/results/run#2.tif"))
    assert c.commands[-1].raw["target"] == ["~/ESIS/results/run#2.tif"]


@pytest.mark.parametrize("line, value", [
    ("\tquality = 0.7 # below this a scene is dropped", 0.7),
    ("\tquality = 0.7\t# a tab before the comment", 0.7),
    ("# a comment line\n\tquality = 0.7", 0.7),
    ("\t\t# an indented comment line\n\tquality = 0.7", 0.7),
])
def test_hash_after_whitespace_or_at_line_start_is_a_comment(line, value):
    c = chain(HOME + "import\n\tselect = a.tar\n" + line + "\n")
    assert c.commands[-1].params.quality == value


def test_hash_glued_to_a_number_is_refused_with_the_reason():
    e = error(HOME + "import\n\tselect = a.tar\n\tquality = 0.7#comment\n")
    assert e.line == 6 and e.parameter == "quality"
    assert "'#' starts a comment only at the start of a line or after a space" in str(e)


def test_hash_glued_to_a_command_names_the_rule():
    e = error(HOME + "reduce#comment\n")
    assert "'#' starts a comment only" in str(e) and "did you mean 'reduce'" in str(e)


TUTORIAL = Path(__file__).parent.parent / "imalys_stac" / "tutorial"


@pytest.mark.parametrize("path", sorted(CHAINS.glob("chain2*.txt")) + sorted(TUTORIAL.glob("chain2*.txt")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_seed_and_tutorial_chains_parse_as_before(path, monkeypatch, tmp_path):
    """Every line of the seed's and the tutorial's chains keeps what the old rule (cut at the first
    '#') kept, and the chain parses."""
    monkeypatch.setenv("HOME", str(tmp_path))
    text = path.read_text(encoding="utf-8")
    for line in chain_parser.split_lines(text)[1:]:
        assert chain_parser.strip_comment(line).strip() == line.split("#", 1)[0].strip(), line
    assert parse_chain_text(text, path.name, check_files=False).commands


# --- 4. bounded input: regular files only, bounded size; workers, env values, units ------------

def test_chain_from_a_device_is_refused(tmp_path):
    """Was: /dev/zero as chain read until memory ran out."""
    with pytest.raises(ChainError) as info:
        load_chain("/dev/zero")
    assert "not a regular file" in str(info.value) and "zero" in str(info.value)


def test_list_from_a_device_is_refused(tmp_path, write_chain):
    path = write_chain("IMALYS x\nhome\n\tdirectory = /tmp/w\n")
    with pytest.raises(ChainError) as info:
        load_chain_rows(path, "/dev/zero", check_files=False)
    assert "not a regular file" in str(info.value) and "variable list" in str(info.value)


def test_fifo_as_chain_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "chain.fifo"
    os.mkfifo(fifo)
    with pytest.raises(ChainError) as info:  # opening it for reading would wait for a writer forever
        load_chain(fifo)
    assert "not a regular file" in str(info.value)


def test_folder_as_list_is_refused(tmp_path, write_chain):
    path = write_chain("IMALYS x\nhome\n\tdirectory = /tmp/w\n")
    with pytest.raises(ChainError) as info:
        load_chain_rows(path, tmp_path, check_files=False)
    assert "is a folder" in str(info.value)


def test_large_binary_as_chain_is_refused_without_reading_it(tmp_path):
    """Was: a 200 MB binary took ~9× its size in memory before the refusal."""
    big = tmp_path / "image.tif"
    with open(big, "wb") as fh:  # sparse: 200 MB on paper, nothing on disk
        fh.truncate(200 * 10**6)
    tracemalloc.start()
    try:
        with pytest.raises(ChainError) as info:
            load_chain(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "larger than 4 MiB" in str(info.value) and "image.tif" in str(info.value)
    assert peak < 20 * 2**20  # nothing of the file was held (the limit is 4 MiB, 200 MB were given)


def test_file_beyond_the_limit_is_refused_and_below_it_read_in_pieces(tmp_path, monkeypatch):
    monkeypatch.setattr(chain_parser, "MAX_CHAIN_BYTES", 100)
    monkeypatch.setattr(chain_parser, "_PIECE", 16)
    ok = tmp_path / "ok.txt"
    ok.write_text("IMALYS x\nhome\n\tdirectory = /tmp/w\n")
    assert load_chain(ok, check_files=False).home.directory == Path("/tmp/w")
    long = tmp_path / "long.txt"
    long.write_text("IMALYS x\nhome\n\tdirectory = /tmp/w\n" + "# padding\n" * 20)
    with pytest.raises(ChainError, match="larger than"):
        load_chain(long, check_files=False)


@pytest.mark.parametrize("value", ["100000", "1025"])
def test_workers_beyond_any_cluster_are_refused(value):
    """Was: workers = 100000 passed check and would start that many processes."""
    e = error(HOME + f"\tworkers = {value}\n")
    assert e.parameter == "workers" and e.line == 4
    assert "more than 1024 workers" in str(e) and "give e.g. workers =" in str(e)


def test_local_workers_are_bounded_by_the_machine(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert chain(HOME + "\tworkers = 32\n").home.workers == 32  # 8 per core, at least 64
    e = error(HOME + "\tworkers = 65\n")
    assert "4 core(s)" in str(e) and "the limit here is 64" in str(e) and "workers = 4" in str(e)
    # a scheduler elsewhere has its own machines: only the absolute limit applies
    assert chain(HOME + "\tscheduler = tcp://10.0.0.5:8786\n\tworkers = 500\n").home.workers == 500
    e = error(HOME + "catalog\n\tarchives = /d/*.tar\n\ttarget = /t\n\tworkers = 100\n")
    assert e.command == "catalog" and e.parameter == "workers"


def test_bad_environment_value_is_a_located_user_error(monkeypatch, tmp_path):
    """Was: IMALYS_WORKERS=two ended as an internal error ("bug") when the run started."""
    from imalys_stac.commands import run_chain

    c = parse_chain_text(f"IMALYS x\nhome\n\tdirectory = {tmp_path / 'w'}\n", "c.txt")
    monkeypatch.setenv("IMALYS_WORKERS", "two")
    with pytest.raises(ChainError) as info:
        run_chain(c)
    e = info.value
    assert (e.line, e.command) == (2, "home")
    assert "IMALYS_WORKERS" in str(e) and "'two'" in str(e)


@pytest.mark.parametrize("written, limit_text", [
    ("260MB", "268.4 MB (256 MiB)"),   # was: "at least 256 MB" while 260 MB was refused
    ("255MiB", "256 MiB"),
    ("0.25GB", "268.4 MB (256 MiB)"),
])
def test_memory_limit_is_stated_in_the_units_the_user_wrote(written, limit_text):
    e = error(HOME + f"\tmemory = {written}\n")
    assert f"memory = {written} per worker is too small" in str(e) and f"at least {limit_text}" in str(e)


@pytest.mark.parametrize("written", ["256MiB", "269MB", "0.3GB", "1GiB"])
def test_memory_at_or_above_256_mib_is_accepted(written):
    assert chain(HOME + f"\tmemory = {written}\n").home.memory == written


# --- 3. path identity through symlinks, '..' and case ------------------------------------------

def test_repeat_rows_exporting_through_a_symlinked_folder_are_caught(tmp_path, write_chain):
    """Was: compared with abspath, row 2 (through a symlink to row 1's folder) silently replaced
    row 1's result."""
    results = tmp_path / "results"
    results.mkdir()
    (tmp_path / "linked").symlink_to(results, target_is_directory=True)
    path = write_chain(f"IMALYS x\nhome\n\tdirectory = {tmp_path / 'w'}\nexport\n\tselect = bestof\n"
                       f"\ttarget = {tmp_path}/$1/bestof.tif\n")
    rows = tmp_path / "rows.txt"
    rows.write_text("results\nlinked\n")
    with pytest.raises(ChainError) as info:
        load_chain_rows(path, rows, check_files=False)
    e = info.value
    assert (e.parameter, e.row_line) == ("target", 2) and "the run of line 1 exports to the same file" in str(e)
    assert os.path.samefile(results, tmp_path / "linked")  # the reference: the system says it is one folder


def test_exports_of_one_chain_through_a_symlink_or_dotdot_are_caught(tmp_path):
    results = tmp_path / "results"
    (results / "sub").mkdir(parents=True)
    (tmp_path / "linked").symlink_to(results, target_is_directory=True)
    for other in (tmp_path / "linked" / "x.tif", results / "sub" / ".." / "x.tif"):
        e = error(HOME + f"export\n\tselect = a\n\ttarget = {results / 'x.tif'}\n"
                         f"export\n\tselect = b\n\ttarget = {other}\n")
        assert e.line == 9 and "is written twice" in str(e)


def test_dotdot_after_a_symlink_follows_the_file_system(tmp_path):
    """`link/../x.tif` is where the system puts it (beside the link's target), not beside the link."""
    from imalys_stac.chain.paths import path_key

    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "link").symlink_to(tmp_path / "a" / "deep", target_is_directory=True)
    assert path_key(tmp_path / "b" / "link" / ".." / "x.tif") == path_key(tmp_path / "a" / "x.tif")
    assert path_key(tmp_path / "b" / "link" / ".." / "x.tif") != path_key(tmp_path / "b" / "x.tif")


def test_case_is_ignored_only_where_the_file_system_ignores_it(tmp_path, monkeypatch):
    from imalys_stac.chain import paths

    (tmp_path / "Results").mkdir()
    assert paths.path_key(tmp_path / "Results" / "X.tif") != paths.path_key(tmp_path / "Results" / "x.tif")
    monkeypatch.setattr(paths, "_ignores_case", lambda folder: True)  # as on macOS or a Windows share
    assert paths.path_key(tmp_path / "Results" / "X.tif") == paths.path_key(tmp_path / "Results" / "x.tif")
    e = error(HOME + f"export\n\tselect = a\n\ttarget = {tmp_path}/Results/Best.tif\n"
                     f"export\n\tselect = b\n\ttarget = {tmp_path}/Results/best.TIF\n")
    assert "is written twice" in str(e)


def test_a_catalog_made_earlier_is_found_through_a_symlink(tmp_path):
    """`import database` may name the catalog a `catalog` of the same chain makes, by any path."""
    archives = tmp_path / "archives"
    archives.mkdir()
    (tmp_path / "link").symlink_to(archives, target_is_directory=True)
    c = chain(f"home\n\tdirectory = {tmp_path / 'w'}\ncatalog\n\tarchives = {archives}/*.tar\n"
              f"\ttarget = {archives}/bonds.csv\nimport\n\tdatabase = {tmp_path}/link/bonds.csv\n", check_files=True)
    assert c.commands[-1].params.database == tmp_path / "link" / "bonds.csv"


# --- 6. the files beside an export (a VRT's COG) ----------------------------------------------

def test_vrt_beside_a_cog_of_the_same_product_is_allowed():
    c = chain(HOME + "export\n\tselect = bestof\n\ttarget = /r/x.tif\nexport\n\tselect = bestof\n\ttarget = /r/x.vrt\n")
    assert [cmd.params.target.name for cmd in c.find("export")] == ["x.tif", "x.vrt"]


def test_vrt_whose_cog_replaces_another_products_cog_is_refused():
    e = error(HOME + "export\n\tselect = bestof\n\ttarget = /r/x.tif\nexport\n\tselect = ndvi\n\ttarget = /r/x.vrt\n")
    assert e.line == 9 and e.parameter == "target"
    assert "writes x.tif, which the export at line 4 (select = bestof) writes too" in str(e)


def test_repeat_rows_whose_vrt_cog_meets_another_rows_cog_are_refused(tmp_path, write_chain):
    path = write_chain(f"IMALYS x\nhome\n\tdirectory = {tmp_path / 'w'}\nexport\n\tselect = bestof\n"
                       f"\ttarget = {tmp_path}/x.$1\n")
    rows = tmp_path / "rows.txt"
    rows.write_text("tif\nvrt\n")
    with pytest.raises(ChainError) as info:
        load_chain_rows(path, rows, check_files=False)
    assert "writes x.tif again" in str(info.value) and info.value.row_line == 2


# --- 2. clear never deletes another run's working directory -------------------------------------

def _workdir_with_nested(tmp_path: Path) -> tuple[Path, Path]:
    from imalys_stac.workdir import WorkDir

    outer = tmp_path / "outer"
    WorkDir(outer).prepare()
    (outer / "oldproduct").mkdir()
    (outer / "oldproduct" / "oldproduct.json").write_text("{}")
    inner = outer / "runs" / "season2"
    WorkDir(inner).prepare()
    (inner / "bestof").mkdir()
    (inner / "bestof" / "bestof.tif").write_bytes(b"result of another run")
    return outer, inner


def test_clear_refuses_a_folder_holding_a_locked_working_directory(tmp_path):
    """Was: clear = true deleted another run's live, locked working directory under it."""
    from imalys_stac.workdir import WorkDir, WorkdirError

    outer, inner = _workdir_with_nested(tmp_path)
    with WorkDir(inner).locked("chain other.txt"):
        with pytest.raises(WorkdirError) as info:
            WorkDir(outer).prepare(clear=True)
        assert f"holds another working directory, {inner}" in str(info.value)
        assert "in use by another imalys-stac run" in str(info.value) and "other.txt" in str(info.value)
    assert (inner / "bestof" / "bestof.tif").read_bytes() == b"result of another run"
    assert (outer / "oldproduct" / "oldproduct.json").exists()  # nothing was removed before the refusal


@pytest.mark.parametrize("keep", ["marker", "lock", "catalog"])
def test_clear_refuses_an_unlocked_working_directory_inside(tmp_path, keep):
    """Recognised by any of its signs: the marker, the lock file, or the catalog's id."""
    from imalys_stac.workdir import LOCK, MARKER, WorkDir, WorkdirError

    outer, inner = _workdir_with_nested(tmp_path)
    for name, sign in ((MARKER, "marker"), (LOCK, "lock"), ("catalog.json", "catalog")):
        if sign != keep:
            (inner / name).unlink(missing_ok=True)
    if keep == "lock":
        (inner / LOCK).write_text("")
    with pytest.raises(WorkdirError) as info:
        WorkDir(outer).prepare(clear=True)
    assert "in use" not in str(info.value) and str(inner) in str(info.value)
    assert (inner / "bestof" / "bestof.tif").exists()


def test_clear_still_empties_a_working_directory_of_its_own_products(tmp_path):
    from imalys_stac.workdir import WorkDir

    outer, _inner = _workdir_with_nested(tmp_path)
    shutil.rmtree(outer / "runs")
    (outer / "runs").mkdir()  # a plain folder (not a working directory) is emptied with the rest
    (outer / "runs" / "notes.txt").write_text("x")
    WorkDir(outer).prepare(clear=True)
    assert sorted(p.name for p in outer.iterdir()) == [".imalys-stac", "catalog.json"]


def test_clear_does_not_follow_a_symlink_to_another_working_directory(tmp_path):
    """A link inside is removed as a link: what it points at is another folder, left alone."""
    from imalys_stac.workdir import WorkDir

    outer, inner = _workdir_with_nested(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    inner.rename(elsewhere)
    shutil.rmtree(outer / "runs")
    (outer / "link").symlink_to(elsewhere, target_is_directory=True)
    WorkDir(outer).prepare(clear=True)
    assert not (outer / "link").exists() and (elsewhere / "bestof" / "bestof.tif").exists()


def test_clear_refusal_is_located_at_the_clear_parameter(tmp_path):
    from imalys_stac.commands import run_chain

    outer, inner = _workdir_with_nested(tmp_path)
    c = parse_chain_text(f"IMALYS x\nhome\n\tdirectory = {outer}\n\tclear = true\n", "c.txt")
    with pytest.raises(ChainError) as info:
        run_chain(c)
    assert (info.value.line, info.value.parameter) == (4, "clear")
    assert (inner / "bestof" / "bestof.tif").exists()


# --- 5. an optional writer that is not installed is refused when the chain is read -------------

@pytest.mark.parametrize("ending, module", [(".nc", "h5netcdf"), (".nc", "h5py"), (".zarr", "zarr")])
def test_export_without_the_optional_writer_is_refused_at_check(monkeypatch, ending, module):
    """Was: the whole chain ran, then the export failed as an internal error ("bug")."""
    import sys

    monkeypatch.setitem(sys.modules, module, None)  # as if the `nc` extra were not installed
    e = error(HOME + f"export\n\tselect = bestof\n\ttarget = /r/bestof{ending}\n")
    assert (e.line, e.command, e.parameter) == (6, "export", "target")
    assert f"needs the optional package {module}" in str(e) and "pip install 'imalys-stac[nc]'" in str(e)


def test_export_with_the_optional_writer_installed_parses():
    pytest.importorskip("h5netcdf")
    pytest.importorskip("zarr")
    c = chain(HOME + "export\n\tselect = bestof\n\ttarget = /r/b.nc\nexport\n\tselect = bestof\n\ttarget = /r/b.zarr\n")
    assert [x.params.target.suffix for x in c.find("export")] == [".nc", ".zarr"]


# --- 6. an export beside another export of the same product (x.vrt after x.tif) ----------------

@pytest.fixture(scope="module")
def reduced(tmp_path_factory, synthetic_archives) -> Path:
    """A working directory holding a compiled stack and its bestof (of the synthetic archives)."""
    from imalys_stac.commands import run_chain

    wd = tmp_path_factory.mktemp("reduced") / "wd"
    text = (f"IMALYS x\nhome\n\tdirectory = {wd}\nimport\n\tselect = {synthetic_archives.folder}/*.tar\n"
            "\tbands = _B4, _B5\n\tfactor = 2.75e-5\n\toffset = -0.2\n"
            "compile\n\tsearch = LC0*\nreduce\n\tselect = compile\n\texecute = bestof\n\tpreserve = bands\n")
    run_chain(parse_chain_text(text, wd.parent / "make.txt"))
    return wd


def _export(wd: Path, *exports: tuple[str, Path]) -> None:
    from imalys_stac.commands import run_chain

    body = "".join(f"export\n\tselect = {select}\n\ttarget = {target}\n" for select, target in exports)
    run_chain(parse_chain_text(f"IMALYS x\nhome\n\tdirectory = {wd}\n" + body, wd.parent / "export.txt"))


@pytest.mark.parametrize("first, second", [("x.tif", "x.vrt"), ("x.vrt", "x.tif")])
def test_vrt_and_cog_of_one_product_share_the_cog(reduced, tmp_path, first, second):
    """Was: "x.tif exists and was not written by imalys-stac" (it was, one command earlier)."""
    import rasterio

    out = tmp_path / "out"
    _export(reduced, ("bestof", out / first))
    _export(reduced, ("bestof", out / second))
    # x.bands/: the single-band views of x.tif that loaders read (docs/loaders.md)
    assert sorted(p.name for p in out.iterdir()) == ["x.bands", "x.json", "x.tif", "x.vrt", "x.vrt.json"]
    with rasterio.open(out / "x.vrt") as vrt, rasterio.open(reduced / "bestof" / "bestof.tif") as ref:
        assert str(out / "x.tif") in vrt.files
        assert vrt.transform == ref.transform and (vrt.read(masked=True) == ref.read(masked=True)).all()
    _export(reduced, ("bestof", out / first), ("bestof", out / second))  # both in one chain, run again


def test_cog_of_another_products_vrt_is_not_replaced(reduced, tmp_path):
    out = tmp_path / "out"
    _export(reduced, ("compile", out / "x.vrt"))
    before = (out / "x.tif").stat()
    with pytest.raises(ChainError) as info:
        _export(reduced, ("bestof", out / "x.tif"))
    assert f"{out / 'x.tif'} was written by the export of compile to x.vrt; this export of bestof would replace it" \
        in str(info.value)
    assert (out / "x.tif").stat().st_mtime_ns == before.st_mtime_ns


# --- 7. degenerate frames ------------------------------------------------------------------------

def _import_with_frame(tmp_path: Path, synthetic_archives, geometry, *, name: str = "frame.gpkg",
                       frame: Path | None = None):
    from imalys_stac.commands import run_chain
    from imalys_stac.synth import write_frame

    sc = synthetic_archives.scenes[0]
    if frame is None:
        frame = write_frame(tmp_path / "frames" / name, geometry, sc.crs)
    text = (f"IMALYS x\nhome\n\tdirectory = {tmp_path / 'wd'}\nimport\n\tselect = {synthetic_archives.archives[0]}\n"
            f"\tbands = _B4\n\tframe = {frame}\n")
    return run_chain(parse_chain_text(text, tmp_path / "c.txt"))


def _scene_geometry(synthetic_archives):
    sc = synthetic_archives.scenes[0]
    t, (rows, cols) = sc.transform, sc.shape
    return t, rows, cols


@pytest.mark.parametrize("kind", ["point", "horizontal line", "vertical line"])
def test_frame_without_area_is_refused_at_the_frame(tmp_path, synthetic_archives, kind):
    """Was: exit 0 and a COG whose geotransform is the identity (origin 0,0, 1 m)."""
    from shapely.geometry import LineString, Point

    t, rows, cols = _scene_geometry(synthetic_archives)
    x, y = t.c + cols / 2 * t.a, t.f + rows / 2 * t.e
    geometry = {"point": Point(x, y), "horizontal line": LineString([(x, y), (x + 600, y)]),
                "vertical line": LineString([(x, y), (x, y - 600)])}[kind]
    with pytest.raises(ChainError) as info:
        _import_with_frame(tmp_path, synthetic_archives, geometry)
    e = info.value
    assert (e.line, e.command, e.parameter) == (7, "import", "frame")
    assert f"is {'a point' if kind == 'point' else 'a line'}" in str(e) and "encloses no area" in str(e)
    assert not list((tmp_path / "wd").glob("LC0*"))  # refused before anything was imported


def test_strip_one_pixel_high_is_refused_at_the_frame(tmp_path, synthetic_archives):
    from shapely.geometry import box

    t, rows, cols = _scene_geometry(synthetic_archives)
    left, top = t.c + 10 * t.a, t.f + 10 * t.e  # a pixel edge
    strip = box(left, top + 0.6 * t.e, left + 20 * t.a, top + 0.1 * t.e)  # inside one row of pixels
    with pytest.raises(ChainError) as info:
        _import_with_frame(tmp_path, synthetic_archives, strip)
    e = info.value
    assert (e.line, e.parameter) == (7, "frame")
    assert f"the result would be 20 × 1 pixel(s) of {t.a:g} × {-t.e:g} metre" in str(e)
    assert f"give a frame at least {2 * t.a:g} × {-2 * t.e:g} metre large" in str(e)


def test_sub_pixel_strip_across_a_pixel_edge_is_placed_correctly(tmp_path, synthetic_archives):
    """A strip thinner than a pixel that crosses a pixel edge covers 2 rows: a valid grid, and the
    written file sits where the strip is (the reference: the strip's own coordinates)."""
    import rasterio
    from shapely.geometry import box

    t, rows, cols = _scene_geometry(synthetic_archives)
    left, edge = t.c + 10 * t.a, t.f + 10 * t.e
    strip = box(left, edge + 0.3 * t.e, left + 20 * t.a, edge - 0.3 * t.e)
    ctx = _import_with_frame(tmp_path, synthetic_archives, strip)
    (product,) = [n for n in ctx.workdir.names() if n.startswith("LC0")]
    _export(ctx.workdir.path, (product, tmp_path / "strip.tif"))
    with rasterio.open(tmp_path / "strip.tif") as src:
        assert (src.height, src.width) == (2, 20)
        assert src.transform.c == pytest.approx(left) and src.transform.f == pytest.approx(edge - t.e)
        assert src.transform.a == pytest.approx(t.a) and src.transform.e == pytest.approx(t.e)


@pytest.mark.parametrize("suffix", [".gpkg", ".shp"])
def test_frame_in_a_latin1_folder_is_read(tmp_path, synthetic_archives, suffix):
    """Was: the folder was found, but reading the frame failed on encoding ('utf-8' codec can't
    encode character '\\udce9')."""
    from shapely.geometry import box

    from imalys_stac.synth import write_frame

    t, rows, cols = _scene_geometry(synthetic_archives)
    geometry = box(t.c + 10 * t.a, t.f + 30 * t.e, t.c + 30 * t.a, t.f + 10 * t.e)
    plain = write_frame(tmp_path / "plain" / f"frame{suffix}", geometry, synthetic_archives.scenes[0].crs)
    latin1 = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9"))
    os.rename(plain.parent, latin1)
    ctx = _import_with_frame(tmp_path, synthetic_archives, None, frame=latin1 / f"frame{suffix}")
    (product,) = [n for n in ctx.workdir.names() if n.startswith("LC0")]
    _export(ctx.workdir.path, (product, tmp_path / "framed.tif"))
    import rasterio

    with rasterio.open(tmp_path / "framed.tif") as src:  # the reference: the frame's own corners
        assert (src.width, src.height) == (20, 20)
        assert src.transform.c == pytest.approx(t.c + 10 * t.a) and src.transform.f == pytest.approx(t.f + 10 * t.e)
