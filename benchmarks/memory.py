"""Time and peak resident memory of a child process tree (workers included), sampled with psutil."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil


def run_measured(cmd: list[str], env: dict | None = None, interval: float = 0.05) -> dict:
    """Run `cmd`; return wall seconds, peak RSS of the whole process tree (bytes), exit code."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not stop.is_set():
            try:
                procs = [root] + root.children(recursive=True)
                rss = 0
                for p in procs:
                    try:
                        rss += p.memory_info().rss
                    except psutil.NoSuchProcess:
                        pass
                peak = max(peak, rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = proc.communicate()
    stop.set()
    t.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(out[-4000:])
    return {"seconds": wall, "peak_rss": peak, "returncode": proc.returncode, "output": out[-2000:]}
