"""A small STAC API on 127.0.0.1 for tests: item search (GET and POST), paging, and the assets.

What pystac-client needs of an API: a landing page that conforms to STAC API core and item
search with a ``search`` link, ``/collections``, and ``/search`` answering
``collections``, ``bbox`` or ``intersects``, ``datetime``, ``limit`` and the query
extension's ``eo:cloud_cover`` (``lt``, ``lte``, ``gt``, ``gte``, ``eq``), pages linked by
``next``. The asset files are served under ``/files/`` with HEAD and Range requests, as
GDAL's /vsicurl/ reads them. Every request is counted (``Api.requests``), so a test can
tell whether a run searched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import shapely
from shapely.geometry import box, shape

CONFORMS = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#query",
    "https://api.stacspec.org/v1.0.0/collections",
]
PAGE = 2  # items per page unless the client asks for fewer: paging is always exercised


@dataclass
class Api:
    """The running API: ``url`` is its landing page; ``items`` by collection; ``files`` served by name."""

    port: int
    items: dict[str, list[dict[str, Any]]]
    folder: Path
    requests: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def file_url(self, name: str) -> str:
        return f"{self.url}/files/{name}"

    def searches(self) -> int:
        return sum(1 for r in self.requests if r.startswith(("GET /search", "POST /search")))


def _time(text: str | None) -> dt.datetime | None:
    if not text or text == "..":
        return None
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _matches(item: dict[str, Any], params: dict[str, Any]) -> bool:
    props = item["properties"]
    if params.get("datetime"):
        parts = str(params["datetime"]).split("/")
        start, end = _time(parts[0]), _time(parts[-1])
        when = _time(props.get("datetime"))
        if when is None or (start and when < start) or (end and when > end):
            return False
    geom = shape(item["geometry"]) if item.get("geometry") else box(*item["bbox"])
    if params.get("bbox"):
        b = params["bbox"]
        b = [float(v) for v in (b.split(",") if isinstance(b, str) else b)]
        if not geom.intersects(box(*b)):
            return False
    if params.get("intersects"):
        area = params["intersects"]
        if not geom.intersects(shape(json.loads(area) if isinstance(area, str) else area)):
            return False
    query = params.get("query") or {}
    if isinstance(query, str):
        query = json.loads(query)
    ops = {
        "lt": float.__lt__,
        "lte": float.__le__,
        "gt": float.__gt__,
        "gte": float.__ge__,
        "eq": float.__eq__,
    }
    for name, conditions in query.items():
        value = props.get(name)
        for op, bound in conditions.items():
            if value is None or not ops[op](float(value), float(bound)):
                return False
    return True


def _handler(api: Api) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _json(self, doc: Any, status: int = 200) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _landing(self) -> dict[str, Any]:
            base = api.url
            return {
                "type": "Catalog",
                "id": "test-api",
                "stac_version": "1.0.0",
                "description": "a STAC API for tests",
                "conformsTo": CONFORMS,
                "links": [
                    {"rel": "self", "href": base, "type": "application/json"},
                    {"rel": "root", "href": base, "type": "application/json"},
                    {"rel": "data", "href": f"{base}/collections", "type": "application/json"},
                    {
                        "rel": "search",
                        "href": f"{base}/search",
                        "type": "application/geo+json",
                        "method": "GET",
                    },
                    {
                        "rel": "search",
                        "href": f"{base}/search",
                        "type": "application/geo+json",
                        "method": "POST",
                    },
                ],
            }

        def _collection(self, name: str) -> dict[str, Any]:
            return {
                "type": "Collection",
                "id": name,
                "stac_version": "1.0.0",
                "description": name,
                "license": "proprietary",
                "extent": {
                    "spatial": {"bbox": [[-180, -90, 180, 90]]},
                    "temporal": {"interval": [[None, None]]},
                },
                "links": [{"rel": "self", "href": f"{api.url}/collections/{name}"}],
            }

        def _search(self, params: dict[str, Any]) -> None:
            names = params.get("collections") or list(api.items)
            if isinstance(names, str):
                names = names.split(",")
            found = [i for n in names for i in api.items.get(n, []) if _matches(i, params)]
            limit = min(int(params.get("limit") or PAGE), PAGE)
            start = int(params.get("token") or 0)
            page = found[start : start + limit]
            links = []
            if start + limit < len(found):
                nxt = {k: v for k, v in params.items() if k != "token"}
                nxt["token"] = str(start + limit)
                links.append({"rel": "next", "href": f"{api.url}/search", "method": "POST", "body": nxt})
            self._json({"type": "FeatureCollection", "features": page, "links": links})

        def _file(self, head: bool) -> None:
            path = api.folder / urlsplit(self.path).path[len("/files/") :]
            if not path.is_file():
                self.send_error(404)
                return
            data = path.read_bytes()
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                a, _, b = rng[len("bytes=") :].partition("-")
                first, last = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
                part = data[first : last + 1]
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
            else:
                part = data
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(part)))
            self.end_headers()
            if not head:
                self.wfile.write(part)

        def do_HEAD(self) -> None:  # noqa: N802
            api.requests.append(f"HEAD {self.path}")
            self._file(head=True)

        def do_GET(self) -> None:  # noqa: N802
            api.requests.append(f"GET {self.path}")
            url = urlsplit(self.path)
            if url.path.startswith("/files/"):
                return self._file(head=False)
            params = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path in ("", "/"):
                return self._json(self._landing())
            if url.path == "/conformance":
                return self._json({"conformsTo": CONFORMS})
            if url.path == "/collections":
                return self._json({"collections": [self._collection(n) for n in api.items], "links": []})
            if url.path.startswith("/collections/"):
                return self._json(self._collection(url.path.split("/")[2]))
            if url.path == "/search":
                return self._search(params)
            self.send_error(404)
            return None

        def do_POST(self) -> None:  # noqa: N802
            api.requests.append(f"POST {self.path}")
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if urlsplit(self.path).path != "/search":
                self.send_error(404)
                return
            self._search(body)

    return Handler


@contextlib.contextmanager
def serve_api(items: dict[str, list[dict[str, Any]]], folder: Path) -> Iterator[Api]:
    """Serve ``items`` (by collection) and the files of ``folder`` on 127.0.0.1 for the ``with`` block."""
    api = Api(0, items, folder)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def item_bbox(geom_lonlat: Any) -> list[float]:
    return list(shapely.bounds(geom_lonlat))
