"""The chain language: seed chains, variables, repeat lists, every kind of bad input and its message."""
from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imalys_stac.chain import (
    COMMANDS,
    Catalog,
    Chain,
    ChainError,
    Command,
    Compile,
    Export,
    Home,
    Import,
    Period,
    Reduce,
    Replace,
    load_chain,
    parse_chain_text,
    read_variable_list,
    resolve_archive_pattern,
)

CHAINS = Path(__file__).parent / "chains"
SEED = Path(__file__).parent / "data" / "seed" / "seed-seamless-image-products.md"
ARCHIVE_DATES = ["20220515", "20220531", "20220702", "20220718"]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fake HOME holding the tutorial's files (USGS long archive names, frame, bonds.csv)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    archives = tmp_path / "ESIS" / "archives"
    archives.mkdir(parents=True)
    for day in ARCHIVE_DATES:
        processed = (datetime.strptime(day, "%Y%m%d") + timedelta(days=8)).strftime("%Y%m%d")
        (archives / f"LC08_L2SP_193026_{day}_{processed}_02_T1.tar").write_bytes(b"")
    (archives / "bonds.csv").write_text("WKT,id,width,height,filename\n")
    (tmp_path / "ESIS" / "frames").mkdir()
    (tmp_path / "ESIS" / "frames" / "bounding-box.shp").write_bytes(b"")
    return tmp_path


def chain(body: str, name: str = "test.txt", **kwargs) -> Chain:
    """Parse a chain made of an IMALYS line and ``body`` (check_files off unless asked)."""
    kwargs.setdefault("check_files", False)
    return parse_chain_text("IMALYS test\n" + body, name, **kwargs)


def error(body: str, name: str = "test.txt", **kwargs) -> ChainError:
    with pytest.raises(ChainError) as info:
        chain(body, name, **kwargs)
    return info.value


HOME = "home\n\tdirectory = /tmp/w\n"


# --- the five seed chains ---------------------------------------------------------------------

def test_seed_chains_are_verbatim_copies():
    """tests/chains/ holds the seed's code blocks unchanged (so 'they parse' means the user's text parses)."""
    text = SEED.read_text(encoding="utf-8")
    for tag in "abcde":
        copy = (CHAINS / f"chain2{tag}.txt").read_text(encoding="utf-8")
        assert f"```\n{copy}```" in text
    assert "\texecute = bestof\t\n" in (CHAINS / "chain2b.txt").read_text()  # the seed's stray tab


def test_seed_2a(home):
    c = load_chain(CHAINS / "chain2a.txt")
    assert [cmd.name for cmd in c.commands] == ["home", "import"]
    assert c.home == Home(directory=home / ".imalys", clear=True, log=home / "ESIS" / "results")
    imp = c.commands[1]
    assert imp.line == 6 and isinstance(imp.params, Import)
    p = imp.params
    assert p.select == [f"{home}/ESIS/archives/LC08_L2SP_193026_{d}.tar" for d in ARCHIVE_DATES]
    assert p.frame == home / "ESIS" / "frames" / "bounding-box.shp"
    assert p.quality == 0.7 and p.factor == 2.75e-5 and p.offset == -0.2
    assert p.bands == ["_B2", "_B3", "_B4", "_B5", "_B6", "_B7"]
    assert (p.database, p.stac, p.mask, p.rule, p.polygon, p.warp) == (None, None, True, "flags", False, None)
    assert imp.param_lines["select"] == 7 and imp.param_lines["offset"] == 15
    assert imp.raw["select"][3] == "~/ESIS/archives/LC08_L2SP_193026_20220718.tar"
    # The short names resolve to the USGS long names, one each.
    resolved = [resolve_archive_pattern(s) for s in p.select]
    assert [[f.name for f in r] for r in resolved] == [
        [f"LC08_L2SP_193026_{d}_{(datetime.strptime(d, '%Y%m%d') + timedelta(days=8)):%Y%m%d}_02_T1.tar"]
        for d in ARCHIVE_DATES
    ]


