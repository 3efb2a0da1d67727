"""``python -m paligemma_qgis worker``: the process the QGIS plugin runs the core in.

One file: the job protocol, the error event and the two checks (--check, --probe) are the
worker's whole contract with the plugin, and the plugin runs this module alone.

Why a separate process: QGIS must never import torch or transformers (crashes, CUDA
out-of-memory and numpy/GDAL clashes stay out of QGIS, GPU memory is freed after each
run, cancel is a clean stop). Protocol:

stdin, first: the job, one JSON object on one line (ended by a newline or by end-of-file,
so ``worker < job.json`` works, a pretty-printed file included)::

    {"task": "segment" | "export" | "change" | "occurrence", "options": {...}}

stdin, afterwards (the plugin keeps stdin open): control lines, read by a daemon thread::

    {"cancel": true}

A cancel line asks for a clean stop: the core notices at its next cancellation check
(between batches), removes its temporary files and the worker reports "cancelled" and exits
with EXIT_CANCELLED. This works on every OS (Windows has no SIGTERM for a child). Other
lines are logged on stderr and ignored; end-of-file is no cancel (a job piped from a file
runs to the end). SIGTERM (POSIX) does the same as the cancel line; a SIGTERM after a
cancel request stops at once (Cancelled raised wherever the main thread is, cleanup still
runs). The plugin escalates: cancel line, SIGTERM after part of its grace period, then a
hard kill.

stdout: JSON lines::

    {"event": "progress", "done": 3, "total": 10, "message": "chips"}
    {"event": "result", ...summary...}
    {"event": "error", "message": "...", "details": "...", "kind": "InputError",
     "field": "nir", "code": "band_unknown"}
    {"event": "cancelled", "message": "..."}

``field`` (the option the problem is about), ``code`` (what kind of problem) and ``kind``
(the error class) let the plugin say it in the dialog's words; a missing package comes as
``code: "missing_packages"`` with ``packages`` (the names people install, "rasterio").

Only these lines go to stdout: anything else that writes there (libraries, C code) is
redirected to stderr, which the plugin keeps for its log panel.

``worker --check`` prints one JSON object describing the worker Python (packages, CUDA,
model, VAE) and the exact commands that fix what is missing. ``worker --probe --engine E``
is its quick form (no torch import, a fraction of a second): what the plugin asks before a
run (core.environment.probe).

The plugin starts it as ``python -m paligemma_qgis.cli.worker`` (same arguments): that imports
this module alone, not every CLI command, so a Python that lacks a package (QGIS's own, on a
fresh install) still answers --check and reports a missing package as one clear message.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import json
import os
import platform
import re
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, Any, Protocol

from .. import __version__
from ..core.environment import (
    GEO_PACKAGES,
    MODEL_PACKAGES,
    is_model_package,
    nvidia_gpu,
    package_for_module,
    probe,
)
from ..core.errors import PaliGemmaQgisError
from ..core.progress import Cancelled
from ..core.redact import redact, redact_tree

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CANCELLED = 130
TASKS = ("segment", "export", "change", "occurrence")


DESCRIPTION = (
    "Reads a JSON job {'task': 'segment'|'export'|'change'|'occurrence', 'options': {...}} on stdin "
    "and writes JSON lines (progress, result, error) on stdout. With --check, describes this "
    "Python's readiness (torch, transformers, CUDA, model, VAE) as one JSON object."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "worker",
        help="run one job from stdin, reporting JSON lines on stdout (used by the QGIS plugin)",
        description=DESCRIPTION,
    )
    _add_arguments(parser)
    parser.set_defaults(func=run)


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="describe this worker Python and exit")
    parser.add_argument(
        "--model", help="with --check: Hugging Face model id or local model folder to look for"
    )
    parser.add_argument("--vae", help="with --check: path of vae-oid.npz to look for")
    parser.add_argument(
        "--probe", action="store_true", help="quick check (no torch import): what the engine lacks, as JSON"
    )
    parser.add_argument(
        "--engine",
        default="water-index",
        help="with --probe: what the run needs (water-index, paligemma, export)",
    )
    parser.add_argument(
        "--journal",
        action="store_true",
        help="read a segment job on stdin and say (JSON) whether an interrupted run beside its output is "
        "the same run",
    )
    parser.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray"),
        help="with --probe/--check: ray when the run goes to a Ray cluster (then Ray is needed too)",
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m paligemma_qgis.cli.worker``: the worker without the other commands' imports."""
    parser = argparse.ArgumentParser(prog="python -m paligemma_qgis.cli.worker", description=DESCRIPTION)
    _add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("GDAL_PAM_ENABLED", "NO")  # no .aux.xml beside the rasters it reads
    if args.check:
        print(
            json.dumps(check_environment(model=args.model, vae=args.vae, executor=args.executor)), flush=True
        )
        return EXIT_OK
    if args.probe:
        print(
            json.dumps(probe(args.engine, model=args.model, vae=args.vae, executor=args.executor)), flush=True
        )
        return EXIT_OK
    if args.journal:
        from .worker_journal import journal_state

        try:
            state = journal_state(_read_job(_stdin_lines()))
        except BadJob as exc:
            state = {"journal": "unknown", "why": str(exc)}
        print(json.dumps(redact_tree(state)), flush=True)
        return EXIT_OK
    events = _private_stdout()
    return run_job_stream(_stdin_lines(), events)


