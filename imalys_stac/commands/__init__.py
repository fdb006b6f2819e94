"""Run a parsed chain: one thin adapter per command, in chain order."""
from __future__ import annotations

import logging
import traceback
from contextlib import ExitStack
from dataclasses import asdict, is_dataclass
from pathlib import Path

from ..chain import Chain, ChainError, Command
from ..errors import ImalysError
from ..runtime.cluster import ClusterSpec, apply_gdal_env, cluster_faults, dask_runtime
from ..runtime.log import RunLog
from ..settings import Settings, SettingsError, using
from ..workdir import WorkDir, WorkdirError
from .context import RunContext

log = logging.getLogger("imalys_stac.commands")

#: command name → adapter module (imported when a chain uses it, so `check` stays light)
HANDLERS = {
    "catalog": "catalog",
    "import": "import_",
    "compile": "compile",
    "reduce": "reduce",
    "export": "export",
}

#: commands that start the in-process Dask scheduler themselves when they use it (ctx.use_dask);
#: before any other command it is started by the runner
DASK_ON_DEMAND = frozenset({"catalog", "import"})


def handler_for(name: str):
    import importlib

    return importlib.import_module(f"{__name__}.{HANDLERS[name]}").run


def _params(cmd: Command) -> dict:
    params = cmd.params
    return asdict(params) if is_dataclass(params) and not isinstance(params, type) else dict(vars(params))


def _located(cmd, exc: BaseException, folder: Path | None = None) -> ChainError:
    """A user-resolvable error of a command as one located line (file:line: command: …);
    `folder`: where the command writes (asked whether it is full or read-only when GDAL only
    says 'Write failed')."""
    if isinstance(exc, OSError) and not isinstance(exc, ImalysError):
        from .context import os_reason

        reason, hint = os_reason(exc, folder)
        name = getattr(exc, "filename", None)
        text = f"{name}: {reason}" if name and str(name) not in reason else reason
        if folder is not None and hint and hint.startswith("free"):
            text = f"cannot write in {folder}: {reason}"
        return cmd.error(text, hint=hint)
    return cmd.error(str(exc.args[0]) if exc.args else str(exc), parameter=getattr(exc, "parameter", None),
                     hint=getattr(exc, "hint", None))


def _read_error(exc: BaseException) -> str | None:
    """The file GDAL could not read, when a reader (stackstac) wrapped a rasterio I/O error."""
    try:
        from rasterio.errors import RasterioIOError
    except ImportError:  # pragma: no cover
        return None
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, RasterioIOError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def run_chain(chain: Chain, *, verbose: bool = False, chunksize: int | None = None, terminal: bool = True,
              scheduler: object | None = None) -> RunContext:
    """Run every command of `chain`.

    `terminal`: the command line's run (messages on stderr, warnings into the log); False for the
    Python API, which only adds the log file and leaves the caller's logging alone (runtime.log).
    `scheduler`: overrides `home scheduler` — an address or kind as there, or a distributed
    `Client` to compute on. Without either (and no IMALYS_SCHEDULER), an active distributed
    client of the caller is used as it is; otherwise the in-process threads.

    A problem the user can fix (an `ImalysError`, or a file-system error such as a full disk)
    raises a ChainError naming the file, line and parameter; the run log records the cause.
    Anything else is a bug and propagates unchanged, so the CLI reports it as an internal error.
    """
    home_cmd = next(c for c in chain.commands if c.name == "home")
    home = chain.home
    try:  # the environment's settings, read once for the run and checked before any work
        settings = Settings.from_env()
    except SettingsError as exc:
        raise home_cmd.error(str(exc), hint=exc.hint) from exc
    workdir = WorkDir(home.directory)
    runlog = RunLog(None, chain_name=Path(chain.path).name, verbose=verbose, terminal=terminal)
    with ExitStack() as stack:
        stack.enter_context(using(settings))
        try:
            stack.enter_context(workdir.locked(f"chain {Path(chain.path).name}"))
            workdir.prepare(clear=home.clear)
        except (WorkdirError, OSError) as exc:
            raise home_cmd.error(exc.args[0] if isinstance(exc, WorkdirError) else f"{workdir.path}: {exc.strerror or exc}",
                                 parameter="clear" if home.clear and "clear" in str(exc) else "directory",
                                 hint=getattr(exc, "hint", None)) from exc
        try:
            runlog.open(home.log or workdir.path)
        except OSError as exc:
            raise home_cmd.error(f"cannot write the run log to {home.log or workdir.path}: {exc.strerror or exc}",
                                 parameter="log" if home.log else "directory") from exc
        stack.callback(runlog.close)
        return _run_commands(chain, home_cmd, workdir, runlog, chunksize, scheduler)


def _callers_client(spec: ClusterSpec, scheduler: object | None):
    """The caller's distributed Client to compute on: the one given, or the active one when
    nothing else was asked for; None to let `dask_runtime` choose."""
    if scheduler is not None and not isinstance(scheduler, str):
        return scheduler
    if spec.kind == "threads" and not spec.scheduler and not spec.workers:
        from ..runtime.cluster import active_client

        return active_client()
    return None


