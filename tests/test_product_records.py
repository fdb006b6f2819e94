"""Product records (imalys_stac.product_records): every record survives record → item properties →
record (hypothesis, through JSON as the items are stored); the properties keep the names, order and
JSON values the items had before the records (a hand-written item of each kind as the reference);
no module outside the records module spells an ``imalys:`` property name."""
from __future__ import annotations

import ast
import json
from datetime import datetime, timezone
from pathlib import Path

import pystac
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imalys_stac import product_records as pr
from imalys_stac.product_records import (
    CompileRecord,
    CompositeRecord,
    ExportRecord,
    ImportRecord,
    Provenance,
    RecordError,
    record_of,
)

PACKAGE = Path(pr.__file__).parent


def stored(props: dict) -> dict:
    """The properties as a product item stores them: None values dropped, through JSON."""
    return json.loads(json.dumps({k: v for k, v in props.items() if v is not None}))


names = st.text(st.characters(whitelist_categories=("L", "Nd"), whitelist_characters="_-."), min_size=1, max_size=24)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
opt_text = st.none() | st.text(max_size=40)

import_records = st.builds(
    ImportRecord,
    sources=st.lists(names, min_size=1, max_size=4).map(tuple),
    bands=st.lists(names, min_size=1, max_size=7).map(tuple),
    factor=st.lists(finite, max_size=7).map(tuple),
    offset=st.lists(finite, max_size=7).map(tuple),
    calibration=st.sampled_from(["given", "metadata", "auto"]),
    mask=st.sampled_from([pr.FILL_ONLY, "clear", "strict", "scl"]),
    resampling=st.sampled_from(["nearest", "bilinear", "cubic"]),
    quality=st.none() | st.floats(0, 1),
    cover=st.none() | st.floats(0, 1),
    frame=opt_text,
    region_wkt=opt_text,
    region_epsg=st.none() | st.integers(1024, 32767),
    platform=st.none() | names,
    instruments=st.none() | st.lists(names, max_size=3).map(tuple),
    constellation=st.none() | names,
)
compile_records = st.builds(
    CompileRecord,
    inputs=st.lists(names, min_size=1, max_size=6).map(tuple),
    bands=st.none() | st.lists(names, min_size=1, max_size=7).map(tuple),
    frame=opt_text,
    frame_wkt=opt_text,
    layers=st.none() | st.integers(1, 500),
)
dates = st.dates().map(lambda d: d.isoformat())
composite_records = st.builds(
    CompositeRecord,
    process=st.sampled_from(["bestof", "median", "mean", "NirV", "variance"]),
    inputs=st.lists(names, min_size=1, max_size=2).map(tuple),
    dates=st.lists(dates, max_size=8).map(tuple),
    bands=st.lists(names, min_size=1, max_size=7).map(tuple),
    qualities=st.lists(st.floats(0, 1), max_size=8).map(tuple),
    preserve=st.none() | st.just("bands"),
    threshold=st.none() | st.floats(0, 1),
    layers=st.none() | st.integers(1, 500),
)
json_values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=10),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=6)
provenances = st.builds(
    Provenance,
    product=names, working_directory=st.text(max_size=40), archive_items=st.lists(names, max_size=4).map(tuple),
    chain=st.text(max_size=40), chain_text=opt_text,
    commands=st.lists(st.dictionaries(st.sampled_from(["command", "line", "parameters"]), json_values), max_size=3).map(tuple),
    lineage=st.lists(st.dictionaries(st.sampled_from(["product", "kind", "command"]), json_values), max_size=3).map(tuple),
    package=st.text(max_size=20), exported=st.datetimes().map(lambda t: t.isoformat(timespec="seconds")),
)
export_records = st.builds(ExportRecord, provenance=provenances, fingerprint=st.text("0123456789abcdef", min_size=32, max_size=32),
                           file=st.none() | st.tuples(st.integers(0, 2**40), st.integers(0, 2**62)))


@given(st.one_of(import_records, compile_records, composite_records))
def test_product_record_round_trips_through_its_item_properties(record):
    props = stored(record.to_properties())
    again = type(record).from_properties(props)
    assert again == record
    assert record_of(props) == record  # dispatch on imalys:kind
    assert again.to_properties() == record.to_properties()
    # the stored values are plain JSON (lists, not tuples): written twice, the same text
    assert json.dumps(stored(again.to_properties())) == json.dumps(props)


@settings(max_examples=100, deadline=None)
@given(export_records)
def test_export_record_round_trips_through_its_item_properties(record):
    product = {pr.KIND: "reduce", pr.FINGERPRINT: "0" * 32, "title": "x"}
    props = json.loads(json.dumps({**product, **record.to_properties()}))
    assert ExportRecord.from_properties(props) == record
    assert list(props)[:3] == [pr.KIND, pr.FINGERPRINT, "title"]  # the product's fingerprint is replaced in place


def test_a_record_refuses_an_item_of_another_kind():
    props = stored(CompileRecord(inputs=("a", "b")).to_properties())
    with pytest.raises(RecordError, match="compile product, not import"):
        ImportRecord.from_properties(props)
    with pytest.raises(RecordError, match="not a product"):
        record_of({"title": "an archive item"})
    with pytest.raises(RecordError, match="no imalys:provenance"):
        ExportRecord.from_properties(props)