# --------------------------------------------------------------------------- job mode


class Lines(Protocol):
    """What the worker reads stdin through: a text stream, or FdLines for the real stdin."""

    def readline(self) -> str: ...


class FdLines:
    """Lines of a file descriptor read with ``os.read``.

    Why not ``sys.stdin``: the cancel listener blocks in a read for the whole run, and a daemon
    thread blocked inside a buffered stream holds its lock, which Python may need at exit
    ("could not acquire lock for <stdin> at interpreter shutdown").
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = b""
        self._eof = False

    def readline(self) -> str:
        """The next line with its newline; the rest at end-of-file; "" once everything is read."""
        while b"\n" not in self._buffer and not self._eof:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:  # closed or invalid stdin: nothing more will come
                chunk = b""
            self._eof = not chunk
            self._buffer += chunk
        cut = self._buffer.find(b"\n") + 1 or len(self._buffer)
        line, self._buffer = self._buffer[:cut], self._buffer[cut:]
        return line.decode("utf-8", "replace")


def _stdin_lines() -> Lines:
    try:
        return FdLines(sys.stdin.fileno())
    except (AttributeError, OSError, ValueError):  # no stdin at all (pythonw), or not a real file
        return io.StringIO("")


class JsonLinesProgress:
    """Progress protocol that reports JSON lines; SIGTERM and the cancel line set ``cancel_requested``."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.cancel_requested = threading.Event()

    def emit(self, event: str, **fields: Any) -> None:
        """One JSON line; every string in it redacted on the way out (an input URL's credentials
        must not reach the plugin's messages, logs or Details…)."""
        plain = json.loads(json.dumps({"event": event, **fields}, default=_json_default))
        line = json.dumps(redact_tree(plain))
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def report(self, done: int, total: int, message: str = "") -> None:
        self.emit("progress", done=int(done), total=int(total), message=str(message))

    def cancelled(self) -> bool:
        return self.cancel_requested.is_set()


