"""Fuzzing the chain language: any text parses or fails with a located ChainError — never another
exception — and valid chains, however they are spaced, commented, encoded or ended, parse to the
values they state. Plus the robustness cases of issue 8: repeat lists checked up front, numbers
quoted as written, folders and Latin-1 file names."""
from __future__ import annotations

import dataclasses
import os
import pickle
import re
import string
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from imalys_stac.chain import (
    COMMANDS,
    ChainError,
    Number,
    as_written,
    load_chain,
    load_chain_rows,
    parse_chain_text,
    read_variable_rows,
)
from imalys_stac.chain.parser import decode_text, split_lines
from imalys_stac.chain.values import EXPORT_ENDINGS

# --------------------------------------------------------------------------- vocabulary

#: every key a command accepts (field names and aliases), and for each key its field name
KEYS: dict[str, dict[str, str]] = {}
for _name, _model in COMMANDS.items():
    KEYS[_name] = {}
    for _f in dataclasses.fields(_model):
        if "parser" in _f.metadata:
            KEYS[_name][_f.name] = _f.name
            for _alias in _f.metadata["aliases"]:
                KEYS[_name][_alias] = _f.name
ALL_KEYS = sorted({k for keys in KEYS.values() for k in keys})

#: values that have broken parsers elsewhere: numbers of every shape, non-numbers, variables,
#: paths, control and non-ASCII characters
NASTY_VALUES = [
    "0", "1", "-1", "0.7", "0.999", "1.0000000000000002", "+.5", "5.", ".5e-1", "1e308", "1e309", "-1e309",
    "9" * 30, "9" * 5000, "1" * 400 + ".5", "0x10", "1_000", "0,7", "1e", "e5", "--1", "nan", "NaN", "-nan", "inf",
    "-Infinity", "infinity", "１２", "٣", "Ⅻ", "²", "true", "FALSE", "yes", "maybe", "auto", "EPSG:32632",
    "epsg : 3035", "EPSG:", "32632000000", "$1", "$9", "$10", "$0", "$", "$$", "${X}", "${", "$HOME", "$IMALYS_UNSET_X",
    "~", "~nouser_imalys/x", "/", ".", "..", "a/../b", "x.tar", "*.tar", "[", "[!a]*.tar", "?", "**",
    "a\x00b", "a\x0bb", "a\x1fb", "\x7f", "a\x85b", "a\u2028b", "\x1c", "caf\udce9.tar", "\ud800", "é", "Ölfeld", "日本.gpkg", "🙂",
    "20220501-20220731", "20220731-20220501", "20220230-20220301", "00000000-99999999", "2022-05",
    "20220501\u201320220731", "https://x.org/v1", "http://", "tcp://h:8786", "tcp://[::1]:99999",
    "4GB", "1.5 GiB", "0b", "9" * 400 + "GB", "１２GB", "bestof", "regression", "BestOf", "a, b", ",", "a,,b", "x.tif", "x.xyz",
    "x.zarr", "frame.shp", "bonds.csv", "catalog.json", " ", "=", "==", "a = b", "#", "\u00a0", "\ufeff",
]

_LINE_ENDS = ["\n", "\r\n", "\r"]
_SPACE = st.sampled_from(["", " ", "\t", "  ", " \t ", "\t\t", "\u00a0"])
_NOISE = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)
_WORD = st.text(alphabet=string.ascii_letters + string.digits + "_$", min_size=1, max_size=10)


def _line(kind, key, value, indent, around, comment):
    if kind == "command":
        return f"{indent}{key}{comment}"
    if kind == "param":
        return f"{indent}{key}{around[0]}={around[1]}{value}{comment}"
    return value  # raw noise line


@st.composite
def chain_texts(draw) -> str:
    """Chain-shaped text: mostly known commands and keys, some unknown, with nasty values."""
    lines = []
    if draw(st.integers(0, 9)):
        lines.append("IMALYS" + draw(st.sampled_from(["", " [fuzz]", "\t", " IMALYS"])))
    else:
        lines.append(draw(st.sampled_from(["", "imalys", "IMALYSX", "# IMALYS", " IMALYS"])))
    commands = list(COMMANDS) + ["Home", "REDUCE", "reduse", "frobnicate", "x_imalys"]
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["command", "param", "param", "param", "noise", "blank"]))
        indent = draw(_SPACE)
        around = (draw(_SPACE), draw(_SPACE))
        comment = draw(st.sampled_from(["", "", " # note", "\t#", "#=#"]))
        if kind == "blank":
            lines.append(draw(_SPACE))
            continue
        if kind == "command":
            key = draw(st.one_of(st.sampled_from(commands), _WORD))
            lines.append(_line(kind, key, "", indent, around, comment))
            continue
        key = draw(st.one_of(st.sampled_from(ALL_KEYS), st.sampled_from(["$1", "$2", "$9", "$0", "$10", "my key", "1x"]),
                             _WORD, st.just("")))
        value = draw(st.one_of(st.sampled_from(NASTY_VALUES), _NOISE))
        lines.append(_line("noise" if kind == "noise" else kind, key, value, indent, around, comment))
    end = draw(st.sampled_from(_LINE_ENDS))
    text = end.join(lines) + draw(st.sampled_from(["", end]))
    if draw(st.integers(0, 5)) == 0:
        text = "\ufeff" + text
    return text


