"""Request fuzzing against a running `imalys-stac serve` (issue 20): request paths, methods and
headers drawn by hypothesis, sent as raw bytes. Every request gets an HTTP answer with a valid
status (never a dropped connection), and no answer carries a byte of a file outside the served
set (each such file of the tree holds CANARY), whatever traversal, encoding or header it tries."""
from __future__ import annotations

import http.client
import socket
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_serve_closed_set import CANARY, build_site
from tests.test_serve_system import start, stop

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tree = build_site(tmp_path_factory.mktemp("fuzz"))
    s = start(tree["root"] / "results", "--api", "--api-port", "0")
    yield s, tree
    out = stop(s)
    assert "Traceback" not in out, out


NAMES = ["wd", "prod", "prod.json", "prod.tif", "results", "bestof.json", "cat", "archives", "outside", "secret.txt",
         ".secret", "token.txt", ".git", "config", "HEAD", "link-out", "link-hidden", "link-file.txt", ".bestof.tmp-4242",
         "scratch.tif", "top-secret.txt", "notes.txt", "catalog.json", "downloaded.json", "colleague.json", "etc",
         "passwd", "..", ".", "", "%2e%2e", "%2E%2e", "..%2f", "%2f", "%00", "%5c", "\\", "..\\..", "%252e%252e",
         "%c0%ae%c0%ae", "%ff", "~", "*", "?", "#", ";", "%", "%zz", ".imalys-stac", ".imalys-catalog.json",
         ".imalys-stac.lock", "landsat-c2-l2", "x" * 300]
segment = st.one_of(st.sampled_from(NAMES), st.text(st.characters(blacklist_characters="\r\n"), max_size=12),
                    st.sampled_from(NAMES).map(lambda s: quote(s, safe="")))
path = st.builds(lambda lead, segs, tail: lead + "/".join(segs) + tail,
                 st.sampled_from(["/", "//", "", "http://x/", "/./"]), st.lists(segment, max_size=8),
                 st.sampled_from(["", "/", "?a=1", "#x", "?..=/../", "%00", "\0"]))
digits = st.one_of(st.integers(0, 10**6).map(str), st.just("9" * 5000), st.just("0" * 4400 + "1"), st.just(""))
range_value = st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", digits, digits),
    st.builds(lambda a, b: f"bytes={a}-{b},0-1", digits, digits),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    st.sampled_from(["bytes=-", "bytes=--1", "bytes=1-0", "items=0-1", "bytes = 0 - 1", "bytes=٣-٤"]),
)
header_name = st.sampled_from(["Range", "Host", "Accept", "If-Range", "Content-Length", "Transfer-Encoding",
                               "Connection", "Origin", "X-Forwarded-For", "Expect", "Cookie"])
header_value = st.one_of(range_value, st.text(st.characters(min_codepoint=32, max_codepoint=0x10FFFF,
                                                            blacklist_categories=("Cs",)), max_size=30))
headers = st.lists(st.tuples(header_name, header_value), max_size=5)
method = st.sampled_from(["GET", "GET", "GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "TRACE", "BREW"])


def ask(addr, request: bytes, method: str) -> tuple[int, bytes]:
    with socket.create_connection(addr, timeout=30) as s:
        s.sendall(request)
        r = http.client.HTTPResponse(s, method=method)
        try:
            r.begin()  # raises RemoteDisconnected if the server closed without an answer
            body = b"" if method == "HEAD" else r.read(1 << 20)
            return r.status, body
        finally:
            r.close()


def build(m: str, p: str, hs: list[tuple[str, str]]) -> bytes:
    lines = [f"{m} {p} HTTP/1.1", *(f"{k}: {v}" for k, v in hs if k not in ("Content-Length", "Transfer-Encoding",
                                                                          "Expect", "Connection")),
             "Connection: close", "", ""]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


VALID = {s.value for s in http.HTTPStatus}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(m=method, p=path, hs=headers)
def test_every_request_is_answered_and_nothing_outside_is_served(served, m, p, hs):
    server, _ = served
    status, body = ask(server.addr, build(m, p, hs), m)
    assert status in VALID and status != 500, (m, p, hs)
    assert CANARY not in body, (m, p, hs)


PLAUSIBLE = [("collections", "landsat-c2-l2"), ("collections", "landsat-c2-l2,x"), ("bbox", "-180,-90,180,90"),
             ("bbox", "11.9,48.1,12.1,48.3"), ("limit", "2"), ("limit", "1"), ("skip", "1"), ("ids", "x,y"),
             ("datetime", "2022-06-01T00:00:00Z/.."), ("datetime", "2022-06-01T00:00:00Z"),
             ("intersects", '{"type":"Point","coordinates":[12,48.2]}')]
param = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.tuples(st.sampled_from(["bbox", "limit", "skip", "collections", "ids", "datetime", "intersects", "query",
                               "filter", "token", "sortby", "x"]),
              st.one_of(st.sampled_from(["1,2,3,4", "nan,1,2,3", "1,2", "0", "-1", "9" * 50, "{}", '{"type":"Point"}',
                                         "", "2022-01-01T00:00:00Z/..", "..", "a/b"]),
                        st.text(max_size=10))),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(p=st.sampled_from(["/search", "/collections/landsat-c2-l2/items", "/collections/x/items", "/", "/conformance"]),
       q=st.lists(param, max_size=4),
       hs=headers)
def test_every_api_request_is_answered(served, p, q, hs):
    server, _ = served
    from urllib.parse import urlencode, urlsplit

    api = urlsplit(server.api)
    target = p + ("?" + urlencode(q) if q else "")
    status, body = ask((api.hostname, api.port), build("GET", target, hs), "GET")
    assert status in VALID, (target, hs)
    if p == "/search" or p.endswith("/items"):
        assert status != 500, (target, hs, body[:200])  # the backend's 500s for GET searches are gone