def run_job_stream(stdin: Lines, events: IO[str]) -> int:
    """Run one job read from ``stdin``, then listen there for a cancel line; every outcome is
    reported as a JSON line on ``events``."""
    progress = JsonLinesProgress(events)
    _install_sigterm(progress)
    try:
        job = _read_job(stdin)
        listen_for_cancel(stdin, progress)
        result = run_job(job, progress)
    except Cancelled as exc:
        progress.emit("cancelled", message=str(exc) or "cancelled by the user", kept=exc.kept)
        return EXIT_CANCELLED
    except PaliGemmaQgisError as exc:
        cause = exc.__cause__
        # A run's error that wraps an unexpected one (every scene failed on a bug): keep its traceback.
        details = (
            traceback.format_exc()
            if cause is not None and not isinstance(cause, PaliGemmaQgisError)
            else type(exc).__name__
        )
        progress.emit("error", message=str(exc), details=details, **error_fields(exc))
        return EXIT_ERROR
    except ModuleNotFoundError as exc:  # QGIS's own Python, or a half-made environment
        package = package_for_module(exc.name or "")
        progress.emit(
            "error",
            message=missing_module_message(exc),
            details=traceback.format_exc(),
            code="missing_packages",
            packages=[package] if exc.name else [],
            engine_only="paligemma" if is_model_package(package) else None,
        )
        return EXIT_ERROR
    except MemoryError:
        progress.emit("error", message="the worker ran out of memory", details=traceback.format_exc())
        return EXIT_ERROR
    except Exception as exc:  # the plugin shows the message and logs the traceback
        oom = _out_of_memory_message(exc)
        fields = {"field": "batch_size", "code": "gpu_memory"} if oom else {"kind": type(exc).__name__}
        progress.emit(
            "error", message=oom or f"{type(exc).__name__}: {exc}", details=traceback.format_exc(), **fields
        )
        return EXIT_ERROR
    # A SIGTERM after the last check lets the result stand; the plugin decides what to keep.
    progress.emit("result", **result)
    return EXIT_OK


def run_job(job: dict, progress: JsonLinesProgress) -> dict:
    """Dispatch a parsed job to the core; returns the summary as a JSON-ready dict."""
    task = job.get("task")
    options = job.get("options")
    if task not in TASKS:
        raise BadJob(f"worker job: unknown task {task!r} (expected one of {', '.join(TASKS)})")
    if not isinstance(options, dict):
        raise BadJob("worker job: 'options' must be a JSON object")
    if task == "segment":
        from ..core.run.driver import segment_raster
        from ..core.specs import segment_spec

        summary = segment_raster(segment_spec(options), progress)
    elif task == "change":
        from ..core.temporal.change import ChangeOptions, water_change

        summary = water_change(ChangeOptions.from_dict(options), progress)
    elif task == "occurrence":
        from ..core.temporal.occurrence import OccurrenceOptions, water_occurrence

        summary = water_occurrence(OccurrenceOptions.from_dict(options), progress)
    else:
        summary = _run_export(options, progress)
    return summary.to_dict() if hasattr(summary, "to_dict") else dict(summary)


def _run_export(options: dict, progress: JsonLinesProgress) -> Any:
    module = f"{__package__.rsplit('.', 1)[0]}.core.train.export"
    try:
        export = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # a package core.train.export needs: reported as such by the caller
            raise
        raise BadJob("worker job: training-data export is not available in this version") from exc
    options_cls = getattr(export, "ExportOptions", None)
    if options_cls is not None:
        return export.export_training_data(options_cls.from_dict(options), progress)
    return export.export_training_data(**options, progress=progress)


class BadJob(PaliGemmaQgisError):
    """The job on stdin is not what the worker protocol expects."""


def _read_job(stdin: Lines) -> dict:
    """The job: lines up to the first one that completes a JSON document, or up to end-of-file.

    Reading stops there (not at end-of-file) because the plugin keeps stdin open for the
    cancel line; a pretty-printed job file still works because an incomplete document reads on.
    """
    text = ""
    while line := stdin.readline():
        text += line
        if not text.strip():
            continue
        try:
            return _job_object(json.loads(text.lstrip("\ufeff")))
        except json.JSONDecodeError as exc:
            if exc.pos < len(text.lstrip("\ufeff").rstrip()):  # wrong, not merely unfinished
                raise BadJob(f"worker job: stdin is not valid JSON ({exc})") from exc
    if not text.strip():
        raise BadJob("worker job: nothing on stdin (expected one JSON object)")
    try:
        return _job_object(json.loads(text.lstrip("\ufeff")))
    except json.JSONDecodeError as exc:
        raise BadJob(f"worker job: stdin is not valid JSON ({exc})") from exc