variables = st.one_of(
    st.none(),
    st.dictionaries(st.integers(1, 9), st.one_of(st.sampled_from(NASTY_VALUES), _NOISE), max_size=4),
    st.dictionaries(st.sampled_from([0, 10, -1]), st.just("x"), min_size=1, max_size=1),
)

#: file-level errors: no line to point at
_UNLOCATED = ("has no home command", "is not an Imalys chain", "is out of range")


def assert_located(e: ChainError, text: str, name: str = "fuzz.txt") -> None:
    """The error names the file, and the line (when there is one to name) holds what it blames."""
    assert type(e) is ChainError
    assert e.file is not None and e.file.name == name
    shown = str(e)
    shown.encode("utf-8")  # printable on any terminal: no lone surrogates
    assert len(shown.splitlines()) == 1 and "\x00" not in shown  # one line on any terminal
    assert e.hint, f"no hint how to fix it: {shown}"  # every user error says what to do
    if e.line is None:
        assert any(m in e.message for m in _UNLOCATED), shown
        assert e.parameter is None or "missing" in e.message
        return
    lines = split_lines(text.removeprefix("\ufeff"))
    assert 1 <= e.line <= max(1, len(lines)), shown
    if e.message.startswith("parameter '") or re.match(r"[A-Za-z_$][A-Za-z0-9_]* = ", e.message):
        assert e.parameter, f"an error about a parameter does not name it: {shown}"
    if e.parameter and lines:
        content = lines[e.line - 1].split("#", 1)[0].strip().lower()
        names = {e.parameter} | {k for keys in KEYS.values() for k, f in keys.items()
                                 if f == KEYS.get(e.command or "", {}).get(e.parameter, e.parameter)}
        # the line gives the parameter, or it is the command's line (a parameter that is missing)
        assert any(n in content for n in names) or len(content.split()) == 1, (shown, content)


def parse_or_located_error(text: str, variables=None, check_files=False):
    try:
        return parse_chain_text(text, "fuzz.txt", variables, check_files)
    except ChainError as e:
        assert_located(e, text)
        return None


# --------------------------------------------------------------------------- any text

@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_parses_or_fails_located(text):
    parse_or_located_error(text)
    parse_or_located_error("IMALYS\n" + text)
    parse_or_located_error("IMALYS\nhome\n" + text)


@settings(max_examples=350, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=chain_texts(), variables=variables)
def test_any_chain_shaped_text_parses_or_fails_located(text, variables):
    chain = parse_or_located_error(text, variables)
    if chain is not None:
        assert chain.commands and any(c.name == "home" for c in chain.commands)
        for cmd in chain.commands:
            assert 2 <= cmd.line <= len(split_lines(text.removeprefix("\ufeff")))
            for _key, line in cmd.param_lines.items():
                assert line >= cmd.line


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory):
    """A folder of things paths may name: archives, a frame, a folder, a Latin-1 named file."""
    root = tmp_path_factory.mktemp("fuzzroot")
    (root / "arch").mkdir()
    for n in ("LC08_L2SP_193026_20220515_20220520_02_T1.tar", "x.tar"):
        (root / "arch" / n).write_bytes(b"")
    (root / "frame.shp").write_bytes(b"")
    (root / "bonds.csv").write_text("id\n")
    (root / "folder.gpkg").mkdir()
    os.close(os.open(os.fsencode(root) + b"/caf\xe9.gpkg", os.O_CREAT | os.O_WRONLY))
    return root


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_file_checks_never_raise_anything_else(fuzz_root, data):
    """With file checks on, path values pointing at files, folders, nothing, Latin-1 names."""
    names = ["arch/*.tar", "arch/LC08_L2SP_193026_20220515.tar", "arch", "arch/", "arch/x.tar", "frame.shp",
             "folder.gpkg", "caf\xe9.gpkg", "caf\udce9.gpkg", "none.gpkg", "bonds.csv", "x" * 300 + ".tar",
             "arch/*/*.tar", "arch/[.tar", "bonds.csv/x.tar", "a\x00b.shp"]
    name = data.draw(st.sampled_from(names))
    key = data.draw(st.sampled_from(["select", "frame", "database", "archives", "target", "directory", "log"]))
    command = {"archives": "catalog", "directory": "home", "log": "home"}.get(key, data.draw(
        st.sampled_from(["import", "compile", "export", "reduce"])))
    value = f"{fuzz_root}/{name}"
    home = "" if command == "home" else f"home\n\tdirectory = {fuzz_root}/wd\n"
    lines = f"IMALYS\n{home}{command}\n\t{key} = {value}\n"
    if command == "import" and key != "select":
        lines += f"\tselect = {fuzz_root}/arch/x.tar\n"
    parse_or_located_error(lines, check_files=True)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120), prefix=st.sampled_from([b"", b"IMALYS\nhome\n", b"\xef\xbb\xbfIMALYS\r\nhome\r\n",
                                                             b"\xff\xfe", b"IMALYS\nhome\n\tlog = /tmp/"]))
