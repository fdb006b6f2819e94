"""Progress of long steps, on any scheduler: a bar on a terminal, percentage lines in the log.

A step (`with dask_progress("bestof"):`) learns how far it is from the best source it has:
1. the output written so far — `track(sink, shape)` wraps the block sink of a streamed write
   (reduce, export) and counts written pixels; exact on every scheduler;
2. otherwise tasks: a dask callback on the in-process scheduler, or a small scheduler plugin on a
   distributed scheduler (tasks of this client that finished / tasks submitted).

On a terminal (stderr is a TTY) a tqdm bar shows it, and the log file gets the percentage lines;
without a terminal (batch jobs, Kubernetes, redirected output) the lines go to stderr as well:
`   bestof: 40 % (12 s)`, at most one every `IMALYS_PROGRESS_INTERVAL` seconds (default 10), and
`100 %` at the end of every step that lasted longer than that.
"""
from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .client import active_client
from .names import TASK_COUNTER

log = logging.getLogger("imalys_stac.progress")

_current: list[StepProgress] = []
_lock = threading.Lock()


def _tqdm() -> Any:
    from tqdm.auto import tqdm  # a bar only on a terminal: batch runs never import it

    return tqdm


def progress_enabled() -> bool:
    """A terminal bar is wanted (stderr is a TTY)."""
    return sys.stderr.isatty()


def _interval() -> float:
    from ..settings import current

    return current().progress_interval


class StepProgress:
    """The progress of one step as a fraction; shown as a bar and/or log lines."""

    def __init__(self, desc: str, *, tty: bool | None = None, interval: float | None = None):
        self.desc = desc
        self.tty = progress_enabled() if tty is None else tty
        self.interval = _interval() if interval is None else interval
        self.start = time.monotonic()
        self.fraction = 0.0
        self.source: str | None = None  # "output" (pixels written) beats "tasks"
        self.reported = -1  # last logged percentage
        self.last_line = self.start
        self.lock = threading.Lock()
        self.bar = _tqdm()(total=100, desc=desc, unit="%", leave=False, file=sys.stderr,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]") if self.tty else None

    def update(self, fraction: float, source: str) -> None:
        with self.lock:
            if self.source == "output" and source != "output":
                return
            self.source = source
            fraction = min(max(fraction, 0.0), 1.0)
            if fraction <= self.fraction and source != "output":
                return
            self.fraction = fraction
            pct = int(100 * fraction)
            if self.bar is not None:
                self.bar.n = 100 * fraction
                self.bar.refresh()
            now = time.monotonic()
            if pct > self.reported and (now - self.last_line >= self.interval) and pct < 100:
                self.reported = pct
                self.last_line = now
                # beside a bar the lines are for the file only (the terminal level is INFO)
                log.log(logging.DEBUG if self.tty else logging.INFO, "   %s: %d %% (%.0f s)", self.desc, pct, now - self.start)

    def close(self, failed: bool = False) -> None:
        """End the step. `failed`: it stopped with an error — then the share reached is what the
        log says (never a 100 % of work that was not done)."""
        if self.bar is not None:
            self.bar.close()
        # Say that it ended when lines were shown, or when the step outlasted the interval: a step
        # that ends between two polls of a distributed scheduler has shown no line yet.
        elapsed = time.monotonic() - self.start
        if failed:
            # for the file only: the error itself is the last line on the terminal
            log.debug("   %s: stopped at %d %% (%.0f s)", self.desc, int(100 * self.fraction), elapsed)
        elif self.reported >= 0 or elapsed >= self.interval:
            log.log(logging.DEBUG if self.tty else logging.INFO, "   %s: 100 %% (%.0f s)", self.desc, elapsed)


def current() -> StepProgress | None:
    with _lock:
        return _current[-1] if _current else None


class _Tracked:
    """A block sink that reports the share of the output written."""

    def __init__(self, sink: Any, shape: tuple[int, ...], step: StepProgress):
        self.sink = sink
        self.total = max(1, int(_prod(shape)))
        self.done = 0
        self.step = step
        self.lock = threading.Lock()

    def __setitem__(self, key: tuple[slice, ...], value: Any) -> None:
        self.sink[key] = value
        n = int(_prod(tuple((s.stop - s.start) for s in key)))
        with self.lock:
            self.done += n
            done = self.done
        self.step.update(done / self.total, "output")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)


def _prod(values: tuple[int, ...]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def track(sink: Any, shape: tuple[int, ...]) -> Any:
    """`sink` counting the pixels written into the running step (unchanged outside a step)."""
    step = current()
    return sink if step is None else _Tracked(sink, shape, step)


@functools.cache
def _task_callback_type() -> type:
    """The dask callback class (made when the first step runs on the in-process scheduler: a
    module that only asks `progress_enabled` or tracks a sink does not import dask)."""
    from dask.callbacks import Callback

    class _TaskCallback(Callback):
        """In-process scheduler: tasks finished / tasks started, over all computes of the step."""

        def __init__(self, step: StepProgress):
            super().__init__()
            self.step = step
            self.total = 0
            self.done = 0

        def _start_state(self, dsk, state):  # noqa: ANN001 - dask's callback signature
            self.total += sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))

        def _posttask(self, key, result, dsk, state, worker_id):  # noqa: ANN001
            self.done += 1
            if self.total:
                self.step.update(self.done / self.total, "tasks")

    return _TaskCallback


def _scheduler_counts(dask_scheduler: Any, client_id: str) -> list[int]:
    plugin = dask_scheduler.plugins.get(TASK_COUNTER)
    return list(plugin.counts.get(client_id, [0, 0])) if plugin is not None else [0, 0]


@contextmanager
def _distributed_tasks(client: Any, step: StepProgress, period: float = 1.0) -> Iterator[None]:
    """Poll the scheduler plugin's counts of this client while the step runs."""
    try:
        if TASK_COUNTER not in client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.plugins)):
            from .plugins import TaskCounter

            client.register_plugin(TaskCounter())
        base = client.run_on_scheduler(_scheduler_counts, client_id=client.id)
    except Exception as exc:  # a scheduler without imalys-stac: bars from the output only
        log.debug("progress: no task counts from the scheduler (%s)", exc)
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(period):
            try:
                total, done = client.run_on_scheduler(_scheduler_counts, client_id=client.id)
            except Exception:
                return
            total, done = total - base[0], done - base[1]
            if total > 0:
                step.update(done / total, "tasks")

    thread = threading.Thread(target=poll, name="imalys-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@contextmanager
def step_progress(desc: str) -> Iterator[StepProgress]:
    """A step whose progress the block reports itself (`step.update(fraction, source)`), or a
    tracked sink inside it; no dask involved."""
    step = StepProgress(desc)
    with _lock:
        _current.append(step)
    failed = True
    try:
        yield step
        failed = False
    finally:
        with _lock:
            _current.remove(step)
        step.close(failed=failed)


@contextmanager
def dask_progress(desc: str) -> Iterator[StepProgress]:
    """Report the progress of the dask work in this block (see the module's docstring)."""
    with step_progress(desc) as step:
        client = active_client()
        if client is not None:
            with _distributed_tasks(client, step):
                yield step
        else:
            with _task_callback_type()(step):
                yield step
