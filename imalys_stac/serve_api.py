"""The STAC API of ``imalys-stac serve --api``: ``rustac serve`` (in-memory backend) behind a front.

rustac answers POST searches well, but its GET ``/search`` fails with HTTP 500 ("unsupported
value") as soon as ``collections`` or ``bbox`` is given, and it accepts ``query``, ``filter`` and
``sortby`` only to ignore them (0 items, or the unsorted list, without a word). The front listens
on the API's port and

- turns every GET item search (``/search`` and ``/collections/{id}/items``) into the equivalent
  POST to rustac, and the ``next``/``prev`` links of the answer back into GET links, so paging
  works as a browser or pystac-client (GET) expects;
- refuses the parameters the backend would ignore with 400 and a message saying what is
  supported;
- passes everything else through unchanged (rustac is told the front's URL, so its links name
  the front).
"""
from __future__ import annotations

import http.client
import json
import logging
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from .errors import ImalysError

log = logging.getLogger("imalys_stac.serve")

#: what a GET item search may carry (anything else is refused, not ignored)
SUPPORTED = ("bbox", "datetime", "collections", "ids", "intersects", "limit", "skip")
#: parameters the in-memory backend would accept and ignore: refused with the reason
IGNORED_BY_BACKEND = ("query", "filter", "filter-lang", "filter-crs", "sortby", "fields", "q")
MAX_BODY = 1 << 20
_ITEMS = re.compile(r"^/collections/([^/]+)/items/?$")


class ApiBadRequest(ImalysError):
    """A search the API refuses with 400 (the message says why and what is supported)."""


def _refusal(name: str) -> str:
    return (f"`{name}` is not supported by this STAC API (imalys-stac serve --api, rustac in-memory backend): "
            f"it would be ignored and give wrong results; search with {', '.join(SUPPORTED[:5])} (and limit), "
            "or filter the items you get in your own code")


def search_body(params: list[tuple[str, str]], collection: str | None = None) -> dict[str, Any]:
    """The POST body equivalent to a GET item search's query parameters."""
    body: dict[str, Any] = {}
    for key, value in params:
        if key in IGNORED_BY_BACKEND:
            raise ApiBadRequest(_refusal(key))
        if key in ("collections", "ids"):
            body[key] = [v for v in value.split(",") if v]
        elif key == "bbox":
            try:
                nums = [float(v) for v in value.split(",")]
            except ValueError:
                raise ApiBadRequest(f"bbox {value!r} is not a list of numbers; give west,south,east,north") from None
            if len(nums) not in (4, 6) or any(n != n or n in (float("inf"), float("-inf")) for n in nums):
                raise ApiBadRequest(f"bbox {value!r} needs 4 (or 6) finite numbers: west,south,east,north")
            body[key] = nums
        elif key == "intersects":
            try:
                geom = json.loads(value)
            except ValueError:
                raise ApiBadRequest("intersects is not a GeoJSON geometry (JSON)") from None
            if not isinstance(geom, dict) or "type" not in geom:
                raise ApiBadRequest("intersects is not a GeoJSON geometry")
            body[key] = geom
        elif key in ("limit", "skip"):
            if not value.isdigit() or len(value) > 9 or (key == "limit" and int(value) == 0):
                raise ApiBadRequest(f"{key} {value!r} is not a {'positive' if key == 'limit' else 'non-negative'} "
                                    "whole number")
            body[key] = int(value)
        elif key == "datetime":
            body[key] = value
        else:
            raise ApiBadRequest(f"unknown search parameter `{key}`; supported: {', '.join(SUPPORTED)}")
    if collection is not None:
        body["collections"] = [collection]
    return body


def query_of(body: dict[str, Any], collection: str | None = None) -> str:
    """The GET query string of a POST search body (the inverse of :func:`search_body`)."""
    out = []
    for key, value in body.items():
        if collection is not None and key == "collections":
            continue
        if key in ("collections", "ids") and isinstance(value, list):
            out.append((key, ",".join(str(v) for v in value)))
        elif key == "bbox" and isinstance(value, list):
            out.append((key, ",".join(json.dumps(v) for v in value)))
        elif key == "intersects":
            out.append((key, json.dumps(value, separators=(",", ":"))))
        else:
            out.append((key, str(value)))
    return urlencode(out, safe=",:/")


