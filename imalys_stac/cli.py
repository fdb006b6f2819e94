"""Command line: `imalys-stac run|check|plan|catalog|search|demo|serve`, and the drop-in
`x_Imalys` / `r_Imalys`. Every subcommand calls the Python API (`imalys_stac.api`); only the
command line configures logging and warnings (messages on stderr, `--json` documents on stdout)."""
from __future__ import annotations

import argparse
import json
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

from .settings import MALLOC_ENV, MALLOPT, malloc_tuning_wanted  # the malloc policy (why: see settings.MALLOC_ENV)


def _mallopt() -> bool:
    """Set the malloc policy in this process (glibc's mallopt); False where that is not possible."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(param, value) == 1 for param, value in MALLOPT.items())
    except (OSError, AttributeError):  # not glibc
        return False


def _with_malloc_tuning(func_name: str) -> None:
    import os

    if not malloc_tuning_wanted() or all(k in os.environ for k in MALLOC_ENV) or sys.platform != "linux":
        return
    if _mallopt():  # in force here without starting Python again (~0.1 s); children get the variables
        os.environ.update(MALLOC_ENV)
        return
    env = {**os.environ, **MALLOC_ENV}
    code = f"import sys; from imalys_stac.cli import {func_name}; sys.exit({func_name}())"
    try:
        os.execve(sys.executable, [sys.executable, "-c", code, *sys.argv[1:]], env)
    except OSError:  # cannot re-execute: run as we are
        return


def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


@contextmanager
def _signals_stop_cleanly() -> Iterator[None]:
    """SIGINT (Ctrl-C), SIGTERM (sent by `timeout`, batch schedulers and Kubernetes) and SIGHUP stop
    a run alike: the exception unwinds through every temporary-file guard, so nothing is left behind.

    Python runs a signal handler between any two bytecodes of the main thread, and the exception
    it raises appears there. Not inside the import system: an exception thrown into a module that
    is being imported leaves it half made (dropped from ``sys.modules``, its submodules and its
    package's namespace half filled) while the dask threads that are still running import and fill
    the same modules, and the unwinding then tripped over that state ("RuntimeError: dictionary
    changed size during iteration" instead of "stopped by SIGINT"). A signal that arrives during an
    import is therefore delivered again a moment later, once the import has finished. A signal the
    process was started to ignore (``nohup``, a background job's SIGINT) stays ignored."""
    import os
    import signal
    import threading

    from .errors import Interrupted

    base = _import_depth(sys._getframe())  # a run started from inside an import (a script imported)

    def stop(signum, frame):
        if _import_depth(frame) > base:
            again = threading.Timer(_REDELIVER_S, os.kill, (os.getpid(), signum))
            again.daemon = True
            again.start()
            return
        raise Interrupted(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            if signal.getsignal(sig) is signal.SIG_IGN:
                continue
            previous[sig] = signal.signal(sig, stop)
        except (ValueError, OSError):  # not the main thread (e.g. called from a test runner thread)
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


#: seconds after which a signal that arrived during an import is delivered again
_REDELIVER_S = 0.05


def _import_depth(frame) -> int:
    """How many frames of the import system (``importlib._bootstrap``) ``frame`` runs under."""
    depth = 0
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            depth += 1
        frame = frame.f_back
    return depth


def _print_json(doc: dict) -> None:
    """One JSON document on stdout (messages stay on stderr). A path whose name is not UTF-8 (a
    Latin-1 folder: lone surrogates in Python) is written with JSON escapes (``\\udce9``): the
    document stays UTF-8, and Python's json reads back the same path."""
    text = json.dumps(doc, indent=2, default=str, ensure_ascii=False)
    text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _print_paths_as_bytes() -> None:
    """Paths printed on stdout with the bytes they have on disk, also those that are not UTF-8
    (a Latin-1 folder), as `ls` prints them: in a UTF-8 locale Python's stdout would raise
    UnicodeEncodeError after the work is done (in the C locale it does this already)."""
    stdout = sys.stdout
    if getattr(stdout, "errors", None) == "strict" and hasattr(stdout, "reconfigure"):
        try:
            stdout.reconfigure(errors="surrogateescape")
        except (ValueError, OSError):  # a stream that cannot change now: leave it
            pass


def _run(chain_path: Path, vars_path: Path | None, verbose: bool, check_only: bool = False, debug: bool = False,
         as_json: bool = False) -> int:
    from .chain import ChainError, load_chain_rows

    done: list[dict] = []

    def failed(message: str, code: int = EXIT_FAILED) -> int:
        _err(message)
        if as_json:
            _print_json({"ok": False, "error": message, "runs": done})
        return code

    try:  # every row of a variable list is checked before the first run starts
        runs = load_chain_rows(chain_path, vars_path)
    except (ChainError, OSError) as exc:
        return failed(str(exc))
    except Exception as exc:  # a bug in the parser, not the user's chain
        return _internal_error(exc, debug)
    with _signals_stop_cleanly():
        for row, chain in runs:
            try:
                if check_only:
                    print(f"{chain_path}: ok ({len(chain.commands)} commands: {', '.join(c.name for c in chain.commands)})"
                          + (f" [variables line {row.line}]" if row else ""))
                    continue
                from .commands import run_chain

                ctx = run_chain(chain, verbose=verbose or debug)
                if as_json:
                    done.append(_run_summary(ctx, row))
            except ChainError as exc:
                if debug and exc.__cause__ is not None:
                    traceback.print_exception(exc.__cause__, file=sys.stderr)
                return failed(str(exc if row is None or vars_path is None or exc.rows else exc.in_row(vars_path, row.line)))
            except KeyboardInterrupt as exc:
                signame = getattr(exc, "signame", "SIGINT")
                return failed(f"stopped by {signame}: temporary files were removed; products finished before the stop "
                              "are kept and the next run continues from them",
                              143 if signame == "SIGTERM" else 129 if signame == "SIGHUP" else 130)
            except Exception as exc:  # a bug, not a user error: say so, keep the traceback in the log
                code = _internal_error(exc, debug)
                if as_json:
                    _print_json({"ok": False, "error": f"internal error ({type(exc).__name__}: {exc})", "runs": done})
                return code
    if as_json and not check_only:
        _print_json({"ok": True, "chain": str(chain_path), "runs": done})
    return EXIT_OK


def _run_summary(ctx, row) -> dict:
    """What `run --json` reports of one run: products (name, kind, item file), exports (file and
    item), the run log, and the variables row in repeat mode."""
    from .commands.export import item_path_for
    from .product_records import KIND

    wd = ctx.workdir
    products = {}
    for name in wd.names():
        item = wd.load(name)
        products[name] = {"kind": item.properties.get(KIND), "item": str(wd.item_path(name)),
                          "datetime": item.properties.get("datetime") or item.properties.get("start_datetime")}
    return {"variables": None if row is None else {"line": row.line, "values": {f"${k}": v for k, v in row.values.items()}},
            "working_directory": str(wd.path), "log": str(ctx.runlog.path) if ctx.runlog.path else None,
            "products": products,
            "exports": [{"file": str(p), "item": str(item_path_for(Path(p)))} for p in ctx.outputs]}


def _internal_error(exc: BaseException, debug: bool) -> int:
    log_path = getattr(exc, "imalys_log", None)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    _err(f"internal error ({type(exc).__name__}: {exc}); this is a bug in imalys-stac, please report it "
         + (f"with the run log {log_path}" if log_path else "with the output of --debug")
         + ("" if debug else " (run again with --debug to see the traceback)"))
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    _print_paths_as_bytes()
    ap = argparse.ArgumentParser(
        prog="imalys-stac",
        description="Run Imalys process chains on STAC, stackstac and Dask: archives → cloud-free COGs.",
    )
    ap.add_argument("--version", action="version", version=f"imalys-stac {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_run = sub.add_parser("run", help="run a chain file", description="Run a chain file (and, with --vars, once per line of a variable list).")
    p_run.add_argument("chain", type=Path, help="the chain file (first word IMALYS)")
    p_run.add_argument("--vars", type=Path, metavar="LIST", help="repeat mode: tab-separated values for $1, $2, … one run per line")
    p_run.add_argument("-v", "--verbose", action="store_true", help="show every parameter and debug message on the terminal")
    p_run.add_argument("--debug", action="store_true", help="show the traceback of an error (for bug reports)")
    p_run.add_argument("--json", action="store_true", help="print one JSON document (products, exports, log) on stdout")
    p_check = sub.add_parser("check", help="parse and validate a chain; do no work", description="Parse and validate a chain file without running it.")
    p_check.add_argument("chain", type=Path)
    p_check.add_argument("--vars", type=Path, metavar="LIST")
    p_plan = sub.add_parser("plan", help="show what a chain would do, without writing",
                            description="What running a chain would do: the scenes found, the quality and cover of "
                            "each, kept or rejected and why, the output grids and their sizes. Reads the quality "
                            "bands; writes nothing.")
    p_plan.add_argument("chain", type=Path)
    p_plan.add_argument("--vars", type=Path, metavar="LIST", help="plan every run of a repeat list")
    p_plan.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p_plan.add_argument("--debug", action="store_true", help="show the traceback of an error")
    p_cat = sub.add_parser("catalog", help="archives → static STAC catalog (no chain file needed)",
                           description="Catalog Landsat C2 L2 .tar and Sentinel-2 L2A .zip archives into a static STAC "
                           "catalog with a search index (incremental: unchanged archives are not read again).")
    p_cat.add_argument("archives", help="a folder of archives, a wildcard pattern (quote it) or one archive")
    p_cat.add_argument("target", type=Path, help="catalog folder, …/catalog.json, or ….csv (Imalys table, catalog beside it)")
    p_cat.add_argument("--workers", type=int, default=None, help="archives read in parallel (default: the CPUs)")
    p_cat.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p_search = sub.add_parser("search", help="items of a catalog, archive folder or STAC API",
                              description="Search a catalog (folder, catalog.json, items.parquet, .csv), a folder of "
                              "archives or a STAC API URL; one line per item, or --json for a GeoJSON FeatureCollection.")
    p_search.add_argument("source", help="catalog, archive folder or http(s) STAC API URL")
    p_search.add_argument("--bbox", help="west,south,east,north in degrees")
    p_search.add_argument("--frame", type=Path, help="a vector file; items meeting the rectangle around it")
    p_search.add_argument("--datetime", help="2022-05-01/2022-09-30 (.. for an open end), one day, or 20220501-20220930")
    p_search.add_argument("--collections", help="collection ids, comma-separated")
    p_search.add_argument("--max-cloud", type=float, help="eo:cloud_cover at most this (percent)")
    p_search.add_argument("--json", action="store_true", help="print a GeoJSON FeatureCollection of the items on stdout")
    p_demo = sub.add_parser("demo", help="run the tutorial chains 2a–2e on generated archives",
                            description="Generate realistic Landsat archives and run the seed tutorial's chains 2a–2e on them.")
    p_demo.add_argument("dir", type=Path, nargs="?", default=Path("imalys-demo"), help="demo folder (default ./imalys-demo)")
    p_demo.add_argument("--size", type=int, default=384, help="scene size in pixels (default 384)")
    p_serve = sub.add_parser("serve", help="serve a catalog, working directory or results folder to STAC Browser",
                             description="Serve an archive catalog, a working directory or a results folder over HTTP "
                             "(CORS, Range requests, archive members as files); --api adds a STAC API (rustac).")
    p_serve.add_argument("dir", type=Path, nargs="?", default=Path("."), help="folder to serve (default: the current one)")
    p_serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p_serve.add_argument("--port", type=int, default=8000, help="port of the static catalog (default 8000)")
    p_serve.add_argument("--api", action="store_true", help="also serve the items as a STAC API (rustac serve)")
    p_serve.add_argument("--api-port", type=int, default=None, help="port of the STAC API (default: --port + 1)")
    args = ap.parse_args(argv)

    if args.cmd == "run":
        return _run(args.chain, args.vars, args.verbose, debug=args.debug, as_json=args.json)
    if args.cmd == "check":
        return _run(args.chain, args.vars, False, check_only=True)
    if args.cmd in ("plan", "catalog", "search"):
        return _one_off(args)
    if args.cmd == "serve":
        from .serve import main as serve_main

        return serve_main(args)
    if args.cmd == "demo":
        import logging

        from .chain import ChainError
        from .tutorial import run_demo

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            results = run_demo(args.dir, size=args.size)
        except ChainError as exc:
            _err(str(exc))
            return EXIT_FAILED
        missing = [p for p in results if not p.exists()]
        for p in results:
            print(("missing " if p in missing else "") + str(p))
        return EXIT_FAILED if missing else EXIT_OK
    return EXIT_USAGE


def _one_off(args: argparse.Namespace) -> int:
    """plan, catalog, search: the API function, messages on stderr, the answer on stdout."""
    from .chain import ChainError
    from .errors import ImalysError
    from .runtime.log import RunLog

    runlog = RunLog(None, chain_name=args.cmd, verbose=False).open()
    try:
        with _signals_stop_cleanly():
            return _ONE_OFF[args.cmd](args)
    except (ChainError, ImalysError, OSError, ValueError) as exc:
        if getattr(args, "debug", False):
            traceback.print_exception(exc, file=sys.stderr)
        message = str(exc) if isinstance(exc, ChainError) else f"{args.cmd}: {_message(exc)}"
        _err(message)
        if getattr(args, "json", False):
            _print_json({"ok": False, "error": message})
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        _err(f"stopped by {getattr(exc, 'signame', 'SIGINT')}")
        return 130
    except Exception as exc:
        return _internal_error(exc, getattr(args, "debug", False))
    finally:
        runlog.close()


def _message(exc: BaseException) -> str:
    text = str(exc.args[0]) if isinstance(exc, Exception) and exc.args and isinstance(exc.args[0], str) else str(exc)
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.filename}: {exc.strerror}"
    hint = getattr(exc, "hint", None)
    return f"{text} — {hint}" if hint and hint not in text else text


def _plan(args: argparse.Namespace) -> int:
    from .api.dryrun import plan_chain  # what imalys_stac.plan() runs, on the chain already read
    from .chain import load_chain_rows

    plans = []
    for row, chain in load_chain_rows(args.chain, args.vars):
        doc = plan_chain(chain)
        if row is not None:
            doc["variables"] = {"line": row.line, "values": {f"${k}": v for k, v in row.values.items()}}
        plans.append(doc)
    if args.json:
        _print_json({"ok": True, **plans[0]} if len(plans) == 1 else {"ok": True, "runs": plans})
    else:
        for doc in plans:
            print(plan_text(doc))
    return EXIT_OK


def plan_text(doc: dict) -> str:
    """A plan for people: one line per command, one per acquisition."""
    def grid(g: dict | None) -> str:
        if not g:
            return "the grid of the projection template"
        res = " × ".join(f"{r:g}" for r in dict.fromkeys(g["resolution"]))
        return f"EPSG:{g['epsg']} {g['width']} × {g['height']} px at {res} ({g['megabytes_per_band']:g} MB per band)"

    lines = [f"{doc['chain']} → working directory {doc['working_directory']}"
             + (" (emptied first)" if doc["clear"] else "")
             + (f" [variables line {doc['variables']['line']}]" if doc.get("variables") else "")]
    if doc["existing_products"]:
        lines.append(f"   already there: {', '.join(doc['existing_products'])}")
    for step in doc["commands"]:
        head = f"{step['command']} (line {step['line']})"
        if step["command"] == "catalog":
            lines.append(f"{head}: {step['archives']} archive(s) → {step['target']}")
        elif step["command"] == "import":
            lines.append(f"{head}: {step['archives']} archive item(s), {len(step['acquisitions'])} acquisition(s), "
                         f"{step['kept']} kept")
            for a in step["acquisitions"]:
                verdict = "kept" if a["kept"] else f"rejected: {a['reason']}"
                lines.append(f"   {a['name']}  {a['date'][:10]}  quality {a['quality']:.3f}  cover {a['cover']:.3f}  "
                             f"{len(a['tiles'])} tile(s)  {verdict}")
        elif step["command"] == "compile":
            lines.append(f"{head}: {len(step['inputs'])} image(s) → {step.get('target', 'compile')}, {grid(step['grid'])}")
            lines.append(f"   {', '.join(step['inputs'])}")
        elif step["command"] == "reduce":
            for o in step["outputs"]:
                lines.append(f"{head}: {o['process']} of {step['select']} → {o['name']}, {len(o['bands'])} band(s) "
                             f"({', '.join(o['bands'])}), {grid(o['grid'])}")
        elif step["command"] == "export":
            lines.append(f"{head}: {step['select']} → {step['target']} ({step['format']})"
                         + (", replacing the file there" if step["exists"] else ""))
    return "\n".join(lines)


def _catalog(args: argparse.Namespace) -> int:
    from .api import catalog

    report = catalog(args.archives, args.target, workers=args.workers)
    if args.json:
        _print_json({"ok": True, "catalog": str(report.catalog_path), "table": str(report.csv_path) if report.csv_path else None,
                     "added": report.added, "updated": report.updated, "removed": report.removed,
                     "unchanged": report.unchanged, "skipped": [{"archive": a, "reason": r} for a, r in report.skipped]})
    else:
        print(report.catalog_path)
    return EXIT_OK


def _search(args: argparse.Namespace) -> int:
    from .api import search

    bbox = None
    if args.bbox:
        try:
            bbox = [float(v) for v in args.bbox.split(",")]
        except ValueError:
            raise ValueError(f"--bbox {args.bbox}: accepted is west,south,east,north in degrees, e.g. 7.5,47.9,7.9,48.1") from None
    items = search(args.source, bbox=bbox, frame=args.frame, datetime=args.datetime, collections=args.collections,
                   max_cloud=args.max_cloud)
    if args.json:
        _print_json({"type": "FeatureCollection", "features": [it.to_dict(include_self_link=False, transform_hrefs=False)
                                                               for it in items], "numberMatched": len(items)})
        return EXIT_OK
    for it in items:
        cloud = it.properties.get("eo:cloud_cover")
        when = it.datetime.strftime("%Y-%m-%d") if it.datetime else it.properties.get("start_datetime", "")
        print(f"{it.id}\t{when}\t{it.collection_id or ''}\t" + ("" if cloud is None else f"cloud {cloud:g} %"))
    print(f"{len(items)} item(s)", file=sys.stderr)
    return EXIT_OK


_ONE_OFF = {"plan": _plan, "catalog": _catalog, "search": _search}


def _version_asked(argv: list[str]) -> bool:
    if argv and argv[0] in ("--version", "-V"):
        print(f"imalys-stac {__version__}")
        return True
    return False


def x_imalys(argv: list[str] | None = None) -> int:
    """`x_Imalys CHAIN`: the original's single-run entry point."""
    _print_paths_as_bytes()
    argv = sys.argv[1:] if argv is None else argv
    if _version_asked(argv):
        return EXIT_OK
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: x_Imalys CHAIN\nRun one Imalys process chain.", file=sys.stderr if len(argv) != 1 else sys.stdout)
        return EXIT_OK if argv and argv[0] in ("-h", "--help") else EXIT_USAGE
    return _run(Path(argv[0]), None, False)


def r_imalys(argv: list[str] | None = None) -> int:
    """`r_Imalys CHAIN LIST`: the original's repeat mode, one run per line of LIST."""
    _print_paths_as_bytes()
    argv = sys.argv[1:] if argv is None else argv
    if _version_asked(argv):
        return EXIT_OK
    if len(argv) != 2:
        help_asked = bool(argv) and argv[0] in ("-h", "--help")
        print("usage: r_Imalys CHAIN LIST\nRun the chain once per line of LIST (tab-separated values for $1, $2, …).",
              file=sys.stdout if help_asked else sys.stderr)
        return EXIT_OK if help_asked else EXIT_USAGE
    return _run(Path(argv[0]), Path(argv[1]), False)


def entry() -> int:
    """Console script `imalys-stac`."""
    _with_malloc_tuning("main")
    return main()


def x_entry() -> int:
    """Console script `x_Imalys`."""
    _with_malloc_tuning("x_imalys")
    return x_imalys()


def r_entry() -> int:
    """Console script `r_Imalys`."""
    _with_malloc_tuning("r_imalys")
    return r_imalys()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(entry())
