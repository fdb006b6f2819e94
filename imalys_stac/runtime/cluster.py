"""Where Dask runs: in-process (default), a local process cluster, any scheduler by address, or
an ephemeral Kubernetes cluster. The choice comes from `home` (`scheduler`, `workers`, `memory`)
or, for batch jobs that must not edit chains, from the environment (`IMALYS_SCHEDULER`,
`IMALYS_WORKERS`, `IMALYS_MEMORY`, read by :mod:`imalys_stac.settings`).

On a distributed scheduler the run is made fault-tolerant and bounded:
- every worker, also one that joins or is restarted later, gets the GDAL settings (a worker
  plugin), so remote hrefs (https://, /vsis3/, /vsigs/) behave the same on all of them;
- workers that leave the cluster are logged as they leave (the scheduler re-runs their tasks);
- a task that kills `allowed-failures` + 1 workers fails with `KilledWorker`, and work that waits
  `IMALYS_NO_WORKERS_TIMEOUT` seconds (default 120) without any worker fails with
  `NoWorkerError`, even on a scheduler started elsewhere; :func:`cluster_faults` turns both into
  one-line user errors instead of a hang or a traceback.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import ResourceError
from ..settings import Settings, current
from ..settings import parse_memory as _parse_size
from .client import active_client
from .names import GDAL_ENV

log = logging.getLogger("imalys_stac.runtime")

#: below this a worker cannot even hold its own libraries: it would be killed and restarted forever
MIN_WORKER_MEMORY = 256 * 2**20  # as the chain validator's minimum for `home memory`
#: tasks that kill this many workers plus one fail (KilledWorker) instead of killing more
ALLOWED_FAILURES = 3
#: default seconds that work may wait with no worker at all before it fails (IMALYS_NO_WORKERS_TIMEOUT)
NO_WORKERS_TIMEOUT = Settings.no_workers_timeout
#: where the volumes of a Kubernetes run are mounted (the same paths in every pod)
KUBE_VOLUMES = {"archives": "/data/archives", "catalog": "/data/catalog", "work": "/data/work", "results": "/data/results"}

def parse_memory(text: str) -> int | None:
    """Bytes of a memory size like 4GB, 512MB, 2GiB; None for `auto` (see settings.parse_memory)."""
    try:
        return _parse_size(text)
    except ValueError:
        raise ResourceError(f"memory = {text} is not a size", hint="write it like 4GB, 512MB or 2GiB") from None


@dataclass(frozen=True)
class ClusterSpec:
    """What `home` (or the environment) asked for."""

    scheduler: str | None = None  # None/"local"/"threads", "processes", "tcp://…", "kubernetes"
    workers: int | None = None
    memory: str | None = None  # per worker, e.g. "4GB"

    @classmethod
    def resolve(cls, scheduler: str | None, workers: int | None, memory: str | None,
                settings: Settings | None = None) -> ClusterSpec:
        """What `home` asked for, the settings (IMALYS_SCHEDULER, …) overriding it."""
        s = settings or current()
        return cls(
            scheduler=s.scheduler or scheduler,
            workers=s.workers if s.workers is not None else workers,
            memory=s.memory or memory,
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

    def memory_bytes(self) -> int | None:
        """Bytes per worker, checked: a limit too small to hold a worker is refused up front."""
        if not self.memory:
            return None
        n = parse_memory(self.memory)
        if n is not None and n < MIN_WORKER_MEMORY:
            # units as the user wrote them: 260MB (10⁶) is below 256 MiB (2²⁰), so both are named
            raise ResourceError(
                f"memory = {self.memory} per worker is too small ({n / 1e6:.0f} MB = {n / 2**20:.0f} MiB): a Dask "
                f"worker needs at least 256 MiB ({MIN_WORKER_MEMORY / 1e6:.0f} MB) for its libraries and one block "
                f"of pixels, and would be killed and restarted over and over",
                hint="give each worker at least 256MiB or 270MB (2GB or more for large frames)")
        return n


def apply_gdal_env(settings: Settings | None = None) -> None:
    """GDAL's configuration in this process (values already in the environment are kept, except
    GDAL_CACHEMAX when IMALYS_GDAL_CACHEMAX asks for one)."""
    s = settings or current()
    for key, value in s.gdal_env().items():
        os.environ.setdefault(key, value)
    if s.gdal_cachemax is not None:
        os.environ["GDAL_CACHEMAX"] = str(s.gdal_cachemax)


def no_workers_timeout() -> float:
    return current().no_workers_timeout


def _harden_scheduler(dask_scheduler: Any, no_workers: float, allowed: int | None) -> dict[str, Any]:
    """Run on the scheduler: fail work that waits too long with no worker, unless its own
    configuration already says so; returns the values in force."""
    if dask_scheduler.no_workers_timeout is None:
        dask_scheduler.no_workers_timeout = no_workers
    if allowed is not None:
        dask_scheduler.allowed_failures = allowed
    return {"no_workers_timeout": dask_scheduler.no_workers_timeout, "allowed_failures": dask_scheduler.allowed_failures}


class ClusterWatch:
    """Logs what happens to the workers of a run (from the scheduler's event stream)."""

    def __init__(self, client: Any):
        self.client = client
        self.lost: list[str] = []
        self.settings: dict[str, Any] = {}

    def start(self, *, allowed_failures: int | None = None) -> ClusterWatch:
        client = self.client
        try:
            from .plugins import GdalEnvPlugin

            s = current()
            client.register_plugin(GdalEnvPlugin(s.gdal_env(), cachemax=s.gdal_cachemax))
        except Exception as exc:  # a scheduler/worker without imalys-stac cannot unpickle the plugin
            log.warning("dask: could not install the GDAL settings on the workers (%s); "
                        "set them in the workers' environment (see deploy/README.md)", exc)
        apply_gdal_env()
        try:
            self.settings = client.run_on_scheduler(_harden_scheduler, no_workers=no_workers_timeout(),
                                                    allowed=allowed_failures)
        except Exception as exc:
            log.warning("dask: could not set the scheduler's no-workers timeout (%s); set "
                        "DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT on the scheduler", exc)
        else:
            log.debug("dask: scheduler settings %s", self.settings)
        try:
            client.subscribe_topic("all", self._event)
        except Exception as exc:  # pragma: no cover - very old schedulers
            log.debug("dask: no scheduler events (%s)", exc)
        n = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        link = _dashboard(client)
        log.info("dask: %s, %d worker(s)%s", client.scheduler.address, n, f"; dashboard {link}" if link else "")
        return self

    def stop(self) -> None:
        """Stop listening before the client closes (else the scheduler reports a closed comm
        while telling this client that it left)."""
        try:
            self.client.unsubscribe_topic("all")
        except Exception:  # pragma: no cover - already closed
            pass

    @contextmanager
    def watching(self) -> Iterator[ClusterWatch]:
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def _event(self, event: Any) -> None:
        _, msg = event if isinstance(event, tuple) and len(event) == 2 else (None, event)
        if not isinstance(msg, dict):
            return
        action = msg.get("action")
        if action == "remove-worker":
            worker = msg.get("worker", "?")
            running = len(msg.get("processing-tasks") or ())
            lost = len(msg.get("lost-computed-tasks") or ())
            if msg.get("expected"):
                log.info("dask: worker %s left the cluster (closed on request)", worker)
                return
            self.lost.append(worker)
            log.warning("dask: worker %s died or lost contact%s%s; the scheduler runs that work again on the "
                        "remaining workers", worker,
                        f" while running {running} task(s)" if running else "",
                        f", {lost} finished result(s) lost with it" if lost else "")
        elif action == "add-worker":
            log.info("dask: worker %s joined the cluster", msg.get("worker", "?"))


def _dashboard(client: Any) -> str | None:
    try:
        info = client.scheduler_info(n_workers=0)
        if "dashboard" not in info.get("services", {}):
            return None
        return client.dashboard_link
    except Exception:  # pragma: no cover
        return None


def _dashboard_address() -> str | None:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return None
    return current().dashboard


def kube_cluster_spec(spec: ClusterSpec, *, image: str | None = None, name: str = "imalys",
                      claims: dict[str, str] | None = None) -> dict[str, Any]:
    """The `DaskCluster` resource that `scheduler = kubernetes` asks the operator for: the image's
    entrypoint turns the operator's `dask-scheduler`/`dask-worker` arguments into `dask scheduler`/
    `dask worker`; every pod mounts the same volumes at the same paths (`KUBE_VOLUMES`), so the
    paths in chains and /vsitar/ hrefs resolve on the workers as on the runner. Claim names come
    from the settings (`IMALYS_CLAIM_<NAME>`, default `imalys-<name>`)."""
    from dask_kubernetes.operator import make_cluster_spec

    settings = current()
    image = image or settings.image
    n = spec.workers or 2
    mem = spec.memory_bytes()
    resources = None
    args = []
    if mem:
        quantity = f"{mem // 2**20}Mi"
        resources = {"requests": {"memory": quantity, "cpu": "1"}, "limits": {"memory": quantity}}
        args = ["--memory-limit", str(mem)]
    env = {"DASK_DISTRIBUTED__SCHEDULER__NO_WORKERS_TIMEOUT": f"{int(no_workers_timeout())}s",
           "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(ALLOWED_FAILURES), **settings.gdal_env()}
    cluster = make_cluster_spec(name=name, image=image, n_workers=n, resources=None, env=env)
    claims = claims or settings.kube_claims()
    volumes = [{"name": k, "persistentVolumeClaim": {"claimName": claims[k]}} for k in KUBE_VOLUMES]
    mounts = [{"name": k, "mountPath": path} for k, path in KUBE_VOLUMES.items()]
    for role in ("worker", "scheduler"):
        pod = cluster["spec"][role]["spec"]
        pod["volumes"] = volumes
        pod["securityContext"] = {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}
        for c in pod["containers"]:
            c["volumeMounts"] = mounts
            c["imagePullPolicy"] = "IfNotPresent"
            if role == "worker":
                c["args"] = c["args"] + ["--nthreads", "1"] + args
                if resources:
                    c["resources"] = resources
            elif c.get("resources") is None:
                c.pop("resources", None)
    return cluster


@contextmanager
def dask_runtime(spec: ClusterSpec) -> Iterator[object | None]:
    """Yield a distributed Client (or None for the in-process threaded scheduler) for a run."""
    import dask  # a chain whose commands need no Dask (catalog, a small import) never enters this

    apply_gdal_env()
    kind = spec.kind
    if kind == "threads":
        workers = spec.workers or os.cpu_count() or 1
        log.debug("dask: in-process threaded scheduler, %d threads", workers)
        # the threaded scheduler's function, not its name: dask resolves a name by importing
        # distributed to look for a client (a second of start-up a run on this scheduler never needs)
        from dask.threaded import get as threaded_get

        with dask.config.set(scheduler=threaded_get, num_workers=workers):
            yield None
        return

    from distributed import Client

    memory = spec.memory_bytes()
    if kind == "processes":
        from distributed import LocalCluster

        n = spec.workers or max(1, os.cpu_count() or 2)
        kwargs: dict[str, Any] = {"n_workers": n, "threads_per_worker": 1, "processes": True,
                                  "dashboard_address": _dashboard_address()}
        if memory:
            kwargs["memory_limit"] = memory
        log.info("dask: local cluster, %d worker processes%s", n, f", {spec.memory} each" if spec.memory else "")
        with dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                              "distributed.scheduler.no-workers-timeout": f"{no_workers_timeout()}s"}):
            with library_logging_to_file(), LocalCluster(**kwargs) as cluster, Client(cluster) as client:
                with ClusterWatch(client).watching():
                    yield client
        return

    if kind == "kubernetes":
        try:
            from dask_kubernetes.operator import KubeCluster
        except ImportError as exc:  # pragma: no cover - optional extra
            raise ResourceError("scheduler = kubernetes needs the optional extra",
                                hint="pip install 'imalys-stac[kubernetes]'") from exc
        import uuid

        # a name of its own: a second run must neither join nor, at its end, delete this cluster
        resource = kube_cluster_spec(spec, name=f"imalys-{uuid.uuid4().hex[:8]}")
        n = resource["spec"]["worker"]["replicas"]
        log.info("dask: starting a Kubernetes cluster, image %s, %d workers",
                 resource["spec"]["worker"]["spec"]["containers"][0]["image"], n)
        cluster = KubeCluster(custom_cluster_spec=resource, shutdown_on_close=True)  # pragma: no cover
        try:  # pragma: no cover - needs a cluster
            with library_logging_to_file(), Client(cluster) as client:
                with ClusterWatch(client).watching():
                    yield client
        finally:  # pragma: no cover
            cluster.close()
        return

    log.info("dask: connecting to scheduler %s", spec.scheduler)
    check_scheduler_address(str(spec.scheduler))
    with library_logging_to_file(), Client(spec.scheduler, timeout="30s") as client:
        with ClusterWatch(client).watching():
            yield client


