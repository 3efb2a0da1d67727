"""The worker's error event: any exception as a code, its parameters and the option at fault.

The plugin says the error in its own words from ``code``, ``params`` and ``field``
(plugin/error_text.py); ``message`` is the neutral rendering, for the log and Details…,
and ``details`` the traceback when there is one worth reading. Exceptions that are not the
core's get codes too: a missing package (``missing_packages``, with the names people
install), the plugin's own files missing (``plugin_incomplete``), memory (``worker_memory``,
``gpu_memory``) and anything else (``unexpected``, with its class and text).
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

from ..core.environment import is_model_package, package_for_module
from ..core.errors import ErrorInfo, PaliGemmaQgisError, error_info, render


class BadJob(PaliGemmaQgisError):
    """The job on stdin is not what the worker protocol expects."""


def error_event(exc: BaseException) -> dict[str, Any]:
    """The fields of the ``error`` event for ``exc`` (raised while the job ran)."""
    if isinstance(exc, PaliGemmaQgisError):
        cause = exc.__cause__
        # A run's error that wraps an unexpected one (every scene failed on a bug): keep its traceback.
        details = (
            traceback.format_exc()
            if cause is not None and not isinstance(cause, PaliGemmaQgisError)
            else type(exc).__name__
        )
        return {"message": str(exc), "details": details, **error_fields(exc)}
    if isinstance(exc, ModuleNotFoundError):  # QGIS's own Python, or a half-made environment
        info = missing_module(exc)
    elif isinstance(exc, MemoryError):
        info = ErrorInfo("worker_memory")
    elif is_gpu_memory(exc):
        info = ErrorInfo("gpu_memory", {"detail": str(exc)[:300]}, field="batch_size")
    else:
        info = error_info(exc)
    message = (
        "the GPU ran out of memory: lower the batch size, choose a smaller model or resolution, or run "
        "on the CPU"
        if info.code == "gpu_memory"  # the model's code: its catalogue words need the core's parameters
        else render(info)
    )
    return {
        "message": message,
        "details": traceback.format_exc(),
        "kind": type(exc).__name__,
        **info.to_data(),
    }


def error_fields(exc: PaliGemmaQgisError) -> dict[str, Any]:
    """The error's ``kind`` (class), ``code``, ``params`` and ``field``: what the plugin renders it from."""
    return {"kind": type(exc).__name__, **exc.info.to_data()}


def missing_module(exc: ModuleNotFoundError) -> ErrorInfo:
    """'the worker Python X has no rasterio, needed by every engine' (the import was affine's).

    Named by the package people install: a missing ``affine`` means rasterio is not (fully) there.
    """
    name = (exc.name or "").split(".")[0]
    if name == __package__.split(".")[0]:
        return ErrorInfo("plugin_incomplete", {"module": exc.name})
    package = package_for_module(name) if name else "a module"
    engine_only = "paligemma" if name and is_model_package(package) else None
    return ErrorInfo(
        "missing_packages",
        {
            "python": sys.executable,
            "package": package,
            "packages": [package] if name else [],
            "module": name,
            "needed": "the PaliGemma engine" if engine_only else "every engine",
            "engine_only": engine_only,
        },
    )


def is_gpu_memory(exc: BaseException) -> bool:
    """CUDA's out-of-memory error, which torch raises as a RuntimeError subclass."""
    text = str(exc).lower()
    return "out of memory" in text and "cuda" in text
