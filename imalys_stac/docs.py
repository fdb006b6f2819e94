"""The chain reference (docs/chains.md), generated from the command models.

`python -m imalys_stac.docs` rewrites docs/chains.md; `python -m imalys_stac.docs --check` exits 1
when the file is not what the models give (the test suite checks the same). Names, types, defaults,
aliases, what may repeat and what is required come from `imalys_stac.chain.models` and the
registry (reduce processes, export formats); the sentences come from `DESCRIPTIONS` below, which
must describe every parameter the models declare and nothing else — so the page cannot drift from
the parser.
"""
from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path

#: command → its one-paragraph description; (command, parameter) → the parameter's.
#: "new" marks what the original Imalys does not have.
COMMAND_TEXT = {
    "replace": "Chain variables: `$1 = c7934` … `$9 = value`, used anywhere in later values. A repeat "
               "list (`r_Imalys CHAIN LIST`, `run --vars LIST`) overrides them row by row.",
    "home": "The working directory and the run's resources. Mandatory, and the first command (after "
            "`replace`).",
    "catalog": "Archives → a static STAC catalog (items with footprints, dates, cloud cover, projection, "
               "scale/offset, QA band, thumbnail; read in place, nothing extracted), its search index "
               "`items.parquet`, and for a `.csv` target the Imalys table `bonds.csv`.",
    "import": "A search (archives by name, a catalog, or a STAC API) whose hits become one product per "
              "acquisition: cropped to the frame, masked with the quality band, calibrated, same-day tiles "
              "merged. Products are lazy recipes over the archive members.",
    "compile": "Imported images on one grid: a lazy stack product (named `compile` unless `target` says "
               "otherwise), or with `format = int16` the stack stored as scaled integers.",
    "reduce": "Per-pixel reductions of a stack or image, computed on Dask; each result is a COG product "
              "named after its process (or `target`).",
    "export": "A product out of the working directory, in the format the target's ending names, with a "
              "STAC item (provenance) beside it.",
}

DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("home", "directory"): "Working directory (created). Results go here under the name of the command that made them.",
    ("home", "clear"): "Empty it first — only a folder imalys-stac made (it holds a `.imalys-stac` marker) or an empty one.",
    ("home", "log"): "Folder for the run log (default: the working directory).",
    ("home", "scheduler"): "**New.** Where Dask computes: `local` (in-process threads, default), `processes`, "
                           "`tcp://host:8786`, `kubernetes` (see [clusters](clusters.md)). `IMALYS_SCHEDULER` overrides it.",
    ("home", "workers"): "**New.** Number of workers (threads for `local`, processes for `processes`).",
    ("home", "memory"): "**New.** Memory per worker, e.g. `4GB` (at least 256 MiB).",
    ("catalog", "archives"): "Archives: a folder or a wildcard pattern (only that folder, e.g. `~/ESIS/archives/*.tar`).",
    ("catalog", "target"): "A folder or `…/catalog.json` → STAC catalog; `….csv` → the Imalys table (+ `.csvt`, `.prj`) "
                           "with the STAC catalog in a folder of the same name beside it.",
    ("catalog", "workers"): "**New.** Archives read in parallel.",
    ("import", "select"): "Archive paths, wildcards allowed; a short tutorial name finds the one full USGS name.",
    ("import", "database"): "A catalog: its folder, `catalog.json`, `items.parquet` or the Imalys `.csv`.",
    ("import", "stac"): "**New.** A STAC API URL (with `collections`).",
    ("import", "collections"): "**New.** Collection ids for `database` or `stac`.",
    ("import", "distance"): "Largest distance between tile centre and frame centre, in tile radii (`database`/`stac`).",
    ("import", "frame"): "Region: any vector file OGR reads, any CRS; the rectangle around all its points.",
    ("import", "period"): "`YYYYMMDD-YYYYMMDD`, inclusive; repeat for several.",
    ("import", "cover"): "Least fraction of the frame with data.",
    ("import", "quality"): "Least fraction of clear pixels inside the frame (stored as `imalys:quality`, used by `bestof`).",
    ("import", "bands"): "Bands: Imalys suffixes (`_B2, _B3`), asset keys (`red`) or common names (`nir08`); "
                         "default the reflectance bands.",
    ("import", "factor"): "Calibration `value · factor + offset`; **new:** `auto` takes scale and offset from the items.",
    ("import", "offset"): "See `factor`.",
    ("import", "warp"): "Reproject to this EPSG code.",
    ("import", "pixel"): "Pixel size in units of the grid's CRS (metres for UTM).",
    ("import", "mask"): "**New.** Disturbed pixels (cloud, shadow, cirrus) become nodata; `false` keeps them (fill is always nodata).",
    ("import", "rule"): "**New.** How the quality band is read: `flags` (the USGS flag bits) or `confidence` "
                        "(the original's high-confidence pairs).",
    ("import", "polygon"): "**New.** Use the frame's exact polygon (not its rectangle) for quality and pixels.",
    ("import", "target"): "**New.** Name of the product when one acquisition is imported.",
    ("compile", "select"): "Products by name; repeatable.",
    ("compile", "search"): "Product name patterns (`LC0*`; an ending such as `.hdr` is ignored); repeatable.",
    ("compile", "period"): "Keep images of these periods (`YYYYMMDD-YYYYMMDD`); repeatable.",
    ("compile", "frame"): "Grid extent: the frame's rectangle; pixels outside the frame polygon become nodata.",
    ("compile", "crsystem"): "EPSG code of the grid (default: the most common of the images).",
    ("compile", "pixel"): "Pixel size (default: the finest of the images).",
    ("compile", "projection"): "Take the grid of a product or an image file.",
    ("compile", "format"): "**New:** `int16` computes the stack once (calibrated, masked, framed) and stores it as "
                           "scaled integers DN = round((value − offset) / scale), nodata −9999, as export's `int16`: "
                           "half the bytes of a float32 stack, the scale and offset in the file and in the item's "
                           "`raster:bands` (odc-stac, stackstac, GDAL calibrate back); `reduce` reads it within half "
                           "a scale step of the float32 stack. `float32` (default) keeps the lazy stack; the "
                           "original's `true` (keep the input type) too: imported reflectance is float32.",
    ("compile", "scale"): "**New.** With `format = int16`: the value of one DN step (default `0.0001`).",
    ("compile", "offset"): "**New.** With `format = int16`: the value of DN 0 (default `0`).",
    ("compile", "target"): "Name of the stack product.",
    ("reduce", "select"): "The stack or image to reduce.",
    ("reduce", "execute"): "Processes, each stored under its own name; repeatable (see the table below).",
    ("reduce", "preserve"): "`bands`: reduce each band on its own. Without it, as the original, all bands of all "
                            "dates are one layer stack reduced to one band.",
    ("reduce", "flat"): "Average the result bands into one.",
    ("reduce", "target"): "Name of the result (with one `execute` only).",
    ("reduce", "red"): "1-based band number of red (indices).",
    ("reduce", "nir"): "1-based band number of near infrared (indices).",
    ("reduce", "blue"): "1-based band number of blue (`evi`).",
    ("reduce", "threshold"): "`bestof`: two values are averaged unless the lower quality is below `threshold` × the higher.",
    ("reduce", "count"): "**New.** Add a band `count`: the acquisitions the process could use per pixel.",
    ("reduce", "source"): "**New.** Add a band `source`: index of the acquisition a pixel was taken from.",
    ("export", "select"): "The product to export.",
    ("export", "target"): "The file; its ending picks the format (see the table below).",
    ("export", "overwrite"): "**New.** Replace a file imalys-stac did not write.",
    ("export", "format"): "**New.** `float32` (default: reflectance, NaN nodata) or `int16`: scaled integers "
                          "DN = round((value − offset) / scale), nodata −9999, as FORCE and USGS store reflectance "
                          "(about 43 % of the float32 file); the scale and offset are in the file and in the item's "
                          "`raster:bands`, so GDAL, odc-stac and stackstac calibrate back. `.tif` or `.vrt` targets.",
    ("export", "scale"): "**New.** With `format = int16`: the value of one DN step (default `0.0001`).",
    ("export", "offset"): "**New.** With `format = int16`: the value of DN 0 (default `0`).",
}

#: parser function → what it accepts, in words
PARSER_TEXT = {
    "boolean": "`true`/`false`",
    "number": "number",
    "positive": "positive number",
    "fraction": "fraction 0 … 1",
    "positive_int": "positive integer",
    "workers": "positive integer",
    "band_number": "band number ≥ 1",
    "epsg": "EPSG code",
    "factor": "number or `auto`",
    "text_value": "text",
    "name": "product name",
    "comma_list": "comma-separated list",
    "path": "path",
    "folder": "folder",
    "export_target": "file path",
    "path_text": "product name or file path",
    "vector_file": "vector file",
    "archive_pattern": "archive path or pattern",
    "archive_folder_pattern": "folder or pattern",
    "database": "catalog path",
    "url": "http(s) URL",
    "period": "`YYYYMMDD-YYYYMMDD`",
    "scheduler": "`local`, `processes`, `tcp://host:port`, `kubernetes`",
    "memory": "size (`4GB`)",
}

