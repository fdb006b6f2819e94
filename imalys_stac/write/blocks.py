"""Streaming an array to a block sink: compute one chunk at a time and write it in this process.

The sink is any object with `__setitem__(key, block)` where `key` is a tuple of slices into the
full array. Writes always happen in the calling process (GDAL/HDF5 handles cannot be pickled and
workers may not share our file system); only the chunk computations run on the scheduler."""
from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import dask
import dask.array as da
import numpy as np

from ..runtime.cluster import active_client
from ..runtime.progress import track


class BlockSink(Protocol):
    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None: ...


class DatasetSink:
    """Block sink writing (band, y, x) windows into an open rasterio dataset."""

    def __init__(self, dst: Any):
        self.dst = dst

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        from rasterio.windows import Window

        b, y, x = key
        self.dst.write(np.asarray(value, dtype=self.dst.dtypes[0]), indexes=list(range(b.start + 1, b.stop + 1)),
                       window=Window.from_slices(y, x))


class _Locked:
    """Serialises `__setitem__` calls of a sink (dask's threaded store calls from many threads)."""

    def __init__(self, sink: BlockSink):
        self.sink = sink
        self.lock = threading.Lock()
        self.closed = False

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        with self.lock:
            if self.closed:
                raise RuntimeError("write after the output was closed")
            self.sink[key] = np.asarray(value)

    def close(self) -> None:
        """No write after this returns. When one task fails, dask's threaded scheduler raises
        while other tasks may still be running; their late writes would recreate removed temps."""
        with self.lock:
            self.closed = True