def test_any_bytes_in_a_file_load_or_fail_located(tmp_path_factory, data, prefix):
    path = tmp_path_factory.getbasetemp() / "bytes-chain.txt"
    path.write_bytes(prefix + data)
    try:
        load_chain(path, check_files=False)
    except ChainError as e:
        assert_located(e, decode_text(prefix + data), name="bytes-chain.txt")


# --------------------------------------------------------------------------- valid chains parse as stated

def _number_text(draw, low: float, high: float) -> tuple[str, float]:
    x = draw(st.floats(low, high, allow_nan=False, allow_infinity=False))
    style = draw(st.sampled_from(["repr", ".3f", ".2e", "g", "plus"]))
    text = {"repr": repr(x), ".3f": f"{x:.3f}", ".2e": f"{x:.2e}", "g": f"{x:g}", "plus": f"+{x!r}"}[style]
    value = float(text)
    assume(low <= value <= high)
    return text, value


_TAILS = ["", " ", "\t", " # why", "\t#x=y"]


@st.composite
def valid_chains(draw):
    """(text, expected): a valid chain in random layout, and per command (name, line, {field: value})."""
    end = draw(st.sampled_from(_LINE_ENDS))
    lines = ["IMALYS" + draw(st.sampled_from(["", " [process chain]", "\tfuzz"]))]
    expected = []

    def pad():
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(st.sampled_from(["", "\t", "# a comment = with equals", "   # x", "\t\t#"])))

    def command(name, params):
        pad()
        lines.append(draw(st.sampled_from([name, name.upper(), name.capitalize(), f"  {name}\t", f"{name} # c"])))
        expected.append((name, len(lines), {}))
        for key, text, field_name, value in params:
            pad()
            k = draw(st.sampled_from([key, key.upper(), key.capitalize()]))
            tail = draw(st.sampled_from(_TAILS))
            lines.append(f"{draw(_SPACE)}{k}{draw(_SPACE)}={draw(_SPACE)}{text}{tail}")
            if field_name in expected[-1][2] and isinstance(expected[-1][2][field_name], list):
                expected[-1][2][field_name] = expected[-1][2][field_name] + value
            else:
                expected[-1][2][field_name] = value

    command("home", [("directory", "/tmp/fuzz-wd", "directory", Path("/tmp/fuzz-wd")),
                     ("clear", "yes", "clear", True)])
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["import", "compile", "reduce", "export"]))
        if kind == "import":
            q, qv = _number_text(draw, 0.0, 1.0)
            px, pxv = _number_text(draw, 0.5, 1000.0)
            params = [("select", "/data/a.tar", "select", ["/data/a.tar"]), ("quality", q, "quality", qv),
                      ("pixel", px, "pixel", pxv)]
            if draw(st.booleans()):
                params.append((draw(st.sampled_from(["warp", "crsystem"])), "EPSG:32632", "warp", 32632))
            command("import", draw(st.permutations(params)))
        elif kind == "compile":
            command("compile", [("period", "20220501 - 20220731", "period", None), ("target", "stack", "target", "stack")])
        elif kind == "reduce":
            t, tv = _number_text(draw, 0.0, 1.0)
            execute = draw(st.lists(st.sampled_from(["bestof", "median", "mean", "count"]), min_size=1, max_size=3,
                                    unique=True))
            command("reduce", [("select", "stack", "select", "stack")]
                    + [("execute", e.upper(), "execute", [e]) for e in execute] + [("threshold", t, "threshold", tv)])
        else:
            ending = draw(st.sampled_from([e for e in EXPORT_ENDINGS if e != ".zarr"]))
            out = f"/tmp/out/x{len(expected)}{ending}"  # each export its own file
            command("export", [("select", "bestof", "select", "bestof"), ("target", out, "target", Path(out))])
    pad()
    text = end.join(lines) + draw(st.sampled_from(["", end]))
    return text, expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=valid_chains())
def test_valid_chains_parse_to_their_values(case):
    text, expected = case
    chain = parse_chain_text(text, "valid.txt", check_files=False)
    assert [(c.name, c.line) for c in chain.commands] == [(n, line) for n, line, _ in expected]
    for cmd, (_, _, fields) in zip(chain.commands, expected):
        for name, want in fields.items():
            got = getattr(cmd.params, name)
            if want is None:
                continue
            assert got == want, (name, got, want)
            if isinstance(got, Number):  # the number prints exactly as written
                written = cmd.written(name)
                assert str(got) == got.raw == written == as_written(got)
                assert f"{got}" == written and float(written) == got


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=valid_chains(), encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
       title=st.sampled_from(["", " Ölfeld – Übersicht", " 日本"]))
def test_valid_chains_load_in_any_editor_encoding(tmp_path_factory, case, encoding, title):
    text, expected = case
    text = text.replace("IMALYS", "IMALYS" + title, 1)
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        assume(False)
    path = tmp_path_factory.getbasetemp() / "encoded-chain.txt"
    path.write_bytes(data)
    chain = load_chain(path, check_files=False)
    assert [(c.name, c.line) for c in chain.commands] == [(n, line) for n, line, _ in expected]


