"""What setting up the worker takes on this machine: which steps, which torch build, how big.

The geospatial packages (every engine, about 100 MB) come first and alone; torch and
transformers only when the PaliGemma engine (or the training-data export) is used, in the
build that fits the machine: PyPI's Windows torch is CPU-only and its Linux torch is the
large CUDA build even without a GPU, so an NVIDIA GPU gets the CUDA wheels from PyTorch's
own index (the newest CUDA its driver runs), a Linux machine without one the small CPU
wheels, and a Mac PyPI's wheels (MPS on Apple silicon). Ray (with its client, for ray://
addresses) only when Worker setup holds a Ray address. The plan is said to the user, with its
download size, before anything starts. Plain data (no widgets), tested as such.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..core.environment import ENGINE_NEEDS
from .setup_tasks import Step, install_step, setup_env, venv_step, weights_steps
from .worker_env import FALLBACK_REQUIREMENTS, managed_venv_dir, requirements, system_python, venv_python
from .worker_locks import Locks, hashed_install

TORCH_INDEX = "https://download.pytorch.org/whl"
PYPI_INDEX = "https://pypi.org/simple"
# CUDA builds PyTorch publishes for the pinned torch, newest first: (tag, CUDA version it needs).
CUDA_BUILDS = (("cu130", (13, 0)), ("cu128", (12, 8)), ("cu126", (12, 6)))
# Download sizes (MB) said before a setup starts: rough, from the wheels of the pinned versions.
GEO_MB = 100
MODEL_REST_MB = 60  # transformers, tokenizers, safetensors, huggingface-hub
VAE_MB = 8.5
RAY_MB = 90  # ray + grpcio and the few packages they pull in
TORCH_MB = {
    "linux-cuda": 3500,  # torch + the nvidia-* libraries it pulls in
    "windows-cuda": 2800,
    "linux-cpu": 200,
    "windows-cpu": 250,
    "mac": 80,
}


@dataclass(frozen=True)
class TorchBuild:
    """Which torch to install: ``label`` for people, ``index_url`` for pip (None: PyPI)."""

    label: str
    index_url: str | None
    download_mb: int
    note: str = ""


def _version(text: str | None) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def torch_build(system: str, machine: str, gpu: dict) -> TorchBuild:
    """The torch build for ``system`` ("Linux", "Windows", "Darwin"), ``machine`` and ``gpu``
    (core.environment.nvidia_gpu(): present, name, cuda = the newest CUDA the driver runs)."""
    if system == "Darwin":
        if machine.lower() in ("arm64", "aarch64"):
            return TorchBuild("torch for Apple silicon (GPU through MPS)", None, TORCH_MB["mac"])
        return TorchBuild("torch (CPU: Intel Macs have no GPU support in torch)", None, TORCH_MB["mac"])
    kind = "windows" if system == "Windows" else "linux"
    if gpu.get("present"):
        driver_cuda = _version(gpu.get("cuda"))
        name = gpu.get("name") or "the NVIDIA GPU"
        for tag, needs in CUDA_BUILDS:
            if driver_cuda is not None and driver_cuda >= needs:
                return TorchBuild(
                    f"torch with CUDA {needs[0]}.{needs[1]} for {name}",
                    f"{TORCH_INDEX}/{tag}",
                    TORCH_MB[f"{kind}-cuda"],
                )
        oldest = CUDA_BUILDS[-1][1]
        note = (
            f"The NVIDIA driver of {name} runs CUDA {gpu.get('cuda') or '(unknown)'}; torch needs "
            f"{oldest[0]}.{oldest[1]} or newer: update the driver, then set up again, to use the GPU."
        )
        return TorchBuild("torch (CPU build)", f"{TORCH_INDEX}/cpu", TORCH_MB[f"{kind}-cpu"], note)
    if kind == "linux":  # PyPI's Linux torch is the CUDA build: gigabytes for nothing without a GPU
        return TorchBuild(
            "torch (CPU build: no NVIDIA GPU found)", f"{TORCH_INDEX}/cpu", TORCH_MB["linux-cpu"]
        )
    return TorchBuild("torch (CPU build: no NVIDIA GPU found)", None, TORCH_MB["windows-cpu"])


@dataclass
class SetupPlan:
    """The steps that make ``python`` ready for an engine, and what to tell before they run."""

    python: str  # the worker Python once the steps ran
    steps: list[Step]
    create_venv: Path | None  # the venv the first step creates (removed again if a step fails)
    parts: list[tuple[str, float]] = field(default_factory=list)  # (what, MB) for the question
    torch: TorchBuild | None = None
    notes: list[str] = field(default_factory=list)  # what is not hash-checked, and why

    @property
    def download_mb(self) -> float:
        return sum(mb for _, mb in self.parts)

    def describe(self) -> str:
        """The plan in a few lines (what is installed where, with sizes)."""
        where = (
            f"The plugin creates its own worker environment in {self.create_venv} (from the Python QGIS "
            "runs on) and installs:"
            if self.create_venv is not None
            else f"The plugin installs into the worker Python {self.python}:"
        )
        lines = [where, *(f"  • {what}: {_size(mb)}" for what, mb in self.parts)]
        lines.append(f"About {_size(self.download_mb)} to download in all.")
        if self.torch is not None and self.torch.note:
            lines.append(self.torch.note)
        lines += self.notes
        return "\n".join(lines)


def _size(mb: float) -> str:
    if mb >= 1000:
        return f"{mb / 1000:.1f} GB"
    return f"{round(mb, -1):.0f} MB" if mb >= 100 else f"{mb:g} MB"


@dataclass(frozen=True)
class _Installs:
    """How each group is installed: from its hashed lock when this Python is covered, else by name."""

    python: str
    reqs: dict[str, list[str]]
    locks: Locks | None  # None: no lock covers this Python
    pip_args: tuple[str, ...]
    env: dict[str, str]

    def step(self, title: str, group: str, weight: float, extra: tuple[str, ...] = ()) -> Step:
        lock = self.locks.path(group) if self.locks is not None else None
        if lock is not None:
            what = hashed_install(lock)
        else:  # by name; torch has a step of its own
            what = [r for r in self.reqs.get(group) or FALLBACK_REQUIREMENTS[group] if not _is_torch(r)]
        return install_step(title, self.python, what, (*self.pip_args, *extra), self.env, weight)

    def torch_step(self, torch: TorchBuild, notes: list[str]) -> Step:
        """torch in the machine's build: PyPI's from its lock; PyTorch's index's from the lock of that
        build when this plugin has one, else pinned by version only (and the plan says so)."""
        title = f"Install {torch.label}"
        lock = self.locks.path("torch") if self.locks is not None else None
        if torch.index_url is None and lock is not None:
            return install_step(title, self.python, hashed_install(lock), self.pip_args, self.env, 8.0)
        index = ("--index-url", torch.index_url) if torch.index_url else ()
        variant = self.locks.torch_variant(torch.index_url) if self.locks and torch.index_url else None
        if variant is not None:
            pypi = ("--extra-index-url", PYPI_INDEX)
            return install_step(title, self.python, hashed_install(variant), (*self.pip_args, *index, *pypi),
                                self.env, 8.0)  # fmt: skip
        pinned = [r for r in self.reqs.get("model", []) if _is_torch(r)] or ["torch"]
        constraints = self.locks.constraints if self.locks is not None else None
        pins = ("-c", str(constraints)) if constraints is not None else ()
        if self.locks is not None:
            notes.append(
                f"{torch.label} comes from PyTorch's index ({torch.index_url}) pinned to {', '.join(pinned)}, "
                "without a hash check: this plugin has no lock for that build."
            )
        return install_step(title, self.python, pinned, (*self.pip_args, *index, *pins), self.env, 8.0)


def _is_torch(requirement: str) -> bool:
    return re.match(r"torch\b(?![-_])", requirement, re.IGNORECASE) is not None


def plan_setup(
    probe: dict,
    engine: str,
    source: str,
    *,
    venv_dir: Path | None = None,
    base_python: str | None = None,
    pip_args: tuple[str, ...] = (),
    with_vae: bool | None = None,
    groups_requirements: dict[str, list[str]] | None = None,
    locks: Locks | None = None,
) -> SetupPlan:
    """The setup an ``engine`` run needs, from a ``worker --probe`` of the worker Python.

    ``source``: where that Python came from (worker_env.worker_python). The plugin's own venv
    is completed in place; any other Python is left alone and the plugin's venv is made from
    QGIS's Python instead (installing into a system or conda Python can break it), with only
    what QGIS's Python lacks when that is the Python probed.
    ``with_vae``: also download vae-oid.npz (default: when the probe did not find it).
    ``groups_requirements``: the requirement lines per group, installed by name where no lock
    covers the Python (tests; default: the plugin's). ``locks``: the hashed lock files (tests;
    default: the plugin's). Ray is part of the plan when the probe was asked for a run sent to
    Ray (its ``needs`` name "region").
    """
    venv_dir = Path(venv_dir) if venv_dir is not None else managed_venv_dir()
    reqs = groups_requirements or {group: requirements(group) for group in ("geo", "model", "region")}
    needs = list(ENGINE_NEEDS.get(engine, ("geo",)))
    if "region" in (probe.get("needs") or []):
        needs.append("region")
    in_place = source == "managed venv"
    missing = probe.get("missing") or {}
    # The new venv sees the packages of the Python it is made from (--system-site-packages): what
    # the probe found there (QGIS's own Python) is not installed again.
    sees_probed = in_place or source == "QGIS python"
    groups = [g for g in needs if missing.get(g)] if sees_probed else needs
    python = str(probe.get("python")) if in_place else str(venv_python(venv_dir))
    # A new venv runs the Python QGIS runs on (this one); in place, the probed one.
    version = str(probe.get("python_version") or "") if in_place else platform.python_version()
    locks = locks if locks is not None else Locks()
    notes: list[str] = []
    if groups and not locks.covers(version):
        floor = locks.python_floor()
        notes.append(
            f"Python {version or '(unknown version)'} is older than the locked packages need "
            f"({floor[0]}.{floor[1]} or newer): they are installed by name, without a hash check."
            if floor is not None
            else "This plugin has no lock files: the packages are installed by name, without a hash check."
        )
    installs = _Installs(python, reqs, locks if locks.covers(version) else None, pip_args, setup_env())
    steps: list[Step] = []
    parts: list[tuple[str, float]] = []
    create = None
    if not in_place:
        create = venv_dir
        steps.append(venv_step(venv_dir, base_python or system_python(), installs.env))
    torch = None
    if "geo" in groups:
        steps.append(installs.step("Install the geospatial packages", "geo", 3.0))
        parts.append(("geospatial packages (rasterio, geopandas, shapely, pyproj …)", GEO_MB))
    if "model" in groups:
        torch = torch_build(str(probe.get("system")), str(probe.get("machine")), probe.get("gpu") or {})
        steps.append(installs.torch_step(torch, notes))
        parts.append((torch.label, torch.download_mb))
        steps.append(installs.step("Install transformers", "model", 2.0))
        parts.append(("transformers and the Hugging Face tools", MODEL_REST_MB))
    if "region" in groups:
        steps.append(installs.step("Install Ray", "region", 2.0))
        parts.append(("Ray, to send the work to the Ray cluster named in Worker setup", RAY_MB))
    vae = probe.get("vae") or {}
    if with_vae is None:
        with_vae = engine in ("paligemma", "export") and not vae.get("found")
    if with_vae:
        steps += weights_steps(python)
        parts.append(("the VAE mask codec vae-oid.npz", VAE_MB))
    return SetupPlan(python=python, steps=steps, create_venv=create, parts=parts, torch=torch, notes=notes)


# Approximate download of the models the dialog offers (bf16 weights: 2 bytes a parameter).
MODEL_GB = {
    "google/paligemma2-3b-mix-224": 6,
    "google/paligemma2-3b-mix-448": 6,
    "google/paligemma2-3b-pt-224": 6,
    "google/paligemma2-10b-mix-224": 20,
}


def model_download_text(model: str | None, token_stored: bool) -> str:
    """What the first PaliGemma run downloads besides the packages: the model, gated, with its licence."""
    if not model or model.count("/") != 1 or model.startswith((".", "/", "~")):
        return ""
    size = MODEL_GB.get(model)
    how_big = f"about {size} GB" if size else "several GB"
    text = f"Then the first run downloads the model {model} from Hugging Face ({how_big}, once)."
    if model.startswith("google/"):
        text += (
            f" Google's PaliGemma models are gated: accept the licence at https://huggingface.co/{model} "
            "with your Hugging Face account, "
            + (
                "and the access token given in Worker setup is used."
                if token_stored
                else "then give an access token in Worker setup (kept in QGIS's password store)."
            )
        )
    return text