def test_import_properties_are_those_the_items_always_had():
    """The reference: an import item's properties as written before the records (names, order,
    JSON values), typed out by hand."""
    rec = ImportRecord(sources=("LC08_L2SP_193026_20220515_20220519_02_T1",), bands=("blue", "red"),
                       factor=(2.75e-05, 2.75e-05), offset=(-0.2, -0.2), calibration="given", mask="clear",
                       resampling="nearest", quality=0.981234, cover=1.0, frame="/f/frame.gpkg", region_wkt=None,
                       region_epsg=None, platform="landsat-8", instruments=("oli", "tirs"), constellation=None)
    expected = {
        "imalys:kind": "import", "platform": "landsat-8", "instruments": ["oli", "tirs"],
        "imalys:quality": 0.981234, "imalys:cover": 1.0, "imalys:sources": ["LC08_L2SP_193026_20220515_20220519_02_T1"],
        "imalys:bands": ["blue", "red"], "imalys:factor": [2.75e-05, 2.75e-05], "imalys:offset": [-0.2, -0.2],
        "imalys:calibration": "given", "imalys:mask": "clear", "imalys:resampling": "nearest",
        "imalys:frame": "/f/frame.gpkg", "imalys:nodata": "nan", "imalys:dtype": "float32",
    }
    assert json.dumps(stored(rec.to_properties())) == json.dumps(expected)
    assert ImportRecord.from_properties(dict(expected, **{"imalys:mask": "fill-only"})).rule is None
    assert rec.rule == "clear"


def test_compile_and_reduce_items_carry_the_properties_they_always_had():
    """Through the product items themselves (products.compile_item / derived_item): the same
    imalys:* properties in the same order as before, and the record back from the item file."""
    from imalys_stac.cube.grid import Grid
    from imalys_stac.products import compile_item, derived_item
    from imalys_stac.stac import item_from_dict

    grid = Grid(32633, (300000.0, 5600000.0, 300300.0, 5600300.0), 30.0)
    inputs = []
    for i, day in enumerate((15, 31)):
        props = stored(ImportRecord(sources=(f"s{i}",), bands=("red", "nir08"), factor=(1.0, 1.0), offset=(0.0, 0.0)).to_properties())
        inputs.append(pystac.Item(f"LC08_193026_202205{day}", None, None, datetime(2022, 5, day, tzinfo=timezone.utc), props))
    stack = compile_item("compile", inputs, grid, "POLYGON ((0 0, 1 0, 1 1, 0 0))", "frame.gpkg")
    imalys = {k: v for k, v in stack.to_dict()["properties"].items() if k.startswith("imalys:") and k != "imalys:version"}
    assert json.dumps(imalys) == json.dumps({
        "imalys:kind": "compile", "imalys:inputs": ["LC08_193026_20220515", "LC08_193026_20220531"],
        "imalys:frame": "frame.gpkg", "imalys:frame_wkt": "POLYGON ((0 0, 1 0, 1 1, 0 0))", "imalys:layers": 2,
        "imalys:bands": ["red", "nir08"]})
    assert stack.properties["description"] == "imalys-stac compile product compile: stack of 2 images, 2022-05-15 to 2022-05-31"
    rec = CompositeRecord(process="bestof", inputs=("compile",), dates=("2022-05-15", "2022-05-31"), bands=("red", "nir08"),
                          qualities=(0.9, 0.5), preserve="bands", threshold=None)
    item = derived_item("bestof", rec, stack, grid, {pr.COMMAND: {"line": 3}, pr.FINGERPRINT: "f" * 32})
    d = json.loads(json.dumps(item.to_dict(include_self_link=False)))
    assert [k for k in d["properties"] if k.startswith("imalys:")] == [
        "imalys:kind", "imalys:process", "imalys:preserve", "imalys:inputs", "imalys:dates", "imalys:layers",
        "imalys:bands", "imalys:qualities", "imalys:command", "imalys:fingerprint", "imalys:version"]
    assert d["properties"]["description"] == "imalys-stac reduce product bestof: bestof of compile, 2022-05-15 to 2022-05-31"
    assert CompositeRecord.from_item(item_from_dict(d)) == rec
    assert CompileRecord.from_item(item_from_dict(stack.to_dict())) == CompileRecord(
        inputs=("LC08_193026_20220515", "LC08_193026_20220531"), bands=("red", "nir08"), frame="frame.gpkg",
        frame_wkt="POLYGON ((0 0, 1 0, 1 1, 0 0))")


def _property_literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that are (or begin with) an imalys: property name; docstrings
    and messages that mention one inside a sentence do not count."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("imalys:")]


#: modules allowed to spell an imalys: property name, and why
ALLOWED: dict[str, str] = {
    "product_records.py": "the one place the names are defined",
}


def test_no_module_outside_the_records_spells_a_property_name():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in ALLOWED:
            continue
        hits = _property_literals(path)
        if hits:
            found[rel] = hits
    assert not found, f"use the constants of imalys_stac.product_records instead: {found}"
    # the scan itself finds what it looks for
    assert len(_property_literals(PACKAGE / "product_records.py")) >= 29