def _job_object(job: Any) -> dict:
    if not isinstance(job, dict):
        raise BadJob("worker job: stdin must hold one JSON object")
    return job


def listen_for_cancel(stdin: Lines, progress: JsonLinesProgress) -> threading.Thread:
    """Read control lines from ``stdin`` on a daemon thread until end-of-file (which cancels nothing)."""

    def listen() -> None:
        while line := stdin.readline():
            if not line.strip():
                continue
            if _is_cancel(line):
                print("worker: cancel requested on stdin", file=sys.stderr, flush=True)
                progress.cancel_requested.set()
            else:
                print(
                    f"worker: ignored stdin line {redact(line.strip()[:200])!r}", file=sys.stderr, flush=True
                )

    thread = threading.Thread(target=listen, name="worker-cancel-listener", daemon=True)
    thread.start()
    return thread


def _is_cancel(line: str) -> bool:
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(message, dict) and message.get("cancel") is True


def _install_sigterm(progress: JsonLinesProgress) -> None:
    """First SIGTERM: cancel at the next check (clean). A second one: stop now."""

    def handler(signum: int, frame: object) -> None:
        if progress.cancel_requested.is_set():
            raise Cancelled("terminated")
        progress.cancel_requested.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _private_stdout() -> IO[str]:
    """Keep the real stdout for events only; send fd 1 (prints, C libraries) to stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", encoding="utf-8", buffering=1)


def error_fields(exc: PaliGemmaQgisError) -> dict:
    """The error's ``kind`` (class), ``code``, ``params`` and ``field``: what the plugin renders it from."""
    return {"kind": type(exc).__name__, **exc.info.to_data()}


def missing_module_message(exc: ModuleNotFoundError) -> str:
    """'the worker Python X has no rasterio (needed by every engine): open ... Worker setup'.

    Named by the package people install: a missing ``affine`` means rasterio is not (fully) there.
    """
    name = (exc.name or "").split(".")[0]
    if not name:
        return f"the worker Python {sys.executable} cannot import a module: {exc}"
    if name == __package__.split(".")[0]:
        return f"the worker cannot import {exc.name}: the plugin's files are incomplete, reinstall the plugin"
    package = package_for_module(name)
    needed = "the PaliGemma engine" if is_model_package(package) else "every engine"
    part = f" ({name} comes with it)" if package != name else ""
    return (
        f"the worker Python {sys.executable} has no {package}{part}, needed by {needed}: open "
        "Raster > PaliGemma Water > Worker setup… to set up the worker environment, "
        "or choose a Python that has it"
    )


def _out_of_memory_message(exc: BaseException) -> str | None:
    if "out of memory" in str(exc).lower() and "cuda" in str(exc).lower():
        return (
            "the GPU ran out of memory: lower the batch size, choose a smaller model or resolution, "
            "or run on the CPU"
        )
    return None


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


# --------------------------------------------------------------------------- check mode


def _version_of(module_name: str) -> str | None:
    try:
        module = importlib.import_module(module_name)
    except Exception:  # missing, or broken install: both mean "not usable"
        return None
    return str(getattr(module, "__version__", "unknown"))


def _cuda_info() -> dict:
    """CUDA/MPS as torch sees them; with the CUDA version torch was built for and free GPU memory
    (what a bug report about speed or out-of-memory needs first)."""
    info: dict[str, Any] = {"available": False, "device": None, "mps": False}
    try:
        import torch
    except Exception:
        return info
    info["torch_cuda"] = getattr(getattr(torch, "version", None), "cuda", None)
    try:
        if torch.cuda.is_available():
            info["available"] = True
            info["device"] = torch.cuda.get_device_name(0)
            info["count"] = torch.cuda.device_count()
            free, total = torch.cuda.mem_get_info(0)
            info["memory_free_gb"] = round(free / 1e9, 2)
            info["memory_total_gb"] = round(total / 1e9, 2)
    except Exception as exc:  # a broken driver should not break the check
        info["error"] = str(exc)
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    info["mps"] = bool(mps is not None and mps.is_available())
    return info