#: seconds to reach a scheduler's port, and then to hear its greeting (a Dask scheduler speaks first)
CONNECT_TIMEOUT = 10.0
#: a Dask greeting (handshake) is a few hundred bytes; a first frame claiming more is not Dask
_MAX_HANDSHAKE = 1 << 20
_DEFAULT_PORT = 8786


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a `tcp://host:port` (or bare `host:port`) address; None for other
    protocols (tls://, ws://, ucx://, inproc://), which distributed checks itself."""
    text = address.strip()
    if "://" in text:
        scheme, _, text = text.partition("://")
        if scheme.lower() != "tcp":
            return None
    text = text.rstrip("/")
    if text.startswith("["):  # [::1]:8786
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        return None
    try:
        return host, int(port) if port else _DEFAULT_PORT
    except ValueError:
        raise ResourceError(f"scheduler = {address}: the port {port!r} is not a number",
                            hint="write the address like tcp://host:8786") from None


def _printable(data: bytes, limit: int = 60) -> str:
    text = data.split(b"\n", 1)[0].strip().decode("latin-1")
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text[:limit] + ("…" if len(text) > limit else "")


def _what_speaks(first: bytes) -> str:
    """A guess at the service from its first bytes (for the message)."""
    if first.startswith(b"SSH-"):
        return "an SSH server"
    if first.startswith(b"HTTP/"):
        return "an HTTP server (a Dask dashboard is on 8787, the scheduler on 8786)"
    if first.startswith((b"220", b"* OK", b"+OK")):
        return "a mail or FTP server"
    if first[:1] in (b"\x15", b"\x16"):
        return "a TLS server (for a TLS scheduler write tls://…)"
    return "a service that is not a Dask scheduler"


def check_scheduler_address(address: str, *, connect_timeout: float = CONNECT_TIMEOUT,
                            answer_timeout: float = CONNECT_TIMEOUT) -> None:
    """Check, before distributed connects, that a Dask scheduler answers at `address`.

    distributed waits without a limit for the greeting of whatever listens there (an HTTP server
    waits for a request: a hang), and reads the first 8 bytes of a service that speaks first as
    the length of a message (an SSH banner asks for exabytes: MemoryError). A scheduler sends its
    greeting at once: an 8-byte length of a few hundred bytes. Anything else is a ResourceError
    naming what answered."""
    where = _host_port(address)
    if where is None:
        return
    host, port = where
    label = f"scheduler = {address}"
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout)
    except socket.gaierror as exc:
        raise ResourceError(f"{label}: unknown host {host} ({exc.strerror or exc})",
                            hint="check the host name in the address") from None
    except ConnectionRefusedError:
        raise ResourceError(f"{label}: nothing listens on {host}:{port} (connection refused)",
                            hint="start the scheduler (dask scheduler --port PORT) or check the port") from None
    except TimeoutError:
        raise ResourceError(f"{label}: no answer from {host}:{port} within {connect_timeout:g} s",
                            hint="check the address, that the host is up and that no firewall drops the port") from None
    except OSError as exc:
        raise ResourceError(f"{label}: cannot reach {host}:{port} ({exc.strerror or exc})",
                            hint="check the address and the network") from None
    with sock:
        sock.settimeout(answer_timeout)
        first = b""
        try:
            while len(first) < 8:
                chunk = sock.recv(8 - len(first))
                if not chunk:
                    break
                first += chunk
        except TimeoutError:
            pass
        except OSError as exc:
            raise ResourceError(f"{label}: {host}:{port} accepted the connection and then failed ({exc.strerror or exc})",
                                hint="check that the address is the scheduler's (port 8786 by default)") from None
        if len(first) == 8:
            (length,) = struct.unpack("<Q", first)
            if 0 < length <= _MAX_HANDSHAKE:
                return  # a Dask greeting
        if first:
            try:  # the rest of a text banner, for the message
                sock.settimeout(0.2)
                first += sock.recv(200)
            except OSError:
                pass
            raise ResourceError(f"{label}: {host}:{port} is not a Dask scheduler; {_what_speaks(first)} answered "
                                f"{_printable(first)!r}",
                                hint="check the port: a Dask scheduler listens on 8786 by default")
        # silent: ask as a web browser would, to name what listens
        reply = b""
        try:
            sock.settimeout(min(answer_timeout, 2.0))
            sock.sendall(f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode("ascii", "replace"))
            reply = sock.recv(200)
        except OSError:
            pass
    if reply.startswith(b"HTTP/"):
        raise ResourceError(f"{label}: {host}:{port} is not a Dask scheduler; {_what_speaks(reply)} answered "
                            f"{_printable(reply)!r}",
                            hint="check the port: a Dask scheduler listens on 8786 by default")
    raise ResourceError(f"{label}: {host}:{port} accepted the connection but sent no Dask greeting within "
                        f"{answer_timeout:g} s{f' (it answered {_printable(reply)!r} to a web request)' if reply else ''}; "
                        "not a Dask scheduler", hint="check the port: a Dask scheduler listens on 8786 by default")


