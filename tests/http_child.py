"""Test HTTP servers run in a child process, never in a thread of the test's own process.

rasterio holds the GIL through some GDAL calls that read over /vsicurl/ (``dataset.overviews()``
opens a VRT's sources), so a server thread in the same process cannot accept the request that
the read waits for: the read waits for the server, the server for the GIL, and the test hangs.
A server module runs as ``python MODULE.py STATE``, prints its port on one line, and keeps
what the test may change or read in the STATE folder (files, so both processes see it).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def serve_in_child(module: str, state: Path) -> Iterator[int]:
    """Start tests/``module``.py serving ``state`` on 127.0.0.1; yield its port; stop it after the block."""
    script = Path(__file__).with_name(f"{module}.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(state)], stdout=subprocess.PIPE, text=True, cwd=script.parent
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"{script.name} did not start (said {line!r})")
        yield int(line)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_request(state: Path, line: str) -> None:
    """Append one request line (the child) — small appends to an O_APPEND file do not interleave."""
    with open(state / "requests.log", "a", encoding="utf-8") as log:
        log.write(line + "\n")


def requests(state: Path) -> list[str]:
    """The requests the child has answered so far, in order."""
    path = state / "requests.log"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def announce(server) -> None:
    """The child's side of the start: print the port, then serve until terminated."""
    print(server.server_address[1], flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever(poll_interval=0.05)