def _find_model(model: str | None) -> dict:
    if not model:
        return {"value": None, "found": False, "where": None, "needed": False}
    path = Path(model).expanduser()
    if path.exists():
        found = (path / "config.json").is_file()
        return {"value": model, "found": found, "where": str(path) if found else None, "local": True}
    looks_like_id = model.count("/") == 1 and not model.startswith((".", "/", "~"))
    where = None
    if looks_like_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
            if isinstance(cached, str):
                where = str(Path(cached).parent)
        except Exception:
            where = None
    return {"value": model, "found": where is not None, "where": where, "local": not looks_like_id}


def _find_vae(vae: str | None) -> dict:
    if vae:
        path = Path(vae).expanduser()
        return {"value": vae, "found": path.is_file(), "where": str(path) if path.is_file() else None}
    try:  # the weights module knows the default cache location, when it exists
        weights = importlib.import_module(f"{__package__.rsplit('.', 1)[0]}.core.model.weights")
        finder = getattr(weights, "find_vae", None) or getattr(weights, "default_vae_path", None)
        candidate = finder() if finder else None
    except Exception:
        candidate = None
    if candidate and Path(candidate).is_file():
        return {"value": None, "found": True, "where": str(candidate)}
    return {"value": None, "found": False, "where": None}


def check_environment(model: str | None = None, vae: str | None = None, executor: str = "local") -> dict:
    """Describe this Python for the plugin's setup check, with a fix command for each gap.

    ``executor="ray"``: runs go to Ray (Worker setup holds a Ray address), so a missing Ray is a gap.
    """
    python = sys.executable
    packages = {
        name: _version_of(name)
        for name in (
            "numpy",
            "rasterio",
            "shapely",
            "pyproj",
            "geopandas",
            "pyogrio",
            "torch",
            "transformers",
            "ray",
        )
    }
    cuda = _cuda_info()
    model_info = _find_model(model)
    vae_info = _find_vae(vae)
    fixes: list[dict] = []
    geo_missing = [
        n for n in ("numpy", "rasterio", "shapely", "pyproj", "geopandas", "pyogrio") if not packages[n]
    ]
    ml_missing = [n for n in ("torch", "transformers") if not packages[n]]
    if geo_missing:
        fixes.append(
            {
                "problem": f"missing {', '.join(geo_missing)} (needed by every engine)",
                "command": _install_command(python, "geo"),
            }
        )
    if ml_missing:
        fixes.append(
            {
                "problem": f"missing {', '.join(ml_missing)} (needed by the PaliGemma engine)",
                "command": _install_command(python, "model"),
            }
        )
    if executor == "ray" and not (packages["ray"] and importlib.util.find_spec("grpc") is not None):
        fixes.append(
            {
                "problem": "missing ray (needed to send the work to a Ray cluster: the Ray address in Worker setup)",
                "command": _install_command(python, "region"),
            }
        )
    if packages["torch"] and not cuda["available"]:
        fixes.append(
            {
                "problem": "torch sees no CUDA GPU: PaliGemma will run on the CPU (slow)",
                "command": f'"{python}" -m pip install --force-reinstall torch '
                "--index-url https://download.pytorch.org/whl/cu124   # with an NVIDIA driver installed",
                "optional": True,
            }
        )
    if model and not model_info["found"]:
        fixes.append(
            {
                "problem": f"model {model} not found locally"
                + (
                    ""
                    if model_info.get("local")
                    else " (Google's models are gated: accept the licence on "
                    f"https://huggingface.co/{model} and log in with `hf auth login` first)"
                ),
                "command": f'"{python}" -c "import huggingface_hub as h; h.snapshot_download({model!r}, '
                "allow_patterns=['*.json', '*.safetensors', 'tokenizer.model'])\""
                if not model_info.get("local")
                else f"check the folder {model} (it needs config.json and the model weights)",
            }
        )
    if not vae_info["found"]:
        fixes.append(
            {
                "problem": f"VAE codec file {vae or 'vae-oid.npz'} not found",
                "command": module_command(python, "weights download"),
            }
        )
    ready_water_index = not geo_missing
    ready_paligemma = (
        ready_water_index and not ml_missing and vae_info["found"] and (model_info["found"] or not model)
    )
    return {
        "python": python,
        "python_version": platform.python_version(),
        "system": platform.system(),
        "machine": platform.machine(),
        "gpu": nvidia_gpu(),  # what the driver offers, whatever torch's build (decides the torch to install)
        "paligemma_qgis": __version__,
        "packages": packages,
        "torch": packages["torch"],
        "transformers": packages["transformers"],
        "cuda": cuda,
        "model": model_info,
        "vae": vae_info,
        "ready": {"water-index": ready_water_index, "paligemma": bool(ready_paligemma)},
        "fixes": fixes,
    }


