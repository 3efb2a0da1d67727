"""``worker --check``: the worker Python described for the plugin's setup check.

One JSON object: the packages and their versions, CUDA as torch sees it, the model and the
VAE, whether each engine is ready, and for each gap the exact command that fixes it (from the
hashed lock files the plugin ships, when they cover this Python).
"""

from __future__ import annotations

import importlib
import importlib.util
import platform
import re
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.environment import GEO_PACKAGES, MODEL_PACKAGES, nvidia_gpu


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


GEO_MODULES = tuple(GEO_PACKAGES.values())
MODEL_MODULES = ("torch", "transformers")


def check_environment(model: str | None = None, vae: str | None = None, executor: str = "local") -> dict:
    """Describe this Python for the plugin's setup check, with a fix command for each gap.

    ``executor="ray"``: runs go to Ray (Worker setup holds a Ray address), so a missing Ray is a gap.
    """
    python = sys.executable
    packages = {name: _version_of(name) for name in (*GEO_MODULES, *MODEL_MODULES, "ray")}
    cuda = _cuda_info()
    model_info = _find_model(model)
    vae_info = _find_vae(vae)
    geo_missing = [n for n in GEO_MODULES if not packages[n]]
    ml_missing = [n for n in MODEL_MODULES if not packages[n]]
    fixes = _package_fixes(python, packages, geo_missing, ml_missing, executor)
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
        fixes.append(_model_fix(python, model, model_info))
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


def _package_fixes(
    python: str, packages: dict, geo_missing: list[str], ml_missing: list[str], executor: str
) -> list[dict]:
    """The install commands for what each engine (and a Ray executor) lacks."""
    fixes: list[dict] = []
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
    return fixes


def _model_fix(python: str, model: str, model_info: dict) -> dict:
    """How to get a model that is not on this computer: download a Hub id, or check a folder."""
    local = model_info.get("local")
    gated = (
        ""
        if local
        else " (Google's models are gated: accept the licence on "
        f"https://huggingface.co/{model} and log in with `hf auth login` first)"
    )
    return {
        "problem": f"model {model} not found locally{gated}",
        "command": f'"{python}" -c "import huggingface_hub as h; h.snapshot_download({model!r}, '
        "allow_patterns=['*.json', '*.safetensors', 'tokenizer.model'])\""
        if not local
        else f"check the folder {model} (it needs config.json and the model weights)",
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
