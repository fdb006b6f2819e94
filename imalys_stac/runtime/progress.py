"""Progress bars for Dask computations, on the terminal only (never in the log file)."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from dask.callbacks import Callback
from tqdm.auto import tqdm


def progress_enabled() -> bool:
    return sys.stderr.isatty()


class TqdmCallback(Callback):
    """A dask local-scheduler callback that drives one tqdm bar per compute."""

    def __init__(self, desc: str):
        super().__init__()
        self.desc = desc
        self.bar: tqdm | None = None

    def _start_state(self, dsk, state):  # noqa: ANN001 - dask's callback signature
        total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        self.bar = tqdm(total=total, desc=self.desc, unit="task", leave=False, file=sys.stderr)

    def _posttask(self, key, result, dsk, state, worker_id):  # noqa: ANN001
        if self.bar is not None:
            self.bar.update(1)

    def _finish(self, dsk, state, errored):  # noqa: ANN001
        if self.bar is not None:
            self.bar.close()


@contextmanager
def dask_progress(desc: str) -> Iterator[None]:
    """Show a bar for dask work in this block when stderr is a terminal."""
    if not progress_enabled():
        yield
        return
    try:
        from distributed import get_client

        get_client()
        distributed_active = True
    except (ImportError, ValueError):
        distributed_active = False
    if distributed_active:
        # The distributed scheduler reports through its dashboard; tqdm callbacks only see local work.
        yield
        return
    with TqdmCallback(desc):
        yield
