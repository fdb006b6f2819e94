"""Command line: `imalys-stac run|check|demo|serve`, and the drop-in `x_Imalys` / `r_Imalys`."""
from __future__ import annotations

import argparse
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from . import __version__

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

from .settings import MALLOC_ENV, malloc_tuning_wanted  # the malloc policy (why: see settings.MALLOC_ENV)


def _with_malloc_tuning(func_name: str) -> None:
    import os

    if not malloc_tuning_wanted() or all(k in os.environ for k in MALLOC_ENV) or sys.platform != "linux":
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
    """SIGTERM (sent by `timeout`, batch schedulers and Kubernetes) stops a run exactly like
    Ctrl-C: the exception unwinds through every temporary-file guard, so nothing is left behind."""
    import signal

    from .errors import Interrupted

    def stop(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            previous[sig] = signal.signal(sig, stop)
        except (ValueError, OSError):  # not the main thread (e.g. called from a test runner thread)
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(chain_path: Path, vars_path: Path | None, verbose: bool, check_only: bool = False, debug: bool = False) -> int:
    from .chain import ChainError, load_chain_rows

    try:  # every row of a variable list is checked before the first run starts
        runs = load_chain_rows(chain_path, vars_path)
    except (ChainError, OSError) as exc:
        _err(str(exc))
        return EXIT_FAILED
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

                run_chain(chain, verbose=verbose or debug)
            except ChainError as exc:
                _err(str(exc if row is None or exc.rows else exc.in_row(vars_path, row.line)))
                if debug and exc.__cause__ is not None:
                    traceback.print_exception(exc.__cause__, file=sys.stderr)
                return EXIT_FAILED
            except KeyboardInterrupt as exc:
                signame = getattr(exc, "signame", "SIGINT")
                _err(f"stopped by {signame}: temporary files were removed; products finished before the stop are kept "
                     "and the next run continues from them")
                return 143 if signame == "SIGTERM" else 129 if signame == "SIGHUP" else 130
            except Exception as exc:  # a bug, not a user error: say so, keep the traceback in the log
                return _internal_error(exc, debug)
    return EXIT_OK


def _internal_error(exc: BaseException, debug: bool) -> int:
    log_path = getattr(exc, "imalys_log", None)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    _err(f"internal error ({type(exc).__name__}: {exc}); this is a bug in imalys-stac, please report it "
         + (f"with the run log {log_path}" if log_path else "with the output of --debug")
         + ("" if debug else " (run again with --debug to see the traceback)"))
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
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
    p_check = sub.add_parser("check", help="parse and validate a chain; do no work", description="Parse and validate a chain file without running it.")
    p_check.add_argument("chain", type=Path)
    p_check.add_argument("--vars", type=Path, metavar="LIST")
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
        return _run(args.chain, args.vars, args.verbose, debug=args.debug)
    if args.cmd == "check":
        return _run(args.chain, args.vars, False, check_only=True)
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


def x_imalys(argv: list[str] | None = None) -> int:
    """`x_Imalys CHAIN`: the original's single-run entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: x_Imalys CHAIN\nRun one Imalys process chain.", file=sys.stderr if len(argv) != 1 else sys.stdout)
        return EXIT_OK if argv and argv[0] in ("-h", "--help") else EXIT_USAGE
    return _run(Path(argv[0]), None, False)


def r_imalys(argv: list[str] | None = None) -> int:
    """`r_Imalys CHAIN LIST`: the original's repeat mode, one run per line of LIST."""
    argv = sys.argv[1:] if argv is None else argv
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
