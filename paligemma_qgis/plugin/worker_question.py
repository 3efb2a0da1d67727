"""One question to the worker Python, asked in a QProcess so that QGIS stays responsive while it
starts: its answer is the last JSON line it prints, carried by ``done``.

The preflight probe (first_run.Preflight) and the interrupted-run check (interrupted.JournalCheck)
ask this way; each says only which lines answer it and how a failure reads in its own terms.
"""

from __future__ import annotations

import contextlib
import json

from qgis.PyQt.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, pyqtSignal

from .worker_env import worker_env


class WorkerQuestion(QObject):
    """``command`` in a QProcess (``stdin``, when given, written as one JSON line); ``done`` once."""

    done = pyqtSignal(dict)

    def __init__(
        self, command: list[str], timeout_s: float, stdin: dict | None = None, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.command = command
        self.timeout_s = timeout_s
        self.stdin = stdin
        self.process = QProcess(self)
        env = QProcessEnvironment()
        for key, value in worker_env().items():
            env.insert(key, value)
        self.process.setProcessEnvironment(env)
        self.process.finished.connect(self._finished)
        self.process.errorOccurred.connect(self._error)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self._timed_out)
        self.result: dict | None = None

    # -- what a subclass says -----------------------------------------------------
    def accepts(self, answer: object) -> bool:
        """Whether a JSON line of the worker's output is the answer."""
        return isinstance(answer, dict)

    def failure(self, why: str, code: int | None = None, output: str = "") -> dict:
        """The answer when there is none: ``why`` is stopped, timeout, start or exit."""
        raise NotImplementedError

    # -- the process ----------------------------------------------------------------
    def start(self) -> None:
        self.timer.start(int(self.timeout_s * 1000))
        self.process.start(self.command[0], self.command[1:])
        if self.stdin is not None:
            self.process.write((json.dumps(self.stdin) + "\n").encode("utf-8"))
            self.process.closeWriteChannel()

    def stop(self) -> None:
        """Stop a question still running; ``done`` is not emitted any more."""
        self.timer.stop()
        self.result = self.result or self.failure("stopped")
        with contextlib.suppress(RuntimeError):
            if self.process.state() != QProcess.ProcessState.NotRunning:
                self.process.kill()
                self.process.waitForFinished(2000)

    def _emit(self, answer: dict) -> None:
        if self.result is not None:
            return
        self.timer.stop()
        self.result = answer
        self.done.emit(answer)

    def _finished(self, code: int, _status) -> None:
        stdout = bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        stderr = bytes(self.process.readAllStandardError()).decode("utf-8", "replace")
        for line in reversed(stdout.strip().splitlines()):
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    answer = json.loads(line)
                    if self.accepts(answer):
                        self._emit(answer)
                        return
        self._emit(self.failure("exit", code, stderr or stdout))

    def _error(self, _error) -> None:
        if self.process.error() == QProcess.ProcessError.FailedToStart:
            self._emit(self.failure("start"))

    def _timed_out(self) -> None:
        self._emit(self.failure("timeout"))
        self.stop()  # after the answer: the kill's own "finished" is ignored