# --------------------------------------------------------------------------- the brief's cases, exactly

HOME = "IMALYS\nhome\n\tdirectory = /tmp/w\n"


def fails(text: str, **kwargs) -> ChainError:
    with pytest.raises(ChainError) as info:
        parse_chain_text(text, "c.txt", check_files=kwargs.pop("check_files", False), **kwargs)
    assert_located(info.value, text, "c.txt")
    return info.value


@pytest.mark.parametrize("value, hint", [
    ("nan", "must be a finite number; must be a fraction between 0 and 1 (e.g. 0.7)"),
    ("-Infinity", "must be a finite number; must be a fraction between 0 and 1 (e.g. 0.7)"),
    ("1e999", "must be a finite number; must be a fraction between 0 and 1 (e.g. 0.7)"),
    ("1" * 101, "must be a number (this one is more than 100 characters long); must be a fraction between 0 and 1 (e.g. 0.7)"),
    ("1e308", "must be a fraction between 0 and 1 (e.g. 0.7)"),
])
def test_nan_inf_and_huge_numbers(value, hint):
    e = fails(HOME + f"import\n\tselect = a.tar\n\tquality = {value}\n")
    assert (e.line, e.command, e.parameter, e.hint) == (6, "import", "quality", hint)


def test_huge_whole_numbers_say_so():
    e = fails(HOME + "\tworkers = " + "9" * 5000 + "\n")
    assert (e.line, e.parameter) == (4, "workers")
    assert e.hint.startswith("is more than 1024 workers")
    assert len(str(e)) < 400  # the value is shortened in the message
    e = fails(HOME + "import\n\tselect = a.tar\n\twarp = 12345678\n")
    assert e.hint == "must be an EPSG code (e.g. 32632 or EPSG:32632)"
    assert parse_chain_text(HOME + "\tworkers = 0016\n", "c.txt", check_files=False).home.workers == 16


def test_variables_missing_or_empty():
    e = fails(HOME + "export\n\tselect = $1\n\ttarget = /x/y.tif\n")
    assert str(e) == ("c.txt:5: export: select = $1: variable $1 is not defined — define it under replace "
                      "($1 = value) or give it in the repeat list (column 1)")
    e = fails(HOME + "export\n\tselect = $1\n\ttarget = /x/y.tif\n", variables={1: "  "})
    assert str(e) == ("c.txt:5: export: select = $1: the value is empty once the variables are put in — give the "
                      "variable a value (replace or the repeat list) or drop the line")
    e = fails(HOME + "home2\n")
    assert e.message == "command 'home2' is not known" and e.line == 4


def test_empty_values_repeated_parameters_and_order():
    assert fails(HOME + "import\n\tselect = a.tar\n\tquality =\t# none\n").message == "parameter 'quality' has no value"
    e = fails(HOME + "import\n\tselect = a.tar\n\tQuality = 0.5\n\tquality = 0.6\n")
    assert e.message == "parameter 'quality' given twice (lines 6 and 7)" and e.line == 7
    e = fails("IMALYS\n\tquality = 0.5\nhome\n")
    assert (e.line, e.message) == (2, "parameter 'quality' comes before any command")


def test_bom_crlf_and_editor_line_ends():
    text = "\ufeffIMALYS\r\nhome\r\n\tdirectory = /tmp/w\r\nreduce\r\n\tselect = x\r\n\texecute = mean\r\n"
    assert parse_chain_text(text, "c.txt", check_files=False).commands[1].line == 4
    # a form feed or U+2028 inside a line does not shift the line numbers an editor shows
    e = fails("IMALYS\nhome\x0c\n\tdirectory = /tmp/w\u2028x\nreduce\n\tselect = x\n\texecute = bad\n")
    assert e.line == 6 and e.parameter == "execute"
    # old Mac line ends
    assert parse_chain_text("IMALYS\rhome\r\tclear = yes\r", "c.txt").home.clear is True


def test_control_characters_are_refused_and_shown():
    e = fails(HOME + "import\n\tselect = a\x00b.tar\n")
    assert str(e) == r"c.txt:5: import: select = a\x00b.tar — a path must not hold control characters (found U+0000)"


# --------------------------------------------------------------------------- numbers as written

