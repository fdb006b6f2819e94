"""A static file server with single byte ranges (what GDAL's /vsicurl/ asks for), for tests of
remote hrefs. It runs in its own process: GDAL may hold the GIL while it waits for an answer, so
a server thread in the reading process could deadlock. Each answered range is appended to a log
file ("<path> <start>-<end>") so tests can show that reads went over HTTP.

    with serve_folder(folder) as (base_url, ranges):  # ranges() -> list of requested paths
"""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    log_path: str = ""

    def log_message(self, *args):  # quiet
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            self._left = None
            return super().send_head()
        size = os.path.getsize(path)
        start, _, end = rng.removeprefix("bytes=").partition("-")
        start, end = int(start), min(int(end) if end else size - 1, size - 1)
        if start >= size:
            self.send_error(416)
            return None
        with open(self.log_path, "a") as log:
            log.write(f"{self.path} {start}-{end}\n")
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self._left = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        left = getattr(self, "_left", None)
        if left is None:
            return super().copyfile(source, outputfile)
        while left > 0:
            chunk = source.read(min(left, 1 << 16))
            if not chunk:
                break
            outputfile.write(chunk)
            left -= len(chunk)


@contextmanager
def serve_folder(folder: Path) -> Iterator[tuple[str, Callable[[], list[str]]]]:
    log = Path(folder).parent / f".ranges-{os.getpid()}-{time.monotonic_ns()}.log"
    log.write_text("")
    port_file = log.with_suffix(".port")
    proc = subprocess.Popen([sys.executable, __file__, str(folder), str(log), str(port_file)])
    try:
        for _ in range(200):
            if port_file.exists() and port_file.read_text().strip():
                break
            if proc.poll() is not None:
                raise RuntimeError("the test HTTP server did not start")
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port_file.read_text().strip()}"
        urllib.request.urlopen(base + "/", timeout=10).read()
        yield base, lambda: [line.split(" ")[0] for line in log.read_text().splitlines()]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main(folder: str, log_path: str, port_file: str) -> None:
    handler = type("H", (RangeHandler,), {"log_path": log_path})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=folder, **k))
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:4])
