"""What a worker Python needs for each engine, said with the names people install.

Standard library only: the QGIS plugin runs ``worker --probe`` (this module) in a Python
that may have nothing else yet, to learn in a fraction of a second what is missing before a
run starts, and the worker names a missing module by the package that brings it
("rasterio", not "affine").
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

# pip name -> the module that shows it is installed. Every engine needs these (water index too).
GEO_PACKAGES: dict[str, str] = {
    "numpy": "numpy",
    "rasterio": "rasterio",
    "shapely": "shapely",
    "pyproj": "pyproj",
    "geopandas": "geopandas",
    "pyogrio": "pyogrio",
    "pillow": "PIL",
    "tqdm": "tqdm",
    "platformdirs": "platformdirs",
    "pystac": "pystac",  # STAC inputs
    "pystac-client": "pystac_client",  # segment --stac-api
}
# Only the PaliGemma engine needs these (about 1-3 GB with torch).
MODEL_PACKAGES: dict[str, str] = {
    "torch": "torch",
    "transformers": "transformers",
    "tokenizers": "tokenizers",
    "safetensors": "safetensors",
    "huggingface-hub": "huggingface_hub",
}
# Only a run sent to Ray needs these (``executor="ray"``: a cluster, or several local GPUs);
# grpcio is Ray Client's (``ray://`` addresses), installed with it as ``ray[client]``.
REGION_PACKAGES: dict[str, str] = {
    "ray": "ray",
    "grpcio": "grpc",
}
# Modules people never install themselves, by the package that brings them.
PROVIDED_BY: dict[str, str] = {
    "affine": "rasterio",
    "cligj": "rasterio",
    "click": "rasterio",
    "click_plugins": "rasterio",
    "attr": "rasterio",
    "snuggs": "rasterio",
    "certifi": "rasterio",
    "pandas": "geopandas",
    "pytz": "geopandas",
    "dateutil": "geopandas",
    "packaging": "geopandas",
    "filelock": "torch",
    "sympy": "torch",
    "networkx": "torch",
    "jinja2": "torch",
    "fsspec": "torch",
    "yaml": "transformers",
    "regex": "transformers",
    "requests": "transformers",
    "accelerate": "transformers",
    "sentencepiece": "transformers",
}
# Modules a package cannot work without, checked with it: a rasterio without affine is broken
# (the first run in QGIS 3.22 failed on exactly that), and is reported as rasterio.
DEPENDENCY_CHECKS: dict[str, str] = {"affine": "rasterio", "pandas": "geopandas"}
ENGINE_NEEDS: dict[str, tuple[str, ...]] = {
    "water-index": ("geo",),
    "paligemma": ("geo", "model"),
    "export": ("geo", "model"),  # the training-data export encodes masks with the VAE (torch)
}


def package_for_module(module: str) -> str:
    """The package to install for an import that failed: 'affine.base' -> 'rasterio'."""
    top = module.split(".")[0]
    for table in (GEO_PACKAGES, MODEL_PACKAGES, REGION_PACKAGES):
        for package, name in table.items():
            if name == top:
                return package
    return PROVIDED_BY.get(top, top)


def is_model_package(package: str) -> bool:
    """True for what only the PaliGemma engine needs (torch, transformers and what they bring)."""
    return package in MODEL_PACKAGES or package in ("accelerate", "sentencepiece")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken package counts as missing
        return False


def missing_packages() -> dict[str, list[str]]:
    """{"geo": [...], "model": [...], "region": [...]}: the packages of each group this Python
    cannot import (found without importing them: a fraction of a second, torch included)."""
    missing: dict[str, list[str]] = {}
    for group, table in (("geo", GEO_PACKAGES), ("model", MODEL_PACKAGES), ("region", REGION_PACKAGES)):
        names = [p for p, m in table.items() if not _importable(m)]
        for module, package in DEPENDENCY_CHECKS.items():
            if package in table and package not in names and not _importable(module):
                names.append(package)
        missing[group] = names
    return missing


def nvidia_gpu(timeout: float = 10.0) -> dict:
    """{"present": bool, "name", "driver", "cuda"}: what ``nvidia-smi`` says (CUDA = the newest the driver runs).

    No torch needed: this decides which torch build to install in the first place.
    """
    info: dict = {"present": False, "name": None, "driver": None, "cuda": None}
    exe = shutil.which("nvidia-smi")
    if exe is None and sys.platform == "win32":
        candidate = Path(os.environ.get("SYSTEMROOT", r"C:\Windows")) / "System32" / "nvidia-smi.exe"
        exe = str(candidate) if candidate.is_file() else None
    if exe is None:
        return info
    try:
        out = subprocess.run([exe], capture_output=True, text=True, timeout=timeout, errors="replace").stdout
    except (OSError, subprocess.SubprocessError):
        return info
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", out)
    driver = re.search(r"Driver Version:\s*([\d.]+)", out)
    name = re.search(r"^\|\s+\d+\s+(.+?)\s{2,}", out, re.MULTILINE)
    info.update(
        present=bool(cuda or driver),
        name=name.group(1).strip() if name else None,
        driver=driver.group(1) if driver else None,
        cuda=cuda.group(1) if cuda else None,
    )
    return info


def _vae(vae: str | None) -> dict:
    """Where the VAE file is, if this Python can tell (the default location needs platformdirs)."""
    if vae:
        path = Path(vae).expanduser()
        return {"found": path.is_file(), "where": str(path) if path.is_file() else None, "known": True}
    env = os.environ.get("PALIGEMMA_QGIS_VAE", "").strip()
    if env:
        path = Path(env).expanduser()
        return {"found": path.is_file(), "where": str(path) if path.is_file() else None, "known": True}
    try:
        from .model.weights import default_vae_path

        path = default_vae_path()
    except ImportError:  # numpy/platformdirs missing: the setup comes first anyway
        return {"found": False, "where": None, "known": False}
    return {"found": path.is_file(), "where": str(path), "known": True}


def _model(model: str | None) -> dict:
    """A local model folder, or a Hub id in the local cache (a missing one is downloaded by the run)."""
    if not model:
        return {"found": False, "local": False, "where": None}
    path = Path(model).expanduser()
    looks_like_id = (
        model.count("/") == 1 and not model.startswith((".", "/", "~", "\\")) and not path.exists()
    )
    if not looks_like_id:
        found = (path / "config.json").is_file()
        return {"found": found, "local": True, "where": str(path) if found else None}
    if not _importable("huggingface_hub"):
        return {"found": False, "local": False, "where": None}
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception:  # an old or broken huggingface_hub: "not known to be cached"
        cached = None
    where = str(Path(cached).parent) if isinstance(cached, str) else None
    return {"found": where is not None, "local": False, "where": where}


def probe(
    engine: str = "water-index", model: str | None = None, vae: str | None = None, executor: str = "local"
) -> dict:
    """What the plugin asks before a run: this Python, what it lacks, the GPU, model and VAE.

    ``executor="ray"``: the run goes to Ray, so the "region" packages are needed too.
    """
    missing = missing_packages()
    needs = ENGINE_NEEDS.get(engine, ("geo",)) + (("region",) if executor == "ray" else ())
    result: dict = {
        "python": sys.executable,
        "python_version": platform.python_version(),
        "system": platform.system(),
        "machine": platform.machine(),
        "missing": missing,
        "needs": list(needs),
        "ready": not any(missing[group] for group in needs),
        "gpu": nvidia_gpu(),
    }
    if engine in ("paligemma", "export"):
        result["vae"] = _vae(vae)
    if engine == "paligemma":
        result["model"] = _model(model)
    return result