def test_seed_2b():
    c = load_chain(CHAINS / "chain2b.txt", check_files=False)
    assert [cmd.name for cmd in c.commands] == ["home", "compile", "reduce", "export"]
    assert c.home.clear is False
    comp, red, exp = (cmd.params for cmd in c.commands[1:])
    assert comp == Compile(search=["LC0*.hdr"], period=[Period(date(2022, 5, 1), date(2022, 7, 31))],
                           crsystem=32632, pixel=30.0)
    assert comp.target == "compile"
    assert red == Reduce(select="compile", execute=["bestof"], preserve="bands")
    assert red.threshold == 0.5
    assert exp == Export(select="bestof", target=Path.home() / "ESIS/results/bestof_summer.tif")
    assert c.commands[2].raw["execute"] == ["bestof"]  # the tab after bestof is gone


def test_seed_2c(home):
    c = load_chain(CHAINS / "chain2c.txt")
    cat = c.commands[1].params
    assert cat == Catalog(archives=f"{home}/ESIS/archives/*_L2SP_*.tar", target=home / "ESIS/archives/bonds.csv")
    assert c.home.directory == home / "ESIS" / ".imalys"


def test_seed_2d(home):
    p = load_chain(CHAINS / "chain2d.txt").commands[1].params
    assert p.database == home / "ESIS/archives/bonds.csv" and p.select == []
    assert p.period == [Period(date(2022, 5, 1), date(2022, 10, 31))]


def test_seed_2e():
    c = load_chain(CHAINS / "chain2e.txt", check_files=False)
    assert c.home.clear is False  # default when not given
    assert c.commands[1].params.period == [Period.parse("20220801-20221031")]
    assert c.commands[3].params.target.name == "bestof_autumn.tif"


def test_seed_files_missing_are_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ChainError) as info:
        load_chain(CHAINS / "chain2a.txt")
    e = info.value
    assert (e.file.name, e.line, e.command, e.parameter) == ("chain2a.txt", 7, "import", "select")
    assert str(e).startswith("chain2a.txt:7: import: select = ~/ESIS/archives/LC08_L2SP_193026_20220515.tar — ")
    with pytest.raises(ChainError, match=r"chain2c.txt:7: catalog: archives = .* folder .* does not exist"):
        load_chain(CHAINS / "chain2c.txt")


# --- the exact messages of the brief ----------------------------------------------------------

def _chain_with_line_14(param_line: str) -> str:
    filler = "".join(f"\t# note {i}\n" for i in range(6))  # lines 7..12
    return (
        "IMALYS [process chain 2a]\nhome\n\tdirectory = ~/.imalys\n\tclear = true\n\tlog = ~/ESIS/results\n"
        "import\n" + filler + "\tselect = ~/ESIS/archives/x.tar\n" + param_line + "\n"
    )


def test_unknown_parameter_message(tmp_path):
    path = tmp_path / "chain2a.txt"
    path.write_text(_chain_with_line_14("\tqualty = 0.7"))
    with pytest.raises(ChainError) as info:
        load_chain(path, check_files=False)
    e = info.value
    assert str(e) == "chain2a.txt:14: import: parameter 'qualty' is not known — did you mean 'quality'?"
    assert (e.line, e.command, e.parameter, e.hint) == (14, "import", "qualty", "did you mean 'quality'?")


def test_bad_value_message(tmp_path):
    path = tmp_path / "chain2a.txt"
    path.write_text(_chain_with_line_14("\tquality = 1.4"))
    with pytest.raises(ChainError) as info:
        load_chain(path, check_files=False)
    assert str(info.value) == "chain2a.txt:14: import: quality = 1.4 — must be a fraction between 0 and 1 (e.g. 0.7)"


