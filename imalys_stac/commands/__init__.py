"""Run a parsed chain: one thin adapter per command, in chain order."""
from __future__ import annotations

import logging
import traceback
from dataclasses import asdict, is_dataclass
from pathlib import Path

from ..chain import Chain, ChainError
from ..runtime.cluster import ClusterSpec, dask_runtime
from ..runtime.log import RunLog
from ..workdir import WorkDir, WorkdirError
from .context import Context

log = logging.getLogger("imalys_stac.commands")

#: command name → adapter module (imported when a chain uses it, so `check` stays light)
HANDLERS = {
    "catalog": "catalog",
    "import": "import_",
    "compile": "compile",
    "reduce": "reduce",
    "export": "export",
}


def handler_for(name: str):
    import importlib

    return importlib.import_module(f"{__name__}.{HANDLERS[name]}").run


def _params(cmd) -> dict:
    return asdict(cmd.params) if is_dataclass(cmd.params) else dict(vars(cmd.params))


def run_chain(chain: Chain, *, verbose: bool = False, chunksize: int | None = None) -> Context:
    """Run every command of `chain`. Raises ChainError (with file, line and parameter) on any
    failure; the run log records the cause."""
    home_cmd = next(c for c in chain.commands if c.name == "home")
    home = home_cmd.params
    workdir = WorkDir(home.directory)
    runlog = RunLog(None, chain_name=Path(chain.path).name, verbose=verbose)
    try:
        workdir.prepare(clear=home.clear)
    except (WorkdirError, OSError) as exc:
        raise home_cmd.error(str(exc), parameter="clear" if home.clear and "clear" in str(exc) else "directory") from exc
    try:
        runlog.open(home.log or workdir.path)
    except OSError as exc:
        raise home_cmd.error(f"cannot write the run log to {home.log or workdir.path}: {exc.strerror or exc}",
                             parameter="log" if home.log else "directory") from exc
    log.info("imalys-stac: %s → working directory %s", chain.path, workdir.path)
    if runlog.path:
        log.info("log: %s", runlog.path)
    ctx = Context(chain=chain, workdir=workdir, runlog=runlog, chunksize=chunksize)
    spec = ClusterSpec.resolve(getattr(home, "scheduler", None), getattr(home, "workers", None), getattr(home, "memory", None))
    try:
        with dask_runtime(spec) as client:
            ctx.client = client
            for cmd in chain.commands:
                if cmd.name in ("home", "replace"):
                    with runlog.command(cmd.name, cmd.line, _params(cmd)):
                        pass
                    continue
                handler = handler_for(cmd.name)
                with runlog.command(cmd.name, cmd.line, _params(cmd)):
                    try:
                        handler(ctx, cmd)
                    except ChainError:
                        raise
                    except (WorkdirError, ValueError, OSError, KeyError, RuntimeError) as exc:
                        log.debug("%s", traceback.format_exc())
                        raise cmd.error(f"{type(exc).__name__}: {exc}" if isinstance(exc, KeyError) else str(exc)) from exc
    except ChainError as exc:
        log.error("%s", exc, extra={"file_only": True})
        if exc.__cause__ is not None:
            log.debug("cause: %s", "".join(traceback.format_exception(exc.__cause__)))
        raise
    except (OSError, ValueError, RuntimeError, TimeoutError) as exc:
        # every command converts its own errors: what arrives here comes from starting or
        # reaching the Dask scheduler that home asked for
        log.debug("%s", traceback.format_exc())
        err = home_cmd.error(f"cannot use the Dask scheduler {spec.scheduler or 'local'}: {exc}",
                             parameter="scheduler" if spec.scheduler else "workers",
                             hint="check the address (tcp://host:8786) and that the scheduler is running")
        log.error("%s", err, extra={"file_only": True})
        raise err from exc
    finally:
        log.info("finished with %d warning(s), %d error(s)", runlog.warnings, runlog.errors)
        runlog.close()
    return ctx