def test_numbers_keep_the_text_as_written():
    c = parse_chain_text(HOME + "import\n\tselect = a.tar\n\tquality = 0.999\n\tpixel = 3e1\n\tfactor = 2.75e-5\n"
                         "\toffset = -0.20\n", "c.txt", check_files=False)
    cmd = c.commands[1]
    p = cmd.params
    assert p.quality == 0.999 and isinstance(p.quality, float) and isinstance(p.quality, Number)
    assert (str(p.quality), f"{p.quality}", "%s" % p.quality, p.quality.raw) == ("0.999",) * 4  # noqa: UP031 (%-formatting of the parsed number is what is tested)
    assert "%.2f" % p.quality == "1.00" and f"{p.quality:.3f}" == "0.999"  # noqa: UP031 (formats still work)
    assert (str(p.pixel), p.pixel) == ("3e1", 30.0) and str(p.offset) == "-0.20" and str(p.factor) == "2.75e-5"
    assert cmd.written("quality") == "0.999" and cmd.written("pixel") == "3e1" and cmd.written("cover") is None
    assert type(p.quality * 2) is float and p.quality * 2 == 1.998
    back = pickle.loads(pickle.dumps(p.quality))
    assert (back, back.raw) == (0.999, "0.999")
    assert as_written(0.1 + 0.2) == "0.30000000000000004" and as_written(3) == "3" and as_written(p.offset) == "-0.20"
    import json

    import numpy as np

    assert json.dumps({"q": p.quality}) == '{"q": 0.999}' and np.float32(p.quality) == np.float32(0.999)
    # an alias is found under either name
    w = parse_chain_text(HOME + "import\n\tselect = a.tar\n\tcrsystem = EPSG:3035\n", "c.txt", check_files=False)
    assert w.commands[1].written("warp") == "EPSG:3035" == w.commands[1].written("crsystem")


# --------------------------------------------------------------------------- folders and Latin-1 names

def test_folders_named_where_files_belong(tmp_path, write_chain, real_scene, synthetic_archives):
    folder = synthetic_archives.folder
    e = fails(HOME + f"import\n\tselect = {folder}\n", check_files=True)
    assert e.parameter == "select" and e.hint == f"is a folder, expected an archive file; to take every archive in it write {folder}/*.tar"
    ok = parse_chain_text(HOME + f"import\n\tselect = {folder}/*.tar\n", "c.txt")
    assert ok.commands[1].params.select == [f"{folder}/*.tar"]
    e = fails(HOME + f"import\n\tselect = {folder}/*.tar\n\tframe = {real_scene}\n", check_files=True)
    assert e.parameter == "frame" and e.hint.startswith("is a folder, expected a vector file (.shp, .gpkg")
    e = fails(HOME + f"catalog\n\tarchives = {folder}\n\ttarget = {tmp_path}/bonds.csv\n", check_files=True)
    assert e.hint == f"is a folder; to take every archive in it write {folder}/*.tar"
    e = fails(HOME + f"catalog\n\tarchives = {synthetic_archives.archives[0]}/*.tar\n\ttarget = {tmp_path}/b.csv\n",
              check_files=True)
    assert e.hint == f"{synthetic_archives.archives[0]} is a file, expected the folder that holds the archives"
    e = fails(HOME + f"export\n\tselect = bestof\n\ttarget = {tmp_path}\n", check_files=True)
    assert e.hint == f"is a folder, expected a file name; write e.g. {tmp_path}/bestof.tif"
    # the chain file and the variable list
    with pytest.raises(ChainError) as info:
        load_chain(tmp_path)
    assert str(info.value) == f"{tmp_path.name}: is a folder, expected a chain file — give the chain file inside {tmp_path}"
    chain = write_chain(HOME)
    with pytest.raises(ChainError) as info:
        load_chain_rows(chain, tmp_path)
    assert info.value.message == "is a folder, expected a variable list"
    with pytest.raises(ChainError, match="variable list not found"):
        read_variable_rows(tmp_path / "none.txt")


@pytest.fixture
def latin1_files(tmp_path):
    """A folder and a frame whose names on disk hold the Latin-1 byte é (0xE9), not UTF-8."""
    base = os.fsencode(tmp_path)
    os.mkdir(base + b"/R\xe9sultats")
    os.close(os.open(base + b"/R\xe9sultats/cadre.gpkg", os.O_CREAT | os.O_WRONLY))
    return tmp_path


def test_latin1_byte_in_a_path_finds_the_file(latin1_files, write_chain):
    tmp = os.fsencode(latin1_files)
    stored = os.fsdecode(tmp + b"/R\xe9sultats/cadre.gpkg")
    assert os.path.isfile(stored)
    (latin1_files / "a.tar").write_bytes(b"")
    head = b"IMALYS \xc9t\xe9\nhome\n\tdirectory = /tmp/w\nimport\n\tselect = " + tmp + b"/a.tar\n\tframe = "
    # the chain saved in Latin-1 (the byte as is), and in UTF-8 (the letter é): both find the stored file
    for raw in (head + tmp + b"/R\xe9sultats/cadre.gpkg\n",
                head.replace(b"\xc9t\xe9", b"") + (os.fsdecode(tmp) + "/Résultats/cadre.gpkg\n").encode("utf-8")):
        c = load_chain(write_chain(raw, "frame.txt"))
        assert str(c.commands[1].params.frame) == stored
    # a folder still to be written into (export) is found by its stored name too
    c = load_chain(write_chain(head.replace(b"\tframe = ", b"") + b"export\n\tselect = bestof\n\ttarget = " + tmp
                               + b"/R\xe9sultats/new.tif\n", "export.txt"))
    assert str(c.commands[2].params.target) == os.fsdecode(tmp + b"/R\xe9sultats/new.tif")


