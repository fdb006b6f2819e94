"""Where Dask runs: in-process (default), a local process cluster, any scheduler by address, or
Kubernetes. The choice comes from `home` (`scheduler`, `workers`, `memory`) or, for batch jobs
that must not edit chains, from the environment (`IMALYS_SCHEDULER`, `IMALYS_WORKERS`,
`IMALYS_MEMORY`).
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import dask

log = logging.getLogger("imalys_stac.runtime")

# GDAL settings for the client and every worker: a block cache large enough for several
# 512-pixel tiles per thread, and a cache for the archive members read through /vsitar/.
# (Not GDAL_DISABLE_READDIR_ON_OPEN: it hides sidecar files such as ENVI's .hdr.)
GDAL_ENV = {
    "GDAL_CACHEMAX": "512",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": str(64 * 1024 * 1024),
}


@dataclass(frozen=True)
class ClusterSpec:
    """What `home` (or the environment) asked for."""

    scheduler: str | None = None  # None/"local"/"threads", "processes", "tcp://…", "kubernetes"
    workers: int | None = None
    memory: str | None = None  # per worker, e.g. "4GB"

    @classmethod
    def resolve(cls, scheduler: str | None, workers: int | None, memory: str | None) -> "ClusterSpec":
        return cls(
            scheduler=os.environ.get("IMALYS_SCHEDULER") or scheduler,
            workers=int(os.environ["IMALYS_WORKERS"]) if os.environ.get("IMALYS_WORKERS") else workers,
            memory=os.environ.get("IMALYS_MEMORY") or memory,
        )

    @property
    def kind(self) -> str:
        s = (self.scheduler or "local").strip()
        if s in ("local", "threads", "threaded", ""):
            return "threads"
        if s == "processes":
            return "processes"
        if s == "kubernetes":
            return "kubernetes"
        return "address"


def apply_gdal_env() -> None:
    for key, value in GDAL_ENV.items():
        os.environ.setdefault(key, value)


@contextmanager
def dask_runtime(spec: ClusterSpec) -> Iterator[object | None]:
    """Yield a distributed Client (or None for the in-process threaded scheduler) for a run."""
    apply_gdal_env()
    kind = spec.kind
    if kind == "threads":
        workers = spec.workers or os.cpu_count() or 1
        log.debug("dask: in-process threaded scheduler, %d threads", workers)
        with dask.config.set(scheduler="threads", num_workers=workers):
            yield None
        return

    from distributed import Client

    if kind == "processes":
        from distributed import LocalCluster

        n = spec.workers or max(1, (os.cpu_count() or 2) // 1)
        kwargs = {"n_workers": n, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
        if spec.memory:
            kwargs["memory_limit"] = spec.memory
        log.info("dask: local cluster, %d worker processes%s", n, f", {spec.memory} each" if spec.memory else "")
        with LocalCluster(**kwargs) as cluster, Client(cluster) as client:
            client.run(apply_gdal_env)
            yield client
        return

    if kind == "kubernetes":
        try:
            from dask_kubernetes.operator import KubeCluster
        except ImportError as exc:  # pragma: no cover - optional extra
            raise RuntimeError(
                "scheduler = kubernetes needs the optional extra: pip install 'imalys-stac[kubernetes]'"
            ) from exc
        image = os.environ.get("IMALYS_IMAGE", "imalys-stac:latest")
        n = spec.workers or 2
        resources = {"limits": {"memory": spec.memory}} if spec.memory else None
        log.info("dask: Kubernetes cluster, image %s, %d workers", image, n)
        cluster = KubeCluster(name="imalys", image=image, n_workers=n, resources=resources)  # pragma: no cover
        try:  # pragma: no cover - needs a cluster
            with Client(cluster) as client:
                client.run(apply_gdal_env)
                yield client
        finally:  # pragma: no cover
            cluster.close()
        return

    log.info("dask: connecting to scheduler %s", spec.scheduler)
    with Client(spec.scheduler, timeout="30s") as client:
        client.run(apply_gdal_env)
        yield client
