"""What setting up the worker installs on which machine, the Python it starts from, and diagnostics."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bare_python import python_without
from qgis.PyQt.QtWidgets import QApplication
from waiting import wait_until

from paligemma_qgis.plugin.setup_plan import PYPI_INDEX, TORCH_INDEX, plan_setup, torch_build
from paligemma_qgis.plugin.worker_env import qgis_python, worker_command, worker_env
from paligemma_qgis.plugin.worker_locks import LOCKS_DIR, Locks

HASHED = ["--require-hashes", "--no-deps", "-r"]

RTX = {"present": True, "name": "NVIDIA GeForce RTX 4090", "driver": "575.51", "cuda": "12.9"}
OLD_DRIVER = {"present": True, "name": "NVIDIA GeForce GTX 1080", "driver": "470.2", "cuda": "11.4"}
NO_GPU = {"present": False, "name": None, "driver": None, "cuda": None}
REQS = {"geo": ["numpy<2", "rasterio"], "model": ["torch==2.13.0", "transformers"]}


@pytest.mark.parametrize(
    ("system", "machine", "gpu", "index", "words"),
    [
        ("Windows", "AMD64", RTX, f"{TORCH_INDEX}/cu128", "CUDA 12.8 for NVIDIA GeForce RTX 4090"),
        ("Linux", "x86_64", RTX, f"{TORCH_INDEX}/cu128", "CUDA 12.8"),
        ("Linux", "x86_64", {**RTX, "cuda": "13.0"}, f"{TORCH_INDEX}/cu130", "CUDA 13.0"),
        ("Linux", "x86_64", NO_GPU, f"{TORCH_INDEX}/cpu", "CPU build"),  # PyPI's Linux torch is the CUDA one
        ("Windows", "AMD64", NO_GPU, None, "CPU build"),  # PyPI's Windows torch is the CPU one
        ("Linux", "x86_64", OLD_DRIVER, f"{TORCH_INDEX}/cpu", "CPU build"),
        ("Darwin", "arm64", NO_GPU, None, "Apple silicon"),
    ],
)
def test_torch_build_fits_the_machine(system, machine, gpu, index, words):
    build = torch_build(system, machine, gpu)
    assert build.index_url == index
    assert words in build.label
    assert build.download_mb > 0


def test_old_driver_says_how_to_get_the_gpu():
    build = torch_build("Linux", "x86_64", OLD_DRIVER)
    assert "update the driver" in build.note and "11.4" in build.note


def _probe(
    missing_geo=(), missing_model=(), gpu=NO_GPU, system="Linux", python="/usr/bin/python3", version="3.11.2"
):
    return {
        "python": python,
        "python_version": version,
        "system": system,
        "machine": "x86_64",
        "missing": {"geo": list(missing_geo), "model": list(missing_model)},
        "gpu": gpu,
        "vae": {"found": False, "known": True},
    }


def test_water_index_installs_the_geospatial_packages_alone(tmp_path):
    probe = _probe(["rasterio"], ["torch", "transformers"])
    plan = plan_setup(probe, "water-index", "QGIS python", venv_dir=tmp_path / "venv",
                      base_python="/usr/bin/python3", groups_requirements=REQS)  # fmt: skip
    assert [s.title for s in plan.steps] == [
        "Create the worker environment",
        "Install the geospatial packages",
    ]
    assert plan.steps[0].command == [
        "/usr/bin/python3",
        "-m",
        "venv",
        "--system-site-packages",
        str(tmp_path / "venv"),
    ]
    # From the hashed lock: every file checked against its sha256, nothing resolved at install time.
    assert plan.steps[1].command[-4:] == [*HASHED, str(LOCKS_DIR / "worker.txt")]
    assert plan.python.startswith(str(tmp_path / "venv")) and plan.create_venv == tmp_path / "venv"
    assert plan.download_mb == 100 and "torch" not in plan.describe()


def test_paligemma_gets_torch_for_the_gpu_then_transformers_and_the_vae(tmp_path):
    probe = _probe(["rasterio"], ["torch", "transformers"], gpu=RTX, system="Windows")
    plan = plan_setup(probe, "paligemma", "QGIS python", venv_dir=tmp_path / "venv",
                      base_python="python.exe", groups_requirements=REQS)  # fmt: skip
    titles = [s.title for s in plan.steps]
    assert titles[:2] == ["Create the worker environment", "Install the geospatial packages"]
    torch_step = plan.steps[2]
    assert "CUDA 12.8" in torch_step.title
    # No lock of PyTorch's cu128 build here: pinned by version (and the pins of the rest), said out loud.
    assert torch_step.command[-5:] == [
        "--index-url", f"{TORCH_INDEX}/cu128", "-c", str(LOCKS_DIR / "constraints.txt"), "torch==2.13.0"
    ]  # fmt: skip
    assert plan.steps[3].command[-4:] == [*HASHED, str(LOCKS_DIR / "model.txt")]
    assert "--index-url" not in plan.steps[3].command
    assert plan.steps[4].command[2:5] == ["paligemma_qgis", "weights", "download"]
    text = plan.describe()
    assert "torch with CUDA 12.8 for NVIDIA GeForce RTX 4090: 2.8 GB" in text
    assert "About 3.0 GB to download in all." in text
    assert f"PyTorch's index ({TORCH_INDEX}/cu128) pinned to torch==2.13.0, without a hash check" in text


def test_torch_from_pypi_and_from_a_locked_pytorch_build_are_hash_checked(tmp_path):
    mac = plan_setup(_probe([], ["torch"], system="Darwin"), "paligemma", "QGIS python",
                     venv_dir=tmp_path / "venv", groups_requirements=REQS)  # fmt: skip
    # QGIS's Python has the geospatial packages: the venv sees them, they are not installed again.
    assert mac.steps[1].title.startswith("Install torch")
    assert mac.steps[1].command[-4:] == [*HASHED, str(LOCKS_DIR / "model-torch.txt")]
    assert "geospatial" not in mac.describe()
    assert "hash check" not in mac.describe()
    # A plugin built where PyTorch's index answered ships model-torch-cpu.txt: then that one.
    locks = tmp_path / "locks"
    shutil.copytree(LOCKS_DIR, locks)
    (locks / "model-torch-cpu.txt").write_text("torch==2.13.0+cpu --hash=sha256:" + "0" * 64 + "\n")
    linux = plan_setup(_probe([], ["torch"]), "paligemma", "QGIS python", venv_dir=tmp_path / "venv",
                       groups_requirements=REQS, locks=Locks(locks))  # fmt: skip
    assert linux.steps[1].command[4:] == [
        "--index-url", f"{TORCH_INDEX}/cpu", "--extra-index-url", PYPI_INDEX,
        *HASHED, str(locks / "model-torch-cpu.txt"),
    ]  # fmt: skip
    assert "hash check" not in linux.describe()


def test_a_python_older_than_the_locks_installs_by_name_and_says_so(tmp_path):
    python = str(tmp_path / "venv" / "bin" / "python")
    probe = _probe(["rasterio"], [], python=python, version="3.10.12")
    plan = plan_setup(probe, "water-index", "managed venv", venv_dir=tmp_path / "venv",
                      groups_requirements=REQS)  # fmt: skip
    assert plan.steps[0].command == [python, "-m", "pip", "install", "numpy<2", "rasterio"]
    floor = Locks().python_floor()
    assert floor == (3, 11)
    assert "Python 3.10.12 is older than the locked packages need (3.11 or newer)" in plan.describe()


def test_the_plugins_own_venv_is_completed_in_place(tmp_path):
    """The water index was set up before; now PaliGemma: only torch + transformers, no new venv."""
    python = str(tmp_path / "venv" / "bin" / "python")
    probe = _probe([], ["torch", "transformers"], python=python)
    plan = plan_setup(probe, "paligemma", "managed venv", venv_dir=tmp_path / "venv",
                      groups_requirements=REQS, with_vae=False)  # fmt: skip
    assert plan.create_venv is None and plan.python == python
    assert [s.command[0] for s in plan.steps] == [python, python]
    assert "into the worker Python" in plan.describe()


def test_qgis_python_is_the_interpreter_qgis_runs_on(tmp_path):
    """Inside QGIS sys.executable is QGIS itself: the interpreter is found by prefix and version,
    never a python3 that merely comes first on PATH."""
    prefix = tmp_path / "usr"
    (prefix / "bin").mkdir(parents=True)
    exact = prefix / "bin" / "python3.11"
    exact.write_text("")
    assert qgis_python("/usr/bin/qgis", (str(prefix),), (3, 11), windows=False) == (str(exact), True)
    osgeo = tmp_path / "apps" / "Python312"
    osgeo.mkdir(parents=True)
    (osgeo / "python.exe").write_text("")
    assert qgis_python(r"C:\OSGeo4W\bin\qgis-bin.exe", (str(osgeo),), (3, 12), windows=True) == (
        str(osgeo / "python.exe"),
        True,
    )
    # QGIS 3.22 on Linux: embedded Python named the first python3 on PATH (a pyenv shim) as
    # sys.executable. It is not this interpreter: the one under the prefix is.
    shim = tmp_path / ".pyenv" / "shims" / "python3"
    shim.parent.mkdir(parents=True)
    shim.write_text("")
    assert qgis_python(str(shim), (str(prefix),), (3, 11), windows=False) == (str(exact), True)
    venv_python = prefix / "bin" / "python"  # a venv's own python is inside its prefix: it counts
    venv_python.write_text("")
    assert qgis_python(str(venv_python), (str(prefix),), (3, 11), windows=False) == (str(venv_python), True)
    empty = tmp_path / "nothing"
    empty.mkdir()
    _, found = qgis_python("/usr/bin/qgis", (str(empty),), (3, 11), windows=False)
    assert found is False  # only a guess from PATH is left: the caller says so


def test_probe_of_a_bare_python_names_what_to_install(tmp_path):
    python = python_without(tmp_path, ("affine", "torch"))
    proc = subprocess.run(
        worker_command("--probe", "--engine", "paligemma", python=python),
        capture_output=True,
        text=True,
        env=worker_env(),
        timeout=120,
    )
    probe = json.loads(proc.stdout.strip().splitlines()[-1])
    assert probe["missing"]["geo"] == ["rasterio"]  # affine missing: rasterio is broken
    assert probe["missing"]["model"] == ["torch"]
    assert probe["ready"] is False and probe["needs"] == ["geo", "model"]
    assert set(probe["gpu"]) == {"present", "name", "driver", "cuda"}


@pytest.mark.slow
def test_copy_diagnostics(qgis_iface, tmp_path, monkeypatch):
    from paligemma_qgis.plugin.setup_check import SetupCheckDialog

    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    dialog = SetupCheckDialog(vae=str(tmp_path / "vae-oid.npz"))
    dialog.python_widget.setFilePath(sys.executable)
    assert dialog.copy_diagnostics() is None  # not checked yet: checks first, copies when done
    wait_until(lambda: dialog.result is not None, timeout=180, what="the worker check")
    wait_until(lambda: dialog.diagnostics_button.text() == "Copied ✔", what="the copy")
    text = QApplication.clipboard().text()
    lines = text.splitlines()
    assert lines[0].startswith("PaliGemma Water ")
    assert any(line.startswith("QGIS 3.") and "Qt 5." in line for line in lines)
    assert f"Worker Python: {sys.executable} (chosen here)" in lines
    assert any(line.startswith("Packages: numpy ") and "torch " in line for line in lines)
    import torch

    assert f"torch CUDA build: {torch.version.cuda or 'none (CPU build)'}" in lines  # this machine's torch
    if torch.cuda.is_available():
        assert any(line.startswith("GPU: ") and "free memory" in line for line in lines)
    else:
        assert "GPU: none seen by torch" in lines
    assert f"VAE: {Path(tmp_path / 'vae-oid.npz')} not found" in lines
    assert "hf_secret_token_value" not in text
    dialog.deleteLater()


def test_a_ray_address_adds_ray_to_the_plan(tmp_path):
    """The probe was asked for a run sent to Ray: the plugin's venv gets Ray (with its client) in place."""
    python = str(tmp_path / "venv" / "bin" / "python")
    probe = {**_probe(python=python), "needs": ["geo", "region"]}
    probe["missing"]["region"] = ["ray", "grpcio"]
    plan = plan_setup(probe, "water-index", "managed venv", venv_dir=tmp_path / "venv",
                      groups_requirements={**REQS, "region": ["ray[client]"]})  # fmt: skip
    (step,) = plan.steps
    assert step.title == "Install Ray"
    assert step.command == [python, "-m", "pip", "install", *HASHED, str(LOCKS_DIR / "region.txt")]
    assert "Ray, to send the work to the Ray cluster named in Worker setup: 90 MB" in plan.describe()
    # Without a Ray address (needs without "region") nothing about Ray, even when it is missing.
    plan = plan_setup({**probe, "needs": ["geo"]}, "water-index", "managed venv", venv_dir=tmp_path / "venv",
                      groups_requirements=REQS)  # fmt: skip
    assert plan.steps == [] and "Ray" not in plan.describe()


def test_the_setup_commands_shown_to_users_install_from_the_locks():
    from paligemma_qgis.plugin.worker_env import setup_commands

    venv, geo, torch, model, vae = setup_commands()
    assert "-m venv --system-site-packages" in venv and "weights download" in vae
    assert geo.endswith(f'-m pip install --require-hashes --no-deps -r "{LOCKS_DIR / "worker.txt"}"')
    assert torch.endswith(f'--require-hashes --no-deps -r "{LOCKS_DIR / "model-torch.txt"}"')
    assert model.endswith(f'--require-hashes --no-deps -r "{LOCKS_DIR / "model.txt"}"')
    cuda = setup_commands(f"{TORCH_INDEX}/cu128")[2]
    assert cuda.endswith(
        f"'torch==2.13.0' --index-url {TORCH_INDEX}/cu128 -c \"{LOCKS_DIR / 'constraints.txt'}\""
    )
