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

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..core.environment import ENGINE_NEEDS
from .setup_tasks import Step, install_step, setup_env, venv_step, weights_steps
from .worker_env import managed_venv_dir, requirements, system_python, venv_python

TORCH_INDEX = "https://download.pytorch.org/whl"
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
        return "\n".join(lines)


def _size(mb: float) -> str:
    if mb >= 1000:
        return f"{mb / 1000:.1f} GB"
    return f"{round(mb, -1):.0f} MB" if mb >= 100 else f"{mb:g} MB"


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
) -> SetupPlan:
    """The setup an ``engine`` run needs, from a ``worker --probe`` of the worker Python.

    ``source``: where that Python came from (worker_env.worker_python). The plugin's own venv
    is completed in place; any other Python is left alone and the plugin's venv is made from
    QGIS's Python instead (installing into a system or conda Python can break it).
    ``with_vae``: also download vae-oid.npz (default: when the probe did not find it).
    ``groups_requirements``: the requirement lines per group (tests; default: the plugin's).
    Ray is part of the plan when the probe was asked for a run sent to Ray (its ``needs``
    name "region").
    """
    venv_dir = Path(venv_dir) if venv_dir is not None else managed_venv_dir()
    reqs = groups_requirements or {group: requirements(group) for group in ("geo", "model", "region")}
    needs = list(ENGINE_NEEDS.get(engine, ("geo",)))
    if "region" in (probe.get("needs") or []):
        needs.append("region")
    in_place = source == "managed venv"
    missing = probe.get("missing") or {}
    groups = [g for g in needs if missing.get(g)] if in_place else needs
    python = str(probe.get("python")) if in_place else str(venv_python(venv_dir))
    env = setup_env()
    steps: list[Step] = []
    parts: list[tuple[str, float]] = []
    create = None
    if not in_place:
        create = venv_dir
        steps.append(venv_step(venv_dir, base_python or system_python(), env))
    torch = None
    if "geo" in groups:
        steps.append(install_step("Install the geospatial packages", python, reqs["geo"], pip_args, env, 3.0))
        parts.append(("geospatial packages (rasterio, geopandas, shapely, pyproj …)", GEO_MB))
    if "model" in groups:
        torch = torch_build(str(probe.get("system")), str(probe.get("machine")), probe.get("gpu") or {})
        torch_reqs = [r for r in reqs["model"] if re.match(r"torch\b", r, re.IGNORECASE)]
        rest = [r for r in reqs["model"] if r not in torch_reqs]
        index = ("--index-url", torch.index_url) if torch.index_url else ()
        steps.append(
            install_step(
                f"Install {torch.label}", python, torch_reqs or ["torch"], (*pip_args, *index), env, 8.0
            )
        )
        parts.append((torch.label, torch.download_mb))
        if rest:
            steps.append(install_step("Install transformers", python, rest, pip_args, env, 2.0))
            parts.append(("transformers and the Hugging Face tools", MODEL_REST_MB))
    if "region" in groups:
        steps.append(
            install_step("Install Ray", python, reqs.get("region") or ["ray[client]"], pip_args, env, 2.0)
        )
        parts.append(("Ray, to send the work to the Ray cluster named in Worker setup", RAY_MB))
    vae = probe.get("vae") or {}
    if with_vae is None:
        with_vae = engine in ("paligemma", "export") and not vae.get("found")
    if with_vae:
        steps += weights_steps(python)
        parts.append(("the VAE mask codec vae-oid.npz", VAE_MB))
    return SetupPlan(python=python, steps=steps, create_venv=create, parts=parts, torch=torch)