def test_error_without_line_or_file():
    assert str(ChainError("boom")) == "boom"
    assert str(ChainError("has no home command", file="/x/c.txt", hint="add home")) == "c.txt: has no home command — add home"
    e = ChainError("m", file="c.txt", line=3, command="reduce", parameter="execute", hint="h")
    back = pickle.loads(pickle.dumps(e))
    assert (back.file, back.line, back.command, back.parameter, back.hint, str(back)) == (
        Path("c.txt"), 3, "reduce", "execute", "h", "c.txt:3: reduce: m — h")


# --- structure ---------------------------------------------------------------------------------

def test_first_line_must_be_imalys(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("home\n\tdirectory = x\n")
    with pytest.raises(ChainError, match=r"^bad.txt:1: .*IMALYS"):
        load_chain(path)
    path.write_text("")
    with pytest.raises(ChainError, match=r"^bad.txt: .*IMALYS"):
        load_chain(path)
    with pytest.raises(ChainError, match="IMALYSX|IMALYS"):
        parse_chain_text("IMALYSX\nhome\n", "c.txt")


def test_missing_chain_file(tmp_path):
    with pytest.raises(ChainError, match="nope.txt: chain file not found"):
        load_chain(tmp_path / "nope.txt")


def test_comments_tabs_spaces_blank_lines():
    c = chain(
        "# a comment line\n\n"
        "home   # trailing comment after a command\n"
        "    directory=/tmp/w   \n"
        "\t \tclear   =   yes\t# comment\n"
        "\n"
        "reduce\n"
        "  select\t=\tcompile\t \n"
        "execute = MEDIAN # indentation is optional\n"
        "\texecute = bestof\t\n"
    )
    assert c.home == Home(directory=Path("/tmp/w"), clear=True)
    red = c.commands[1]
    assert red.line == 8 and red.params.execute == ["median", "bestof"]
    assert red.param_lines == {"select": 9, "execute": 10}
    assert red.raw["execute"] == ["MEDIAN", "bestof"]


def test_parameter_before_command():
    e = error("\tdirectory = /tmp\nhome\n")
    assert e.line == 2 and "before any command" in str(e)


def test_line_that_is_neither():
    e = error(HOME + "reduce\n\texecute bestof\n")
    assert e.line == 5 and e.command == "reduce"
    assert "neither a command" in e.message and e.hint == "did you mean 'execute = bestof'?"
    assert error(HOME + "reduce\n\tmy key = 3\n").message == "'my key' is not a parameter name"
    assert "has no value" in error(HOME + "reduce\n\tselect =\n").message


def test_unknown_command_with_hint():
    e = error(HOME + "reduse\n\tselect = compile\n")
    assert str(e) == "test.txt:4: command 'reduse' is not known — did you mean 'reduce'?"
    e = error(HOME + "frobnicate\n")
    assert e.hint.startswith("accepted: ") and "compile" in e.hint


def test_unknown_parameter_far_from_all_lists_accepted():
    e = error(HOME + "export\n\tzzz = 1\n")
    assert e.hint == "accepted: format, offset, overwrite, scale, select, target"


def test_non_repeatable_twice_names_both_lines():
    e = error(HOME + "import\n\tselect = a.tar\n\tquality = 0.7\n\tquality = 0.8\n")
    assert str(e) == "test.txt:7: import: parameter 'quality' given twice (lines 6 and 7) — give it once"


def test_repeatable_keys_keep_order():
    c = chain(HOME + "import\n\tselect = b.tar\n\tselect = a.tar\n\tperiod = 20220101-20220201\n"
              "\tperiod = 20210101 20210201\n")
    p = c.commands[1].params
    assert p.select == ["b.tar", "a.tar"]
    assert [str(x) for x in p.period] == ["20220101-20220201", "20210101-20210201"]
    assert c.commands[1].param_lines["select"] == 5  # first line of a repeated key
    s = chain(HOME + "import\n\tstac = https://x.org/v1\n\tcollections = a, b\n\tcollections = c\n")
    assert s.commands[1].params.collections == ["a", "b", "c"]
    comp = chain(HOME + "compile\n\tsearch = LC09*\n\tsearch = LC08*\n\tselect = x\n\tselect = y\n").commands[1].params
    assert comp.search == ["LC09*", "LC08*"] and comp.select == ["x", "y"]


def test_alias_warp_crsystem():
    assert chain(HOME + "compile\n\twarp = EPSG:3035\n").commands[1].params.crsystem == 3035
    e = error(HOME + "compile\n\tcrsystem = 32632\n\twarp = 32633\n")
    assert e.line == 6 and "'crsystem' and 'warp'" in e.message and "lines 5 and 6" in e.message
    assert chain(HOME + "import\n\tselect = a\n\tcrsystem = 32632\n").commands[1].params.warp == 32632


def test_home_rules():
    e = error("import\n\tselect = a\n")
    assert e.line == 2 and "must be home" in e.message
    assert "no home" in error("").message
    e = error(HOME + "home\n")
    assert e.line == 4 and "twice" in e.message
    e = error(HOME + "replace\n\t$1 = x\n")
    assert e.line == 4 and "before home" in e.message


def test_home_defaults_and_runtime_values():
    c = chain("home\n")
    assert c.home == Home(directory=Path.home() / ".imalys", clear=False, log=None)
    h = chain("home\n\tscheduler = tcp://10.0.0.5:8786\n\tworkers = 4\n\tmemory = 4GB\n").home
    assert (h.scheduler, h.workers, h.memory) == ("tcp://10.0.0.5:8786", 4, "4GB")
    for ok in ("local", "Processes", "kubernetes"):
        assert chain(f"home\n\tscheduler = {ok}\n").home.scheduler == ok.lower()
    for ok in ("512MB", "2 GiB", "1.5gb", "auto"):
        assert chain(f"home\n\tmemory = {ok}\n").home.memory == ok
    for key, bad in (("scheduler", "dask"), ("scheduler", "tcp://host"), ("workers", "0"), ("workers", "2.5"),
                     ("memory", "4"), ("memory", "lots"), ("clear", "maybe")):
        e = error(f"home\n\t{key} = {bad}\n")
        assert (e.line, e.command, e.parameter, e.message) == (3, "home", key, f"{key} = {bad}")
        assert e.hint.startswith("must be")


@pytest.mark.parametrize("word,value", [("true", True), ("Yes", True), ("1", True), ("FALSE", False),
                                        ("no", False), ("0", False)])
def test_booleans(word, value):
    assert chain(f"home\n\tclear = {word}\n").home.clear is value


# --- variables and repeat mode -----------------------------------------------------------------

REPLACE_CHAIN = (
    "replace\n\t$1 = c7934\n\t$2 = 2022\n\t$3 = kept\n"
    "home\n\tdirectory = /tmp/$1\n"
    "compile\n\tsearch = LC0*_$2*\n\tperiod = $20501-$20731\n\ttarget = $3\n"
)


def test_replace_defines_variables():
    c = chain(REPLACE_CHAIN)
    assert c.commands[0].name == "replace" and c.commands[0].params == Replace(values={1: "c7934", 2: "2022", 3: "kept"})
    assert c.variables == {1: "c7934", 2: "2022", 3: "kept"}
    assert c.home.directory == Path("/tmp/c7934")
    comp = c.commands[2]
    assert comp.params.search == ["LC0*_2022*"] and comp.params.target == "kept"
    assert comp.params.period == [Period(date(2022, 5, 1), date(2022, 7, 31))]
    assert comp.raw["period"] == ["20220501-20220731"]


def test_repeat_values_override_and_higher_stay():
    c = chain(REPLACE_CHAIN, variables={1: "a", 2: "2021"})
    assert c.variables == {1: "a", 2: "2021", 3: "kept"}
    assert c.home.directory == Path("/tmp/a")
    assert c.commands[2].params.period[0].start == date(2021, 5, 1)
    assert c.commands[2].params.target == "kept"
    # The chain's own replace record still says what the chain defines.
    assert c.commands[0].params.values[1] == "c7934"


def test_undefined_variable():
    e = error(HOME + "export\n\tselect = bestof\n\ttarget = /out/$4.tif\n")
    assert (e.line, e.command, e.parameter) == (6, "export", "target")
    assert "$4 is not defined" in e.message and "replace" in e.hint
    # Given in repeat mode → fine.
    assert chain(HOME + "export\n\tselect = bestof\n\ttarget = /out/$4.tif\n",
                 variables={4: "x"}).commands[1].params.target == Path("/out/x.tif")


def test_bad_replace_lines():
    assert "not a variable" in error("replace\n\tone = 1\nhome\n").message
    assert "twice" in error("replace\n\t$1 = a\n\t$1 = b\nhome\n").message
    assert "twice" in error("replace\n\t$1 = a\nreplace\n\t$1 = b\nhome\n").message
    assert "out of range" in error("home\n", variables={10: "x"}).message


def test_variables_before_environment(monkeypatch):
    monkeypatch.setenv("IMALYS_TEST_ROOT", "/data")
    monkeypatch.setenv("HOME", "/home/me")
    c = chain("replace\n\t$1 = run7\nhome\n\tdirectory = ${IMALYS_TEST_ROOT}/$1\n\tlog = $HOME/logs/$1\n")
    assert c.home.directory == Path("/data/run7") and c.home.log == Path("/home/me/logs/run7")
    e = error("home\n\tdirectory = $IMALYS_TEST_UNSET_VAR/x\n")
    assert e.line == 3 and "IMALYS_TEST_UNSET_VAR" in e.hint


def test_read_variable_list(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("c7934\t2022\n\n# a comment\nc8000 \t 2021\t\t\nonly\n\tsecond\n")
    assert read_variable_list(path) == [{1: "c7934", 2: "2022"}, {1: "c8000", 2: "2021"}, {1: "only"}, {2: "second"}]
    path.write_text("\t".join("abcdefghij") + "\n")
    with pytest.raises(ChainError, match=r"list.txt:1: has 10 columns"):
        read_variable_list(path)
    with pytest.raises(ChainError, match="not found"):
        read_variable_list(tmp_path / "none.txt")


def test_repeat_mode_end_to_end(tmp_path):
    rows_file = tmp_path / "rows.txt"
    rows_file.write_text("a\t2021\nb\n")
    chain_file = tmp_path / "c.txt"
    chain_file.write_text("IMALYS\n" + REPLACE_CHAIN)
    dirs = [load_chain(chain_file, variables=row).home.directory for row in read_variable_list(rows_file)]
    assert dirs == [Path("/tmp/a"), Path("/tmp/b")]
    years = [load_chain(chain_file, variables=row).commands[2].params.search for row in read_variable_list(rows_file)]
    assert years == [["LC0*_2021*"], ["LC0*_2022*"]]


# --- periods -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["20220501-20220731", "20220501 - 20220731", "20220501 20220731",
                                  "20220501\u201320220731", " 20220501 \u2013 20220731 ", "20220501\t20220731"])
