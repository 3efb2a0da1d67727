"""Which of Worker setup's fixes a button can do, and the model download (no widgets).

From a ``worker --check``: the packages a run lacks (installed by the setup plan), the VAE
file (``weights download``) and a PaliGemma model that is not on this computer (downloaded
into the Hugging Face cache with the token from QGIS's authentication database). The
commands stay in the report for a terminal; these are the buttons.
"""

from __future__ import annotations

import re

from ..core.environment import GEO_PACKAGES
from . import hf_token
from .setup_tasks import Step
from .worker_env import PACKAGE_DIR, worker_env

INSTALL, VAE, MODEL = "install", "vae", "model"
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_GEO = tuple(GEO_PACKAGES.values())


def fixes(check: dict, ray_address: str = "") -> list[str]:
    """What buttons can fix after ``check``: INSTALL (packages), VAE, MODEL; in that order."""
    if "error" in check:
        return []
    packages = check.get("packages") or {}
    wanted = [*_GEO, "torch", "transformers", *(["ray"] if ray_address else [])]
    found = []
    if any(not packages.get(name) for name in wanted):
        found.append(INSTALL)
    if not (check.get("vae") or {}).get("found"):
        found.append(VAE)
    model = check.get("model") or {}
    value = str(model.get("value") or "")
    if value and not model.get("found") and not model.get("local") and HUB_ID.match(value):
        found.append(MODEL)
    return found


_DOWNLOAD = (
    "import sys\n"
    f"from {PACKAGE_DIR.name}.core.model.hf_models import resolve_model_folder\n"
    "try:\n"
    "    print(resolve_model_folder(sys.argv[1]))\n"
    "except Exception as exc:\n"
    "    print(exc)\n"
    "    sys.exit(1)\n"
)


def model_steps(python: str, model: str) -> list[Step]:
    """Download ``model`` (a Hub id) into the Hugging Face cache, as a run would (same files, the
    token from QGIS's authentication database in the environment of this command only)."""
    if not HUB_ID.match(model):
        raise ValueError(f"{model}: not a Hugging Face model id")
    env = {**worker_env(), **hf_token.run_env(True)}
    return [Step(f"Download the model {model}", [python, "-c", _DOWNLOAD, model], weight=1.0, env=env)]
