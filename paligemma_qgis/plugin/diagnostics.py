"""The text of Worker setup's "Copy diagnostics" button: what a bug report needs first.

QGIS and Qt versions, the OS, QGIS's own Python, the worker Python and where it came from,
the Ray address and Ray's version,
the worker's packages, torch's CUDA build, the GPU and its free memory, and where the model
and the VAE file were found (from ``worker --check``). Paths stay in: they are what goes
wrong on other machines. No token or environment value is included.
"""

from __future__ import annotations

import platform
import sys

from qgis.core import Qgis
from qgis.PyQt.QtCore import PYQT_VERSION_STR, QT_VERSION_STR

from .. import __version__
from .worker_env import qgis_python


def diagnostics_text(check: dict | None, python: str, source: str, ray_address: str = "") -> str:
    """Plain text, one fact per line, from a worker check (None: not checked yet)."""
    qgis_py, found = qgis_python()
    lines = [
        f"PaliGemma Water {__version__}",
        f"QGIS {Qgis.QGIS_VERSION} (Qt {QT_VERSION_STR}, PyQt {PYQT_VERSION_STR})",
        f"OS: {platform.platform()} ({platform.machine()})",
        f"QGIS Python: {qgis_py} ({platform.python_version()})" + ("" if found else " [guessed from PATH]"),
        f"Worker Python: {python} ({source})",
        f"Ray address: {ray_address or 'none (runs on this computer)'}",
    ]
    if check is None:
        lines.append("Worker check: not run")
        return "\n".join(lines)
    if "error" in check:
        lines.append(f"Worker check failed: {check['error']}")
        if check.get("details"):
            lines.append(str(check["details"]).strip()[-1500:])
        return "\n".join(lines)
    lines.append(f"Worker Python version: {check.get('python_version')} at {check.get('python')}")
    packages = check.get("packages") or {}
    lines.append(
        "Packages: " + ", ".join(f"{name} {version or 'missing'}" for name, version in packages.items())
    )
    lines.append(f"Ray: {packages.get('ray') or 'not installed'}")
    cuda = check.get("cuda") or {}
    if packages.get("torch"):
        lines.append(f"torch CUDA build: {cuda.get('torch_cuda') or 'none (CPU build)'}")
    if cuda.get("available"):
        memory = ""
        if cuda.get("memory_total_gb"):
            memory = f", free memory {cuda.get('memory_free_gb')} of {cuda.get('memory_total_gb')} GB"
        lines.append(f"GPU: {cuda.get('device')} (CUDA devices: {cuda.get('count', 1)}{memory})")
    elif cuda.get("mps"):
        lines.append("GPU: Apple MPS")
    else:
        lines.append("GPU: none seen by torch" + (f" ({cuda['error']})" if cuda.get("error") else ""))
    model = check.get("model") or {}
    if model.get("value"):
        lines.append(f"Model: {model['value']} -> {model.get('where') or 'not found locally'}")
    vae = check.get("vae") or {}
    lines.append(f"VAE: {vae.get('where') or (vae.get('value') or 'vae-oid.npz') + ' not found'}")
    ready = check.get("ready") or {}
    lines.append(
        f"Ready: water index {'yes' if ready.get('water-index') else 'no'}, "
        f"PaliGemma {'yes' if ready.get('paligemma') else 'no'}"
    )
    lines.append(f"sys.platform: {sys.platform}")
    return "\n".join(lines)
