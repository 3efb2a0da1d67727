"""Child-process plumbing shared by the worker runner and the setup steps (no QGIS import).

Text pipes read line by line on a thread, a stop that escalates (ask, then signal, then
kill) while the process is still there, and a wait that kills what does not end in time.
How to stop and kill is the caller's: the worker is asked on stdin and signalled as a
process group, a setup command is signalled on its own.
"""

from __future__ import annotations

import math
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence


def popen_text(
    command: Sequence[str],
    stdin: int,
    stderr: int,
    env: dict[str, str] | None,
    cwd: str | None = None,
    new_session: bool = False,
) -> subprocess.Popen:
    """Start ``command`` with a line-buffered UTF-8 text stdout (raises OSError when it cannot start).

    ``new_session`` (POSIX): a process group of its own, so signals can reach all of it.
    """
    return subprocess.Popen(
        list(command),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        cwd=cwd,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        **_popen_flags(new_session),
    )


def _popen_flags(new_session: bool) -> dict:
    if sys.platform == "win32":  # no console window popping up from QGIS
        return {"creationflags": getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True} if new_session else {}


def pump_lines(stream, out: queue.Queue) -> None:
    """Put each line of ``stream`` in ``out``, then None when it ends."""
    try:
        for line in stream:
            out.put(line)
    finally:
        out.put(None)


def stop_later(
    proc: subprocess.Popen, grace_s: float, stop: Callable[[], None], kill: Callable[[], None]
) -> None:
    """``stop()`` now; a watchdog calls ``kill()`` if the process has not gone in ``grace_s``."""
    escalate(proc, [(0.0, stop), (grace_s, kill)])


def escalate(proc: subprocess.Popen, steps: Sequence[tuple[float, Callable[[], None]]]) -> None:
    """Run each ``(after_s, action)`` ``after_s`` seconds from now, unless the process has ended.

    Ask, insist, kill: steps due now run in the caller's thread, the others on a watchdog
    thread; a step at ``math.inf`` never runs.
    """
    if proc.poll() is not None:
        return
    start = time.monotonic()
    pending = sorted((step for step in steps if math.isfinite(step[0])), key=lambda step: step[0])
    while pending and pending[0][0] <= 0:
        pending.pop(0)[1]()
    if not pending:
        return

    def watchdog() -> None:
        for after_s, action in pending:
            while time.monotonic() < start + after_s:
                if proc.poll() is not None:
                    return
                time.sleep(0.05)
            if proc.poll() is not None:
                return
            action()

    threading.Thread(target=watchdog, daemon=True).start()


def wait_or_kill(proc: subprocess.Popen, timeout: float, kill: Callable[[], None]) -> int:
    """The exit code; ``kill()`` first when the process has not ended within ``timeout``."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill()
        return proc.wait()