def _run_commands(chain: Chain, home_cmd, workdir: WorkDir, runlog: RunLog, chunksize: int | None,
                  scheduler: object | None = None) -> RunContext:
    home = home_cmd.params
    log.info("imalys-stac: %s → working directory %s", chain.path, workdir.path)
    if runlog.path:
        log.info("log: %s", runlog.path)
    ctx = RunContext(chain=chain, workdir=workdir, runlog=runlog, chunksize=chunksize)
    try:
        spec = ClusterSpec.resolve(getattr(home, "scheduler", None), getattr(home, "workers", None), getattr(home, "memory", None))
    except ValueError as exc:  # the environment's IMALYS_WORKERS is not a number: the user's, not a bug
        raise home_cmd.error(f"the environment variable IMALYS_WORKERS is not a whole number ({exc})", parameter="workers",
                             hint="correct it (e.g. IMALYS_WORKERS=4) or unset it; it overrides home workers") from exc
    if isinstance(scheduler, str):  # the caller's explicit choice beats the chain and IMALYS_SCHEDULER
        import dataclasses

        spec = dataclasses.replace(spec, scheduler=scheduler)
    callers = _callers_client(spec, scheduler)
    ok = False
    try:
        with ExitStack() as stack:
            try:
                if callers is not None:  # the caller's cluster, used as it is (no plugins, no watch)
                    import dask

                    apply_gdal_env()
                    log.info("dask: the caller's client %s", callers)
                    stack.enter_context(dask.config.set(scheduler=callers))
                    ctx.client = callers
                elif spec.kind == "threads":
                    # the in-process scheduler costs nothing to start but importing dask: entered
                    # before the first command that computes with it (RunContext.use_dask), so a
                    # chain of catalog and small imports never loads it
                    apply_gdal_env()
                    ctx.dask_starter = lambda: stack.enter_context(dask_runtime(spec))
                else:
                    ctx.client = stack.enter_context(dask_runtime(spec))
            except ImalysError as exc:
                raise home_cmd.error(str(exc.args[0]) if exc.args else str(exc),
                                     parameter="scheduler" if spec.scheduler else "memory" if spec.memory else "workers",
                                     hint=getattr(exc, "hint", None)) from exc
            except (OSError, ValueError, RuntimeError, TimeoutError) as exc:
                # starting or reaching the Dask scheduler that home asked for
                log.debug("%s", traceback.format_exc())
                raise home_cmd.error(f"cannot use the Dask scheduler {spec.scheduler or 'local'}: {exc}",
                                     parameter="scheduler" if spec.scheduler else "workers",
                                     hint="check the address (tcp://host:8786) and that the scheduler is running") from exc
            for cmd in chain.commands:
                if cmd.name in ("home", "replace"):
                    with runlog.command(cmd.name, cmd.line, _params(cmd)):
                        pass
                    continue
                handler = handler_for(cmd.name)
                if cmd.name not in DASK_ON_DEMAND:
                    ctx.use_dask()
                with runlog.command(cmd.name, cmd.line, _params(cmd)):
                    try:
                        with cluster_faults(ctx.client):  # a cluster that cannot finish: a user error, not a hang
                            handler(ctx, cmd)
                    except ChainError:
                        raise
                    except (ImalysError, OSError) as exc:
                        log.debug("%s", traceback.format_exc())
                        raise _located(cmd, exc, workdir.path if cmd.name in ("import", "compile", "reduce") else None) from exc
                    except RuntimeError as exc:
                        read_error = _read_error(exc)
                        if read_error is None:
                            raise
                        log.debug("%s", traceback.format_exc())
                        raise cmd.error(f"cannot read {read_error}", hint="the archive or file was moved, deleted or is "
                                        "damaged; run catalog again or restore it") from exc
        ok = True
    except ChainError as exc:
        log.error("%s", exc, extra={"file_only": True})
        if exc.__cause__ is not None:
            log.debug("cause: %s", "".join(traceback.format_exception(exc.__cause__)))
        raise
    except KeyboardInterrupt as exc:
        signame = getattr(exc, "signame", "SIGINT")
        log.error("stopped by %s; temporary files removed, finished products kept", signame, extra={"file_only": True})
        raise
    except Exception as exc:
        log.error("internal error:\n%s", traceback.format_exc(), extra={"file_only": True})
        try:  # the CLI names the log in its message (an attribute no exception class declares)
            setattr(exc, "imalys_log", runlog.path)  # noqa: B010 (mypy: no exception class declares it)
        except AttributeError:
            pass
        raise
    finally:
        # on failure the CLI prints the error last; the summary then goes to the log file only
        log.info("finished with %d warning(s), %d error(s)%s", runlog.warnings, runlog.errors,
                 f" (every warning is in the log {runlog.path})" if runlog.warnings and runlog.path else "",
                 extra={} if ok else {"file_only": True})
    return ctx