#: loggers that distributed (at import) gives a handler of their own on the terminal; asyncio's
#: errors (a lost scheduler's tasks) would reach the terminal through logging's last resort
_LIBRARY_TERMINAL_LOGGERS = ("distributed", "distributed.client", "tornado", "tornado.application", "bokeh", "asyncio")


@contextmanager
def library_logging_to_file() -> Iterator[None]:
    """While a distributed cluster runs, its libraries log to the run's log file only: their own
    terminal handlers are taken away (a cluster that loses its workers logs hundreds of lines) and
    the handlers the run log attached to `distributed` (the file) serve all of them. Restored after."""
    import distributed  # noqa: F401  (configures its loggers at import; they are changed after that)

    file_handlers = [h for h in logging.getLogger("distributed").handlers if not _is_terminal(h)]
    saved: list[tuple[logging.Logger, list[logging.Handler], bool]] = []
    for name in _LIBRARY_TERMINAL_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.propagate))
        for h in list(logger.handlers):
            if _is_terminal(h):
                logger.removeHandler(h)
        if name != "distributed":
            for h in file_handlers:
                if h not in logger.handlers:
                    logger.addHandler(h)
            logger.propagate = False
        if not logger.handlers:  # no run log: keep them quiet rather than on logging's last resort
            logger.addHandler(logging.NullHandler())
    try:
        yield
    finally:
        for logger, handlers, propagate in saved:
            for h in list(logger.handlers):
                logger.removeHandler(h)
            for h in handlers:
                logger.addHandler(h)
            logger.propagate = propagate