def module_command(python: str, args: str) -> str:
    """A shell command running ``python -m paligemma_qgis ARGS`` with this package importable."""
    parent = Path(__file__).resolve().parents[2]
    package = Path(__file__).resolve().parents[1].name
    if sys.platform == "win32":
        return f'set "PYTHONPATH={parent}" && "{python}" -m {package} {args}'
    return f'PYTHONPATH="{parent}" "{python}" -m {package} {args}'


def requirements_file(group: str = "geo") -> Path | None:
    """The worker requirements of ``group`` shipped with the plugin (zip), or requirements.in of a checkout."""
    package_dir = Path(__file__).resolve().parents[1]
    names = {"model": "requirements-model.txt", "region": "requirements-region.txt"}
    shipped = package_dir / names.get(group, "requirements-worker.txt")
    for candidate in (shipped, package_dir.parent / "requirements.in"):
        if candidate.is_file():
            return candidate
    return None


LOCKED_GROUPS = {"geo": ("worker.txt",), "model": ("model-torch.txt", "model.txt"), "region": ("region.txt",)}


def lock_files(group: str) -> list[Path] | None:
    """The hashed lock files of ``group`` shipped in locks/ (make lock), when they cover this Python."""
    locks = Path(__file__).resolve().parents[1] / "locks"
    paths = [locks / name for name in LOCKED_GROUPS[group]]
    if not all(p.is_file() for p in paths):
        return None
    floor = re.search(r"Python >= (\d+)\.(\d+)", paths[0].read_text(encoding="utf-8")[:2000])
    if floor is None or sys.version_info[:2] < (int(floor.group(1)), int(floor.group(2))):
        return None
    return paths


def _install_command(python: str, group: str) -> str:
    """pip install of a requirements group: from its hashed lock files (every file checked against
    its sha256), else by name (a checkout's requirements.in holds every group)."""
    locks = lock_files(group)
    if locks is not None:
        return f'"{python}" -m pip install --require-hashes --no-deps ' + " ".join(f'-r "{p}"' for p in locks)
    requirements = requirements_file(group)
    if group == "region" and (requirements is None or requirements.suffix == ".in"):
        # A checkout: one line of requirements.in (Ray Client, for ray:// addresses, is the [client] extra).
        return f'"{python}" -m pip install "ray[client]"'
    if requirements is not None:
        return f'"{python}" -m pip install -r "{requirements}"'
    names = GEO_PACKAGES if group == "geo" else MODEL_PACKAGES
    return f'"{python}" -m pip install ' + " ".join(names)


if __name__ == "__main__":
    sys.exit(main())