def test_period_forms(text):
    p = Period.parse(text)
    assert (p.start, p.end) == (date(2022, 5, 1), date(2022, 7, 31))
    assert str(p) == "20220501-20220731"


@pytest.mark.parametrize("text", ["2022-05", "20220501", "2022-05-01-2022-07-31", "20220501-202207", "May 2022"])
def test_period_bad_forms(text):
    with pytest.raises(ChainError) as info:
        Period.parse(text)
    assert "YYYYMMDD-YYYYMMDD" in str(info.value)


def test_period_start_after_end_and_bad_dates():
    with pytest.raises(ChainError, match="after the end"):
        Period.parse("20220731-20220501")
    with pytest.raises(ChainError, match="20220230 is not a calendar date"):
        Period.parse("20220230-20220301")
    e = error(HOME + "compile\n\tperiod = 2022-05\n")
    assert str(e) == "test.txt:5: compile: period = 2022-05 — must be YYYYMMDD-YYYYMMDD (e.g. 20220501-20220731)"
    assert e.parameter == "period"


def test_period_contains():
    p = Period.parse("20220501-20220731")
    assert p.contains(date(2022, 5, 1)) and p.contains(date(2022, 7, 31)) and date(2022, 6, 1) in p
    assert not p.contains(date(2022, 4, 30)) and not p.contains(date(2022, 8, 1))
    assert p.contains(datetime(2022, 7, 31, 23, 59))


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=date(1972, 1, 1), max_value=date(2100, 1, 1)),
       st.dates(min_value=date(1972, 1, 1), max_value=date(2100, 1, 1)),
       st.dates(min_value=date(1972, 1, 1), max_value=date(2100, 1, 1)),
       st.sampled_from(["-", " - ", " ", "\u2013", "\t"]))