HEADER = """# Chain reference

<!-- Generated by `python -m imalys_stac.docs` from imalys_stac/chain/models.py and the registry;
     do not edit by hand (tests/test_docs.py checks that this file is current). -->

A chain file starts with the word `IMALYS` (the rest of that line is a comment); a line with one
word is a command, the indented `key = value` lines below it are its parameters. `#` starts a
comment. Tabs or spaces, `=` with or without spaces; `~` and environment variables in paths are
expanded; `$1` … `$9` are replaced by the values of `replace` or of a repeat list row.

```
IMALYS [process chain 2a]
home
\tdirectory = ~/.imalys
\tclear = true
import
\tselect = ~/ESIS/archives/LC08_L2SP_193026_20220515.tar
\tframe = ~/ESIS/frames/bounding-box.shp
\tquality = 0.70
\tbands = _B2, _B3, _B4, _B5, _B6, _B7
\tfactor = 2.75e-5
\toffset = -0.2
```

Every bad value is refused before any work, with the file, line and parameter
(see [errors](errors.md)). **New** marks what the original Imalys does not have.
"""


def _parser_text(parser) -> str:
    name = getattr(parser, "__name__", "")
    if name == "parse":  # values.choice(...): its accepted words
        accepted = inspect.getclosurevars(parser).nonlocals.get("accepted", ())
        return " or ".join(f"`{a}`" for a in accepted)
    if name == "_reducer":
        return "process name"
    return PARSER_TEXT.get(name, name.strip("_").replace("_", " "))  # a new parser: its name until described


def _default(f: dataclasses.Field, required: bool, repeat: bool) -> str:
    if required:
        return "required"
    if repeat:
        return "repeatable"
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        if isinstance(value, Path):
            import os

            home = os.path.expanduser("~")
            text = str(value)
            return f"`{'~' + text[len(home):] if text.startswith(home) else text}`"
        return "—" if value in ([], {}, None) else f"`{value}`"
    if f.default is None or f.default is dataclasses.MISSING:
        return "—"
    if isinstance(f.default, bool):
        return f"`{str(f.default).lower()}`"
    return f"`{f.default}`"


def chain_reference() -> str:
    """The text of docs/chains.md."""
    from .chain.models import COMMANDS
    from .registry import FORMATS, REDUCERS

    out = [HEADER]
    for command, model in COMMANDS.items():
        out.append(f"## `{command}`\n\n{COMMAND_TEXT[command]}\n")
        if command == "replace":
            out.append("| parameter | value | default | description |\n|---|---|---|---|\n"
                       "| `$1` … `$9` | text | — | The value of the variable. |\n")
            continue
        out.append("| parameter | value | default | description |\n|---|---|---|---|")
        for f in dataclasses.fields(model):  # type: ignore[arg-type]
            meta = f.metadata
            if "parser" not in meta:
                continue
            key = (command, f.name)
            names = " ".join(f"`{n}`" for n in (f.name, *meta.get("aliases", ())))
            value = _parser_text(meta["parser"])
            default = _default(f, meta.get("required", False), meta.get("repeat", False))
            if meta.get("required") and meta.get("repeat"):
                default = "required, repeatable"
            text = DESCRIPTIONS[key]
            if meta.get("example"):
                text += f" Example: `{meta['example']}`."
            out.append(f"| {names} | {value} | {default} | {text} |")
        out.append("")
        if command == "reduce":
            out.append("### `execute` processes\n\n| process | what | needs | result bands |\n|---|---|---|---|")
            for name, r in REDUCERS.items():
                needs = ", ".join(f"`{n}`" for n in r.needs) or "—"
                bands = "one per input band (with `preserve = bands`)" if r.per_band else "one"
                out.append(f"| `{name}` | {r.summary} | {needs} | {bands} |")
            out.append("")
        if command == "export":
            out.append("### Formats (by the target's ending)\n\n| ending | format | media type |\n|---|---|---|")
            for ending, fmt in FORMATS.items():
                out.append(f"| `{ending or '(none)'}` | {fmt.description} | `{fmt.media_type}` |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def undocumented() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(parameters the models declare without a description, descriptions of no parameter)."""
    from .chain.models import COMMANDS

    declared = {(c, f.name) for c, m in COMMANDS.items()
                for f in dataclasses.fields(m) if "parser" in f.metadata}  # type: ignore[arg-type]
    return sorted(declared - set(DESCRIPTIONS)), sorted(set(DESCRIPTIONS) - declared)


DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "chains.md"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[argv.index("--out") + 1]) if "--out" in argv else DOC_PATH
    text = chain_reference()
    if "--check" in argv:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            print(f"{path} is not current: run python -m imalys_stac.docs", file=sys.stderr)
            return 1
        return 0
    path.write_text(text, encoding="utf-8")
    print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