def test_latin1_names_in_messages_are_printable(tmp_path, write_chain):
    path = write_chain(b"IMALYS\nhome\n\tdirectory = /tmp/w\nimport\n\tselect = a.tar\n\tframe = "
                       + os.fsencode(tmp_path) + b"/\x81none\xe9.gpkg\n")
    with pytest.raises(ChainError) as info:
        load_chain(path, check_files=True)
    assert info.value.parameter == "select"  # the missing archive is named first
    (tmp_path / "a.tar").write_bytes(b"")
    with pytest.raises(ChainError) as info:
        parse_chain_text(decode_text(path.read_bytes()).replace("a.tar", f"{tmp_path}/a.tar"), "c.txt")
    e = info.value
    assert (e.line, e.parameter, e.hint) == (6, "frame", "the file does not exist")
    # the line is not UTF-8, so it is read as cp1252: 0xE9 is é there, 0x81 means nothing and stays a byte
    assert str(e) == f"c.txt:6: import: frame = {tmp_path}/\\x81noneé.gpkg — the file does not exist"
    with open(os.devnull, "w", encoding="utf-8") as null:  # printing it must not raise
        print(str(e), file=null)


def test_latin1_archive_names_resolve(tmp_path):
    from imalys_stac.chain import resolve_archive_pattern

    base = os.fsencode(tmp_path)
    os.mkdir(base + b"/archiv\xe9")
    name = b"/archiv\xe9/LC08_L2SP_193026_20220515_20220520_02_T1.tar"
    os.close(os.open(base + name, os.O_CREAT | os.O_WRONLY))
    stored = Path(os.fsdecode(base + name))
    for spelling in (f"{tmp_path}/archivé/*.tar", f"{tmp_path}/archivé/LC08_L2SP_193026_20220515.tar",
                     os.fsdecode(base + b"/archiv\xe9/*.tar")):
        assert resolve_archive_pattern(spelling) == [stored], spelling


# --------------------------------------------------------------------------- repeat lists

REPEAT_CHAIN = ("IMALYS\nreplace\n\t$2 = 0.7\nhome\n\tdirectory = {wd}\nimport\n\tselect = {folder}/$1\n"
                "\tquality = $2\nexport\n\tselect = bestof\n\ttarget = {out}/$3.tif\n")


def test_every_row_is_checked_before_the_first_runs(tmp_path, write_chain, synthetic_archives):
    names = [a.name for a in synthetic_archives.archives]
    chain = write_chain(REPEAT_CHAIN.format(wd=tmp_path / "wd", folder=synthetic_archives.folder, out=tmp_path))
    rows = tmp_path / "rows.txt"
    rows.write_text(f"# archive\tquality\tname\n{names[0]}\t\ta\n\n{names[1]}\t0.8\tb\n{names[2]}\t1.4\tc\n")
    with pytest.raises(ChainError) as info:
        load_chain_rows(chain, rows)
    e = info.value
    assert (e.line, e.parameter, e.rows, e.row_line) == (8, "quality", rows, 5)
    assert str(e) == (f"chain.txt:8: import: quality = 1.4 — must be a fraction between 0 and 1 (e.g. 0.7) "
                      f"[variables line 5 of {rows}]")
    rows.write_text(f"{names[0]}\t\ta\n{names[1]}\t0.8\tb\n")
    runs = load_chain_rows(chain, rows)
    assert [(r.line, r.values) for r, _ in runs] == [(1, {1: names[0], 3: "a"}), (2, {1: names[0 + 1], 2: "0.8", 3: "b"})]
    assert [str(c.find("import")[0].params.quality) for _, c in runs] == ["0.7", "0.8"]
    # two rows writing one file: the second would replace the first
    rows.write_text(f"{names[0]}\t\ta\n{names[1]}\t0.8\ta\n")
    with pytest.raises(ChainError) as info:
        load_chain_rows(chain, rows)
    assert (info.value.line, info.value.row_line, info.value.parameter) == (11, 2, "target")
    assert "the run of line 1 exports to the same file" in info.value.message
    rows.write_text("# only comments\n\n")
    with pytest.raises(ChainError, match="holds no row"):
        load_chain_rows(chain, rows)
    [(row, single)] = load_chain_rows(write_chain(HOME, "plain.txt"))
    assert row is None and single.home.directory == Path("/tmp/w")


