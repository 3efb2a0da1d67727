"""A tiny HTTP server on 127.0.0.1 that serves rasters only to a request with the right basic-auth
user and password and a signed-looking query: what a presigned or password-protected URL is.

GDAL's /vsicurl/ reads with HEAD and Range requests; both are served. Tests use it to check that
no credential of an input URL ends up in any file, stream or event (core/redact.py).
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from http_child import announce, log_request, requests, serve_in_child

USER = "alice-user7"
PASSWORD = "PW-9f8e7d6c"
SIGNATURE = "SIG-0a1b2c3d4e"
CREDENTIAL = "AKIAEXAMPLE77"
TOKEN = "TOK-55aa66bb"
SECRETS = (
    USER,
    PASSWORD,
    SIGNATURE,
    CREDENTIAL,
    TOKEN,
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
)


@dataclass
class Served:
    """The running server: ``url(name)`` is a credential-bearing /vsicurl/ path to a served file.

    It runs in a child process (tests/http_child.py); ``delay_s`` and ``requests`` go through its
    state folder."""

    port: int
    files: dict[str, Path]
    state: Path

    def url(self, name: str) -> str:
        query = f"X-Amz-Credential={CREDENTIAL}%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature={SIGNATURE}"
        return f"/vsicurl/http://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{name}?{query}&token={TOKEN}"

    @property
    def requests(self) -> list[str]:
        return requests(self.state)

    @property
    def delay_s(self) -> float:
        return _delay(self.state)

    @delay_s.setter
    def delay_s(self, seconds: float) -> None:
        (self.state / "delay").write_text(str(seconds), encoding="utf-8")


def _delay(state: Path) -> float:
    path = state / "delay"
    return float(path.read_text(encoding="utf-8") or 0) if path.exists() else 0.0


def _files(state: Path) -> dict[str, Path]:
    return {k: Path(v) for k, v in json.loads((state / "files.json").read_text(encoding="utf-8")).items()}


def _handler(state: Path) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _file(self) -> Path | None:
            log_request(state, self.command)
            delay = _delay(state)
            if delay:
                time.sleep(delay)
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="rasters"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            if query.get("X-Amz-Signature") != [SIGNATURE] or query.get("token") != [TOKEN]:
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            path = _files(state).get(parts.path.lstrip("/"))
            if path is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
            return path

        def do_HEAD(self) -> None:  # noqa: N802
            path = self._file()
            if path is not None:
                self.send_response(200)
                self.send_header("Content-Length", str(path.stat().st_size))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            path = self._file()
            if path is None:
                return
            data = path.read_bytes()
            start, end = 0, len(data) - 1
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes="):
                first, _, last = ranged[6:].split(",")[0].partition("-")
                start, end = int(first or 0), min(int(last) if last else len(data) - 1, len(data) - 1)
            self.send_response(206 if ranged else 200)
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            with contextlib.suppress(ConnectionError):  # GDAL may stop reading early
                self.wfile.write(data[start : end + 1])

    return Handler


@contextlib.contextmanager
def serve(files: dict[str, Path]) -> Iterator[Served]:
    """Serve ``files`` ({url path: file}) on 127.0.0.1 until the block ends."""
    state = Path(tempfile.mkdtemp(prefix="credential-server-"))
    try:
        (state / "files.json").write_text(json.dumps({k: str(v) for k, v in files.items()}), encoding="utf-8")
        with serve_in_child("credential_server", state) as port:
            yield Served(port, files, state)
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":  # the child: python credential_server.py STATE
    announce(ThreadingHTTPServer(("127.0.0.1", 0), _handler(Path(sys.argv[1]))))