def test_period_property(a, b, probe, sep):
    start, end = min(a, b), max(a, b)
    p = Period.parse(f"{start:%Y%m%d}{sep}{end:%Y%m%d}")
    assert (p.start, p.end) == (start, end)
    assert p.contains(probe) == (start.toordinal() <= probe.toordinal() <= end.toordinal())
    assert Period.parse(str(p)) == p


# --- import ------------------------------------------------------------------------------------

def test_import_needs_exactly_one_source():
    e = error(HOME + "import\n\tquality = 0.7\n")
    assert e.line == 4 and "exactly one of select, database or stac (found none)" in e.message and e.hint
    e = error(HOME + "import\n\tselect = a.tar\n\tdatabase = cat.json\n")
    assert e.line == 6 and "found select and database" in e.message


def test_import_values():
    p = chain(HOME + "import\n\tstac = https://earth-search.aws.element84.com/v1\n\tcollections = landsat-c2-l2\n"
              "\tdistance = 1.5\n\tcover = 0.9\n\tbands = B2,  red ,nir08\n\tfactor = auto\n\twarp = EPSG:32632\n"
              "\tpixel = 30\n\tmask = no\n\trule = Confidence\n\ttarget = summer\n").commands[1].params
    assert p.stac.startswith("https://") and p.collections == ["landsat-c2-l2"] and p.distance == 1.5
    assert (p.cover, p.bands, p.factor, p.warp, p.pixel, p.mask, p.rule, p.target) == (
        0.9, ["B2", "red", "nir08"], "auto", 32632, 30.0, False, "confidence", "summer")