class Parts:
    """A lazy (band, y, x) array computed in spatial parts, for areas whose whole graph would be
    too large to build: `build(window)` makes the dask array of one window = (row0, row1, col0,
    col1); `stream` builds, computes and writes one part before it builds the next, so the graph
    (and the client's memory for it) stays the size of a part whatever the area. The windows
    tile the array. `first`, when given, is window 0 already built (its band chunks are the
    array's). Holds no pixels: `numpy.asarray` computes every part (small arrays only).

    A duck array for xarray (shape, dtype, `__array_function__`), so a DataArray can carry it
    to the writers unchanged."""

    def __init__(self, shape: tuple[int, int, int], dtype: Any, windows: list[tuple[int, int, int, int]],
                 build: Any, first: Any = None):
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.windows = list(windows)
        self.build = build
        self._first = first
        covered = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in self.windows)
        if covered != self.shape[1] * self.shape[2]:
            raise ValueError(f"the parts cover {covered} pixels of {self.shape[1] * self.shape[2]}")

    ndim = 3

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """Band chunks of the parts; y/x: the windows' edges."""
        bands = self.part(0).chunks[0] if self._first is not None or self.windows else (self.shape[0],)
        ys = sorted({w[0] for w in self.windows} | {self.shape[1]})
        xs = sorted({w[2] for w in self.windows} | {self.shape[2]})
        return (tuple(bands), tuple(b - a for a, b in zip(ys, ys[1:])), tuple(b - a for a, b in zip(xs, xs[1:])))

    def part(self, i: int) -> Any:
        if i == 0 and self._first is not None:
            return self._first
        arr = self.build(self.windows[i])
        if i == 0:
            self._first = arr
        want = (self.shape[0], self.windows[i][1] - self.windows[i][0], self.windows[i][3] - self.windows[i][2])
        if tuple(arr.shape) != want:
            raise ValueError(f"part {i} {self.windows[i]} was built with shape {tuple(arr.shape)}, expected {want}")
        return arr

    def __iter__(self) -> Iterator[tuple[tuple[slice, ...], Any]]:
        """(key into the whole array, the part's dask array). The next part's graph is built in a
        thread while the caller computes this one (building is Python work on the client; the
        computing waits on the workers), so at most two parts' graphs exist at once; part 0's
        is dropped once it was handed out."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="imalys-parts") as pool:
            ahead = pool.submit(self.part, 0)
            for i, (r0, r1, c0, c1) in enumerate(self.windows):
                arr = ahead.result()
                if i == 0:
                    self._first = None
                if i + 1 < len(self.windows):
                    ahead = pool.submit(self.part, i + 1)
                yield (slice(0, self.shape[0]), slice(r0, r1), slice(c0, c1)), arr
                del arr

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        for key, arr in self:
            out[key] = np.asarray(arr)
        return out if dtype is None else out.astype(dtype)

    def __array_function__(self, func, types, args, kwargs):  # noqa: ANN001 - NumPy protocol
        return NotImplemented

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):  # noqa: ANN001 - NumPy protocol
        return NotImplemented

    def __repr__(self) -> str:
        return f"Parts(shape={self.shape}, dtype={self.dtype}, {len(self.windows)} parts)"


class _Offset:
    """The sink of a part: keys of the part shifted to its place in the whole array."""

    def __init__(self, sink: BlockSink, key: tuple[slice, ...]):
        self.sink, self.start = sink, [k.start for k in key]

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        self.sink[tuple(slice(s.start + o, s.stop + o) for s, o in zip(key, self.start))] = value


def part_windows(height: int, width: int, side: int) -> list[tuple[int, int, int, int]]:
    """Windows (row0, row1, col0, col1) of at most `side` × `side` pixels tiling a grid, row by row."""
    side = max(1, int(side))
    return [(y, min(y + side, height), x, min(x + side, width))
            for y in range(0, height, side) for x in range(0, width, side)]


def is_dask(data: Any) -> bool:
    """Lazy: a dask array, or `Parts` of dask arrays."""
    return isinstance(data, (da.Array, Parts))


def _chunk_slices(chunks: tuple[tuple[int, ...], ...]) -> list[tuple[slice, ...]]:
    starts = [np.cumsum((0,) + c[:-1]) for c in chunks]
    return [tuple(slice(int(s), int(s) + n) for s, n in zip(st, sz))
            for st, sz in zip(itertools.product(*starts), itertools.product(*chunks))]


def _local_scheduler_kind() -> str:
    """'threads' or 'sync' when dask.store may call a non-picklable sink in this process."""
    scheduler = dask.base.get_scheduler()
    if scheduler in (None, dask.threaded.get):
        return "threads"
    if scheduler is dask.local.get_sync:
        return "sync"
    return "other"


def numpy_windows(shape: tuple[int, ...], block: int) -> Iterator[tuple[slice, ...]]:
    """Windows of at most `block` rows × `block` columns covering an in-memory array."""
    lead = tuple(slice(0, n) for n in shape[:-2])
    for y in range(0, shape[-2], block):
        for x in range(0, shape[-1], block):
            yield lead + (slice(y, min(y + block, shape[-2])), slice(x, min(x + block, shape[-1])))


def stream(data: Any, sink: BlockSink, *, numpy_block: int = 1024) -> None:
    """Write `data` (dask or numpy) into `sink` chunk by chunk.

    - numpy: windows of `numpy_block` pixels, in this thread.
    - dask with the threaded or synchronous scheduler: `dask.array.store` with a lock; each task
      computes one chunk and writes it, so at most a few chunks are alive at once.
    - dask with a distributed Client: chunks are computed on the workers in batches (two batches
      in flight), gathered and written here as they complete.
    - any other scheduler: the same batching with `dask.compute`.
    - `Parts`: each part in turn as above, into its window of the sink.
    """
    sink = track(sink, tuple(data.shape))  # progress of the running step, on any scheduler
    if isinstance(data, Parts):  # one bounded graph per part, written into the same sink
        for key, part in data:
            _stream(part, _Offset(sink, key), numpy_block)
        return
    _stream(data, sink, numpy_block)


def _stream(data: Any, sink: BlockSink, numpy_block: int) -> None:
    if not is_dask(data):
        arr = np.asarray(data)
        for key in numpy_windows(arr.shape, numpy_block):
            sink[key] = arr[key]
        return
    client = active_client()
    if client is not None:
        _stream_distributed(data, sink, client)
    elif _local_scheduler_kind() == "threads" and data.ndim >= 2 and len(data.chunks[-2]) > 1:
        _stream_rows(data, sink)
    elif _local_scheduler_kind() in ("threads", "sync"):
        locked = _Locked(sink)
        try:
            # dask types `targets` as ArrayLike, but store only calls `target[key] = block` (its
            # docstring: "array-like objects ... that support setitem"), which _Locked does
            da.store(data, locked, lock=False, compute=True)  # type: ignore[arg-type]
        finally:
            locked.close()
    else:
        _stream_batches(data, sink)


def _stream_rows(data: da.Array, sink: BlockSink) -> None:
    """One row of chunks per compute call. A single `store` over the whole graph lets the
    threaded scheduler run input reads far ahead of the reductions that consume them (measured:
    3 GiB for 8 dates of a 4096² scene, growing with the dates); a row at a time bounds memory by
    one row of blocks. Rows follow chunk boundaries, so no input block is computed twice when
    the input is chunked like the output."""
    from concurrent.futures import ThreadPoolExecutor

    lead = tuple(slice(0, n) for n in data.shape[:-2])
    xs, x0 = [], 0
    for width in data.chunks[-1]:
        xs.append(slice(x0, x0 + width))
        x0 += width
    rows, y0 = [], 0
    for height in data.chunks[-2]:
        rows.append([lead + (slice(y0, y0 + height), x) for x in xs])
        y0 += height

    def write(keys, blocks) -> None:
        for key, block in zip(keys, blocks):
            sink[key] = block

    # the sink writes row i in its own thread while the scheduler computes row i + 1; a row's
    # blocks are computed together (each input block once) and written one by one, not first
    # concatenated into one row array (a copy of the row that showed as 8 % of a profile)
    with ThreadPoolExecutor(1, thread_name_prefix="imalys-write") as writer:
        pending = None
        for keys in rows:
            blocks = dask.compute(*[data[key] for key in keys])
            if pending is not None:
                pending.result()
            pending = writer.submit(write, keys, blocks)
        if pending is not None:
            pending.result()


def _batch_size(client: Any | None) -> int:
    if client is not None:
        try:
            threads = sum(client.nthreads().values())
        except Exception:  # pragma: no cover - scheduler gone
            threads = 2
    else:
        import os

        threads = os.cpu_count() or 2
    return max(2, 2 * threads)


def _stream_batches(data: da.Array, sink: BlockSink) -> None:
    keys = _chunk_slices(data.chunks)
    blocks = data.to_delayed().ravel()
    size = _batch_size(None)
    for i in range(0, len(keys), size):
        results = dask.compute(*blocks[i:i + size])
        for key, block in zip(keys[i:i + size], results):
            sink[key] = block


def _stream_distributed(data: da.Array, sink: BlockSink, client: Any) -> None:
    from distributed import as_completed

    keys = _chunk_slices(data.chunks)
    blocks = data.to_delayed().ravel()
    size = _batch_size(client)
    where: dict[str, tuple[slice, ...]] = {}
    live: dict[str, Any] = {}
    todo = iter(range(0, len(keys), size))
    ac = as_completed()

    def submit() -> bool:
        i = next(todo, None)
        if i is None:
            return False
        # one compute call per batch: the graph is sent (and culled) once per batch, not per chunk
        futures = client.compute(list(blocks[i:i + size]))
        for fut, key in zip(futures, keys[i:i + size]):
            where[fut.key] = key
            live[fut.key] = fut
            ac.add(fut)
        return True

    submit()
    submit()  # two batches in flight: workers keep computing while we write
    try:
        for fut in ac:
            block = fut.result()  # re-raises the worker's exception
            sink[where.pop(fut.key)] = block
            del block
            live.pop(fut.key, None)
            fut.release()
            if ac.count() < size:
                submit()
    except BaseException:
        client.cancel(list(live.values()))
        raise