def test_cli_runs_no_row_when_a_later_row_is_bad(tmp_path, write_chain, synthetic_archives, monkeypatch, capsys):
    import imalys_stac.commands as commands
    from imalys_stac.cli import main

    ran = []
    monkeypatch.setattr(commands, "run_chain", lambda chain, **kw: ran.append(chain))
    names = [a.name for a in synthetic_archives.archives]
    chain = write_chain(REPEAT_CHAIN.format(wd=tmp_path / "wd", folder=synthetic_archives.folder, out=tmp_path))
    rows = tmp_path / "rows.txt"
    rows.write_text(f"{names[0]}\t\ta\n{names[1]}\t0.8\tb\nLC08_none.tar\t0.8\tc\n")
    assert main(["run", str(chain), "--vars", str(rows)]) == 1
    assert ran == []
    err = capsys.readouterr().err
    assert err.startswith("error: chain.txt:7: import: select = ") and err.rstrip().endswith(f"[variables line 3 of {rows}]")
    rows.write_text(f"{names[0]}\t\ta\n{names[1]}\t0.8\tb\n")
    assert main(["run", str(chain), "--vars", str(rows)]) == 0
    assert [str(c.find("export")[0].params.target.name) for c in ran] == ["a.tif", "b.tif"]


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=120), ending=st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_variable_list_reads_or_fails_located(tmp_path_factory, text, ending):
    path = tmp_path_factory.getbasetemp() / "fuzz-rows.txt"
    path.write_bytes(text.replace("\n", ending).encode("utf-8", "surrogatepass"))
    try:
        rows = read_variable_rows(path)
    except ChainError as e:
        assert e.file == path and e.line is not None and "columns" in e.message
        return
    for row in rows:
        assert row.values and set(row.values) <= set(range(1, 10))
        assert all(v == v.strip() and v for v in row.values.values())


@pytest.mark.skipif(sys.platform != "linux", reason="file names as bytes")
def test_chain_file_named_with_latin1_bytes(tmp_path):
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/cha\xeene.txt"))
    path.write_text("IMALYS\nhome\n\tclear = maybe\n")
    with pytest.raises(ChainError) as info:
        load_chain(path)
    assert str(info.value) == r"cha\xeene.txt:3: home: clear = maybe — must be true or false (also yes/no, 1/0)"


# --------------------------------------------------------------------------- smaller robustness cases

@settings(max_examples=150, deadline=None)
@given(text=st.one_of(st.text(max_size=30), st.from_regex(r"\s*[0-9]{8}\s*[-–— ]?\s*[0-9]{8}\s*", fullmatch=True)))
def test_any_period_text_parses_or_names_the_form(text):
    from imalys_stac.chain import Period

    try:
        p = Period.parse(text)
    except ChainError as e:
        assert e.parameter == "period" and "YYYYMMDD" in str(e)
        return
    assert Period.parse(str(p)) == p and p.start <= p.end
    assert len(str(p)) == 17


def test_period_round_trip_before_year_1000():
    from imalys_stac.chain import Period

    p = Period.parse("00010101-00990101")
    assert str(p) == "00010101-00990101" and Period.parse(str(p)) == p
    with pytest.raises(ChainError, match="must be YYYYMMDD"):
        Period.parse("٢٠٢٢٠٥٠١-٢٠٢٢٠٧٣١")  # digits of another script


def test_measured_numbers_shown_against_a_limit():
    from imalys_stac.chain import as_measured

    q = parse_chain_text(HOME + "import\n\tselect = a\n\tquality = 0.999\n", "c.txt", check_files=False).commands[1]
    limit = q.params.quality
    assert f"quality {as_measured(0.919, limit)} < {as_written(limit)}" == "quality 0.919 < 0.999"
    assert as_measured(0.99899, limit) == "0.99899"  # 0.999 would hide that it is below
    assert as_measured(0.9991, limit) == "0.9991" and as_measured(0.5, 0.5) == "0.500"


@settings(max_examples=200, deadline=None)
@given(value=st.floats(0, 1), limit=st.floats(0, 1))
def test_as_measured_never_hides_the_comparison(value, limit):
    from imalys_stac.chain import as_measured

    shown = float(as_measured(value, limit))
    assert (shown < limit) == (value < limit) and (shown > limit) == (value > limit)


def test_home_directory_that_is_a_file(tmp_path):
    file = tmp_path / "wd"
    file.write_text("")
    e = fails(f"IMALYS\nhome\n\tdirectory = {file}\n", check_files=True)
    assert (e.line, e.parameter, e.hint) == (3, "directory", "is a file, expected a folder (it is made when it does not exist)")
    assert parse_chain_text(f"IMALYS\nhome\n\tdirectory = {tmp_path}/new\n", "c.txt").home.directory == tmp_path / "new"


def test_memory_sizes_bounded():
    e = fails("IMALYS\nhome\n\tmemory = " + "9" * 400 + "GB\n")
    assert e.parameter == "memory" and e.hint.startswith("must be a memory size")


def test_errors_keep_their_row_across_processes():
    e = ChainError("m", file="c.txt", line=3, command="import", parameter="quality", hint="h").in_row("rows.txt", 7)
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == str(e) == "c.txt:3: import: m — h [variables line 7 of rows.txt]"
    assert (back.rows, back.row_line) == (Path("rows.txt"), 7)
    assert str(e.located(file="other.txt", line=1)) == str(e)


ROW_VALUES = ["0.5", "0.999", "1.4", "nan", "", " ", "a", "x.tar", "ab", "$1", "#", "é", "1e-3"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.lists(st.sampled_from(ROW_VALUES), min_size=0, max_size=4), min_size=0, max_size=6),
       comments=st.lists(st.sampled_from(["", "# note", "   "]), max_size=3))
