"""Dask plugins of a run on a distributed scheduler, in their own module so that a run on the
in-process scheduler never imports `distributed` (about a second of start-up): the cluster runtime
and the progress display import this module only when they talk to a distributed Client. Classes at
module level, so workers and the scheduler unpickle them by reference."""
from __future__ import annotations

import os
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

from .names import GDAL_ENV, GDAL_ENV_PLUGIN, TASK_COUNTER


class GdalEnvPlugin(WorkerPlugin):
    """Sets the client's GDAL settings in every worker process, including workers that join or
    restart later (`client.run` would reach only those present now). Values a worker's environment
    already has (e.g. from its pod spec) are kept. `cachemax`: the user's GDAL cache (MB,
    IMALYS_GDAL_CACHEMAX on the client) — it wins on every worker; without it a worker with a
    memory limit gets an eighth of it (settings.Settings.worker_gdal_cachemax)."""

    name = GDAL_ENV_PLUGIN

    def __init__(self, env: dict[str, str] | None = None, cachemax: int | None = None):
        self.env = dict(env or GDAL_ENV)
        self.cachemax = cachemax

    def setup(self, worker: Any) -> None:
        from ..settings import Settings, SettingsError

        for key, value in self.env.items():
            os.environ.setdefault(key, value)
        # GDAL's block cache is per process: sized so it cannot push a small worker over its limit
        limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
        cachemax = self.cachemax
        if cachemax is None:  # the worker's own environment (a pod spec) may say it
            try:
                cachemax = Settings.from_env().gdal_cachemax
            except SettingsError:
                cachemax = None
        worker_cache = Settings(gdal_cachemax=cachemax).worker_gdal_cachemax(limit)
        if worker_cache is not None:
            os.environ["GDAL_CACHEMAX"] = worker_cache


class TaskCounter(SchedulerPlugin):
    """On the scheduler: per client, tasks submitted and tasks finished (processing → memory).
    A task that fails (erred, e.g. after killing its workers) is not work done: it counts as
    expected but never as finished."""

    name = TASK_COUNTER

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}
        self.owner: dict[Any, str] = {}

    def update_graph(self, scheduler: Any, *, client: str = "", tasks: Any = (), **kwargs: Any) -> None:
        c = self.counts.setdefault(client, [0, 0])
        for key in tasks or ():
            if key not in self.owner:
                self.owner[key] = client
                c[0] += 1

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start == "processing" and finish == "memory":
            client = self.owner.pop(key, None)
            if client is not None:
                self.counts[client][1] += 1
        elif finish == "forgotten":
            client = self.owner.pop(key, None)
            if client is not None:  # never ran (cancelled): no longer expected
                self.counts[client][0] -= 1