@pytest.mark.parametrize("key,value,fragment", [
    ("quality", "70", "fraction between 0 and 1"),
    ("quality", "0,7", "decimal point"),
    ("cover", "-0.1", "fraction between 0 and 1"),
    ("distance", "0", "greater than 0"),
    ("pixel", "thirty", "must be a number"),
    ("pixel", "nan", "finite"),
    ("warp", "UTM32", "EPSG code"),
    ("warp", "-5", "EPSG code"),
    ("factor", "x", "or auto"),
    ("rule", "strict", "one of: flags, confidence"),
    ("bands", "_B2,,_B3", "without empty entries"),
    ("mask", "2", "true or false"),
    ("stac", "earth-search", "http(s) URL"),
    ("frame", "roi.tif", "vector file"),
    ("target", "out/x", "bare name"),
])
def test_import_bad_values(key, value, fragment):
    e = error(HOME + f"import\n\tselect = a.tar\n\t{key} = {value}\n")
    assert (e.line, e.command, e.parameter, e.message) == (6, "import", key, f"{key} = {value}")
    assert fragment in e.hint


def test_import_cross_rules():
    e = error(HOME + "import\n\tselect = a.tar\n\toffset = -0.2\n")
    assert e.line == 6 and e.parameter == "offset" and "without factor" in e.message
    assert "distance" in error(HOME + "import\n\tselect = a.tar\n\tdistance = 2\n").message
    assert "frame" in error(HOME + "import\n\tselect = a.tar\n\tpolygon = true\n").hint