def test_rows_checked_up_front_equal_rows_checked_one_by_one(tmp_path_factory, rows, comments):
    """load_chain_rows accepts a list iff every row loads on its own, and then gives the same
    chains; otherwise it names the first row (by its line in the list) that does not."""
    base = tmp_path_factory.getbasetemp()
    chain = base / "rows-chain.txt"
    chain.write_text("IMALYS\nreplace\n\t$2 = 0.7\nhome\n\tdirectory = /tmp/w\nimport\n\tselect = /data/$1\n"
                     "\tquality = $2\nexport\n\tselect = bestof\n\ttarget = /out/$3.tif\n")
    listing = base / "rows.txt"
    lines = comments + ["\t".join(r) for r in rows]
    listing.write_text("\n".join(lines) + "\n")
    table = read_variable_rows(listing)
    first_bad, seen, expected_chains = None, {}, []
    for row in table:
        try:
            c = load_chain(chain, variables=row.values, check_files=False)
        except ChainError:
            first_bad = row.line
            break
        target = c.find("export")[0].params.target
        if target in seen:
            first_bad = row.line
            break
        seen[target] = row.line
        expected_chains.append(c)
    try:
        runs = load_chain_rows(chain, listing, check_files=False)
    except ChainError as e:
        if not table:
            assert e.file == listing and "holds no row" in e.message
        else:
            assert e.rows == listing and e.row_line == first_bad and e.line is not None
        return
    assert first_bad is None and table
    assert [r.line for r, _ in runs] == [r.line for r in table]
    for (_, got), want in zip(runs, expected_chains):
        assert [c.params for c in got.commands] == [c.params for c in want.commands]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=chain_texts())
def test_cli_check_answers_ok_or_one_error_line(tmp_path_factory, text):
    """`imalys-stac check` on any chain text: exit 0 with an ok line, or exit 1 with one `error:` line."""
    import contextlib
    import io

    from imalys_stac.cli import main

    path = tmp_path_factory.getbasetemp() / "cli-fuzz.txt"
    try:  # lone surrogates: as the bytes they stand for, else as invalid UTF-8
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", str(path)])
    if code == 0:
        assert out.getvalue().startswith(f"{path}: ok (") and not err.getvalue()
    else:
        assert code == 1
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cli-fuzz.txt"), err.getvalue()


def test_latin1_value_in_a_variable_list_finds_the_file(latin1_files, write_chain):
    """A repeat list saved in Latin-1 whose value names a folder stored with the byte 0xE9."""
    tmp = os.fsencode(latin1_files)
    chain = write_chain(b"IMALYS\nhome\n\tdirectory = /tmp/w\nimport\n\tselect = " + tmp + b"/a.tar\n\tframe = "
                        + tmp + b"/$1/cadre.gpkg\n")
    (latin1_files / "a.tar").write_bytes(b"")
    rows = latin1_files / "rows.txt"
    rows.write_bytes(b"R\xe9sultats\n")
    [(row, c)] = load_chain_rows(chain, rows)
    assert row.values == {1: "Résultats"}
    assert str(c.commands[1].params.frame) == os.fsdecode(tmp + b"/R\xe9sultats/cadre.gpkg")


def test_two_exports_to_one_file_refused():
    e = fails(HOME + "export\n\tselect = bestof\n\ttarget = /out/x.tif\nexport\n\tselect = median\n\ttarget = /out/../out/x.tif\n")
    assert (e.line, e.command, e.parameter) == (9, "export", "target")
    assert e.message == ("target = /out/../out/x.tif is written twice: the export at line 4 writes the same file "
                         "and this one would replace it")


def test_path_typos_that_would_make_strange_folders():
    e = fails("IMALYS\nhome\n\tdirectory = ~ESIS_no_such_user/wd\n")
    assert e.hint == "~ESIS_no_such_user is not a user on this machine; for your home folder write ~/ESIS_no_such_user"
    e = fails("IMALYS\nhome\n\tdirectory = /data/${PROJECT/wd\n")
    assert e.hint == "'${' has no closing '}': write ${NAME} for an environment variable"


def test_unreadable_chain_file(write_chain, monkeypatch):
    path = write_chain(HOME)

    real_open = os.open

    def refuse(file, *args, **kwargs):
        if os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)  # the tests may run as root, who reads anything
    with pytest.raises(ChainError) as info:
        load_chain(path)
    assert info.value.message == "cannot read the chain file: Permission denied"
    assert info.value.hint == f"check that {path} is readable by this user"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(string.ascii_letters + string.digits + "#_-.,+=@%&()"), min_size=1, max_size=30),
       st.sampled_from(["", " # a comment", "\t#comment", "  #"]))
def test_a_hash_inside_a_word_is_kept_and_one_after_whitespace_starts_a_comment(name, comment):
    """Issue 20: `run#2.tif` was cut at '#'. The value is exactly the text up to the first '#'
    that starts the line or follows whitespace (here: the comment appended after a blank)."""
    assume(not name.startswith("#"))
    text = HOME + f"export\n\tselect = bestof\n\ttarget = /r/{name}.tif{comment}\n"
    target = parse_chain_text(text, "c.txt", check_files=False).commands[-1].params.target
    assert target == Path(f"/r/{name}.tif")