class ApiFront(BaseHTTPRequestHandler):
    """The API's port: item searches checked and translated, the rest passed through to rustac."""

    server_version = "imalys-stac-api"
    default_request_version = "HTTP/1.0"  # a two-word request line gets a status line too (no HTTP/0.9)
    protocol_version = "HTTP/1.1"
    timeout = 60
    backend: tuple[str, int] = ("127.0.0.1", 0)
    public: str = ""  # the front's URL as links name it

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("api %s " + fmt, self.address_string(), *args)

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Content-Type, Accept")

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self._cors()
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _bad(self, message: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        code = "BadRequest" if status == HTTPStatus.BAD_REQUEST else HTTPStatus(status).phrase.replace(" ", "")
        self._send(status, json.dumps({"code": code, "description": message}).encode())

    def do_OPTIONS(self) -> None:
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors()
        self.send_header("Access-Control-Max-Age", "86400")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._guarded(self._get)

    def do_HEAD(self) -> None:
        self._guarded(self._get)

    def do_POST(self) -> None:
        self._guarded(self._post)

    def _guarded(self, handler: Any) -> None:
        try:
            handler()
        except ApiBadRequest as exc:
            self._bad(str(exc))
        except (ConnectionError, TimeoutError, http.client.HTTPException, OSError) as exc:
            if isinstance(exc, (BrokenPipeError, ConnectionResetError)):
                self.close_connection = True
                return
            self._bad(f"the STAC API backend (rustac serve) did not answer: {exc}", HTTPStatus.BAD_GATEWAY)
        except Exception as exc:  # noqa: BLE001 - a bug must not drop the connection
            log.error("serve --api: internal error for %r: %s", self.path, exc)
            log.debug("serve --api: internal error", exc_info=True)
            self._bad("internal error of the API front", HTTPStatus.INTERNAL_SERVER_ERROR)

    def _target(self) -> tuple[str, str]:
        if "\0" in self.path or not self.path.startswith("/"):
            raise ApiBadRequest("the request target is not a path")
        parts = urlsplit(self.path)
        return parts.path, parts.query

    def _get(self) -> None:
        path, query = self._target()
        items = _ITEMS.match(path)
        if path.rstrip("/") == "/search" or items:
            params = parse_qsl(query, keep_blank_values=True)
            collection = items.group(1) if items else None
            body = search_body(params, collection)
            status, ctype, data = self._backend("POST", "/search", json.dumps(body).encode())
            if status == 200:
                data = self._as_get_links(data, path, collection)
            return self._send(status, data, ctype)
        status, ctype, data = self._backend("GET", self.path, None)
        self._send(status, data, ctype)

    def _post(self) -> None:
        path, _ = self._target()
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or len(length) > 9 or int(length) > MAX_BODY:
            self.close_connection = True
            return self._bad(f"a search body is at most {MAX_BODY} bytes", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        raw = self.rfile.read(int(length))
        if path.rstrip("/") != "/search":
            return self._bad("only /search takes POST", HTTPStatus.METHOD_NOT_ALLOWED)
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise ApiBadRequest("the search body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiBadRequest("the search body is not a JSON object")
        for key in IGNORED_BY_BACKEND:
            if key in body:
                raise ApiBadRequest(_refusal(key))
        status, ctype, data = self._backend("POST", "/search", json.dumps(body).encode())
        self._send(status, data, ctype)

    def _backend(self, method: str, target: str, body: bytes | None) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection(*self.backend, timeout=60)
        try:
            headers = {"Accept": "application/json"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, target, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type") or "application/json", r.read()
        finally:
            conn.close()

    def _as_get_links(self, data: bytes, path: str, collection: str | None) -> bytes:
        """POST paging links (method + body) of a search answer → GET links on ``path``."""
        try:
            doc = json.loads(data)
        except ValueError:
            return data
        if not isinstance(doc, dict):
            return data
        for link in doc.get("links") or []:
            if isinstance(link, dict) and isinstance(link.get("body"), dict):
                q = query_of(link.pop("body"), collection)
                link.pop("method", None)
                link.pop("merge", None)
                link["href"] = f"{self.public}{quote(path)}" + (f"?{q}" if q else "")
        return json.dumps(doc).encode()