def test_import_file_checks(home):
    base = HOME + "import\n"
    ok = chain(base + "\tselect = ~/ESIS/archives/*_L2SP_*.tar\n\tframe = ~/ESIS/frames/bounding-box.shp\n",
               check_files=True).commands[1].params
    assert len(resolve_archive_pattern(ok.select[0])) == 4
    e = error(base + "\tselect = ~/ESIS/archives/LT05_*.tar\n", check_files=True)
    assert e.parameter == "select" and "no archive matches" in e.hint
    e = error(base + "\tselect = ~/ESIS/archives/a.tar\n\tframe = ~/ESIS/frames/none.shp\n", check_files=True)
    assert e.parameter == "select"  # select is checked first, at its own line
    e = error(base + "\tselect = ~/ESIS/archives/*.tar\n\tframe = ~/ESIS/frames/none.shp\n", check_files=True)
    assert (e.line, e.parameter, e.hint) == (6, "frame", "the file does not exist")
    for db in ("~/ESIS/archives/bonds.csv", "~/ESIS/archives"):
        assert chain(base + f"\tdatabase = {db}\n", check_files=True).commands[1].params.database.exists()
    e = error(base + "\tdatabase = ~/ESIS/archives/catalog.json\n", check_files=True)
    assert e.parameter == "database" and "does not exist" in e.hint
    e = error(base + "\tdatabase = ~/ESIS/frames/bounding-box.shp\n", check_files=True)
    assert "catalog.json" in e.hint


def test_resolve_archive_pattern(home):
    folder = home / "ESIS" / "archives"
    long_names = sorted(folder.glob("LC08_*.tar"))
    assert resolve_archive_pattern(str(folder / "*.tar")) == long_names
    assert resolve_archive_pattern("~/ESIS/archives/LC08_L2SP_193026_20220515.tar") == [long_names[0]]
    assert resolve_archive_pattern(long_names[1]) == [long_names[1]]
    assert resolve_archive_pattern(str(folder / "LC08_L2SP_193026_20230101.tar")) == []
    assert resolve_archive_pattern(str(folder / "LC08_L2SP_193026_20220515.zip")) == []  # ending must match
    # Two archives for one short name (reprocessed) → ambiguous.
    (folder / "LC08_L2SP_193026_20220515_20230101_02_T1.tar").write_bytes(b"")
    with pytest.raises(ChainError, match="matches 2 archives"):
        resolve_archive_pattern(str(folder / "LC08_L2SP_193026_20220515.tar"))
    e = error(HOME + "import\n\tselect = ~/ESIS/archives/LC08_L2SP_193026_20220515.tar\n", check_files=True)
    assert (e.line, e.command, e.parameter) == (5, "import", "select") and "full file name" in e.hint


def test_catalog():
    e = error(HOME + "catalog\n\tarchives = /data/*/x.tar\n\ttarget = /tmp/bonds.csv\n")
    assert e.parameter == "archives" and "file name only" in e.hint
    e = error(HOME + "catalog\n\tarchives = /data/*.tar\n")
    assert (e.line, e.parameter, e.message) == (4, "target", "parameter 'target' is missing")
    assert "target = " in e.hint
    assert chain(HOME + "catalog\n\tarchives = /d/*.tar\n\ttarget = /t\n\tworkers = 8\n").commands[1].params.workers == 8


# --- compile, reduce, export ------------------------------------------------------------------

def test_compile_values():
    p = chain(HOME + "compile\n\tselect = LC08_193026_20220515\n\tprojection = ~/tpl\n\tformat = true\n"
              "\ttarget = stack\n").commands[1].params
    assert p.select == ["LC08_193026_20220515"] and p.projection == str(Path.home() / "tpl")
    assert (p.format, p.target, p.frame) == ("true", "stack", None)