def _is_terminal(handler: logging.Handler) -> bool:
    return type(handler) is logging.StreamHandler  # FileHandler and the run log's own are subclasses or others


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _address(client: Any) -> str:
    try:
        return str(client.scheduler.address)
    except Exception:  # pragma: no cover - no scheduler object any more
        return ""


def _paused_workers(client: Any) -> int:
    """How many workers the scheduler knows but has paused (memory), 0 if it cannot tell."""
    try:
        workers = client.scheduler_info(n_workers=-1).get("workers", {}).values()
        return sum(1 for w in workers if str(w.get("status", "")).endswith("paused"))
    except Exception:  # pragma: no cover - scheduler gone
        return 0


@contextmanager
def cluster_faults(client: Any) -> Iterator[None]:
    """Turn what a distributed cluster reports when it cannot finish the work into one-line
    user errors (ResourceError) — a worker killer task, no workers left, a lost scheduler —
    instead of a traceback; anything else passes unchanged."""
    if client is None:
        yield
        return
    from concurrent.futures import CancelledError

    from distributed.client import ClosedClientError
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker, NoValidWorkerError, NoWorkerError

    try:
        yield
    except KilledWorker as exc:
        worker = getattr(exc.last_worker, "address", None) or "?"
        raise ResourceError(
            f"a task killed {exc.allowed_failures + 1} Dask workers in a row and was given up "
            f"(last on {worker}; task {exc.task!r}); usually a worker runs out of memory",
            hint="give each worker more memory (home memory = …, or the pod's limit) or use fewer workers per node",
        ) from exc
    except (NoWorkerError, NoValidWorkerError) as exc:
        # NoValidWorkerError: the same wait for a task restricted to some workers (the writer's)
        paused = _paused_workers(client)
        if paused:  # workers are there but Dask paused them: memory, not a lost cluster
            raise ResourceError(
                f"no work could run for {exc.timeout:.0f} s: all {paused} Dask worker(s) are paused because they "
                f"reached 80 % of their memory limit; the run stopped",
                hint="give each worker more memory (home memory = …, or the pod's limit) or use smaller blocks",
            ) from exc
        raise ResourceError(
            f"the Dask cluster has had no worker for {exc.timeout:.0f} s; the run stopped "
            f"(workers that left are listed above in the log)",
            hint="check why the workers died (their logs, memory limits) and that new ones can start",
        ) from exc
    except (CancelledError, ClosedClientError, CommClosedError, OSError, TimeoutError) as exc:
        # a scheduler that died or cannot be reached any more: the client stops "running" (it
        # reconnects, then closes) and the work in flight fails with whatever was waiting on it;
        # an OSError of a running client is the run's own (a full disk) and passes unchanged
        if isinstance(exc, (ClosedClientError, CommClosedError)) or getattr(client, "status", "running") != "running":
            raise ResourceError(f"lost the connection to the Dask scheduler {_address(client)} ({_describe(exc)}); "
                                "the run stopped", hint="check that the scheduler is still running, then run again "
                                "(finished products are kept)") from exc
        raise


__all__ = ["ClusterSpec", "GDAL_ENV", "active_client", "check_scheduler_address", "library_logging_to_file", "KUBE_VOLUMES", "ClusterWatch", "apply_gdal_env",
           "cluster_faults", "dask_runtime", "kube_cluster_spec", "parse_memory"]