def test_reduce_execute():
    p = chain(HOME + "reduce\n\tselect = compile\n\texecute = BestOf\n\texecute = NDVI\n\tred = 3\n\tnir = 4\n"
              "\tflat = true\n\tcount = yes\n\tsource = 1\n\tthreshold = 0.4\n").commands[1].params
    assert (p.execute, p.red, p.nir, p.flat, p.count, p.source, p.threshold) == (
        ["bestof", "ndvi"], 3, 4, True, True, True, 0.4)
    e = error(HOME + "reduce\n\tselect = compile\n\texecute = bestoff\n")
    assert e.line == 6 and e.parameter == "execute" and "did you mean 'bestof'?" in e.hint
    assert "does not run" in error(HOME + "reduce\n\tselect = compile\n\texecute = regression\n").hint
    e = error(HOME + "reduce\n\tselect = compile\n\texecute = ndvi\n\tred = 3\n")
    assert e.line == 6 and e.message == "execute = ndvi needs nir"
    e = error(HOME + "reduce\n\tselect = compile\n\texecute = evi\n\tred = 3\n\tnir = 4\n")
    assert e.message == "execute = evi needs blue"
    assert "twice" in error(HOME + "reduce\n\tselect = c\n\texecute = mean\n\texecute = Mean\n").message
    assert "1-based" in error(HOME + "reduce\n\tselect = c\n\texecute = ndvi\n\tred = 0\n\tnir = 4\n").hint
    assert "one of: bands" in error(HOME + "reduce\n\tselect = c\n\texecute = mean\n\tpreserve = time\n").hint
    e = error(HOME + "reduce\n\tselect = compile\n")
    assert (e.line, e.parameter, e.message) == (4, "execute", "parameter 'execute' is missing")
    assert "select" in error(HOME + "reduce\n\texecute = mean\n").message
    assert "target" in error(HOME + "reduce\n\tselect = c\n\texecute = mean\n\texecute = median\n\ttarget = x\n").message


def test_export_required():
    e = error(HOME + "export\n\tselect = bestof\n")
    assert str(e) == "test.txt:4: export: parameter 'target' is missing — add e.g. 'target = ~/ESIS/results/bestof_summer.tif'"


# --- API helpers -------------------------------------------------------------------------------

def test_command_error_points_at_parameter_line():
    cmd = chain(HOME + "reduce\n\tselect = compile\n\texecute = bestof\n").commands[1]
    assert isinstance(cmd, Command)
    e = cmd.error("compile has only one layer", parameter="select", hint="import more images")
    assert str(e) == "test.txt:5: reduce: compile has only one layer — import more images"
    assert cmd.error("x").line == 4 and cmd.error("x", parameter="target").line == 4


def test_commands_registry():
    assert set(COMMANDS) == {"replace", "home", "catalog", "import", "compile", "reduce", "export"}
    assert COMMANDS["import"] is Import and COMMANDS["home"] is Home


def test_no_heavy_imports():
    code = ("import sys, imalys_stac.chain as c; c.load_chain; "
            "bad = [m for m in ('rasterio', 'osgeo', 'dask', 'xarray', 'stackstac') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_windows_files(tmp_path):
    """CRLF line ends, a UTF-8 BOM, or a cp1252 file from a Windows editor still parse."""
    path = tmp_path / "win.txt"
    path.write_bytes("\ufeffIMALYS x\r\nhome\r\n\tdirectory = /tmp/w\t\r\n".encode("utf-8"))
    assert load_chain(path).home.directory == Path("/tmp/w")
    path.write_bytes("IMALYS Ölfeld\r\nhome\r\n\tlog = /tmp/Übersicht\r\n".encode("cp1252"))
    assert load_chain(path).home.log == Path("/tmp/Übersicht")


def test_export_ending_checked_before_any_work(tmp_path):
    chain = tmp_path / "x.txt"
    chain.write_text("IMALYS\nhome\n\tdirectory = /tmp/wd\nexport\n\tselect = bestof\n\ttarget = /tmp/r.xyz\n")
    with pytest.raises(ChainError) as err:
        load_chain(chain)
    assert err.value.line == 6 and err.value.parameter == "target" and ".png" in str(err.value)


def test_export_endings_match_the_writers():
    from imalys_stac.chain.values import EXPORT_ENDINGS
    from imalys_stac.write import FORMATS

    assert set(EXPORT_ENDINGS) == set(FORMATS)
