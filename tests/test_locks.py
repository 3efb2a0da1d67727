"""The worker's lock files: complete, hashed, in step with requirements.in and constraints.txt."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCKS = REPO / "paligemma_qgis" / "locks"
sys.path.insert(0, str(REPO / "scripts"))
import lock_requirements  # noqa: E402

GROUP_LOCKS = ("worker.txt", "model.txt", "model-torch.txt", "region.txt")


def _entries(name: str) -> list[tuple[Requirement, list[str]]]:
    """(requirement, its hashes) of each entry of a lock."""
    out = []
    for _, block in lock_requirements.entries((LOCKS / name).read_text(encoding="utf-8")):
        first, *rest = [line.strip().rstrip("\\").strip() for line in block.splitlines()]
        hashes = [h.removeprefix("--hash=sha256:") for h in rest if h.startswith("--hash=sha256:")]
        out.append((Requirement(first), hashes))
    return out


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_locks_match_requirements_and_constraints():
    """`make lock` ran after the last change of requirements.in or constraints.txt (no network)."""
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "lock_requirements.py"), "--check"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", GROUP_LOCKS)
def test_every_entry_is_pinned_and_hashed(name):
    pins = _constraints()
    entries = _entries(name)
    assert entries, f"{name} is empty"
    for req, hashes in entries:
        (spec,) = req.specifier
        assert spec.operator == "==", f"{name}: {req} is not pinned"
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), (
            f"{name}: {req} has no sha256"
        )
        # constraints.txt stays the one place for pins: where it pins, the lock agrees.
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned is None or spec.version.split("+")[0] == pinned, (
            f"{name}: {req} but constraints.txt pins {pinned}"
        )
    assert not {canonicalize_name(r.name) for r, _ in entries} & {"pytest", "ruff", "uv", "pytest-qgis"}


def test_each_group_holds_its_section_and_torch_stands_apart():
    def names(lock: str) -> set[str]:
        return {canonicalize_name(r.name) for r, _ in _entries(lock)}

    for group, lock in (("worker", "worker.txt"), ("region", "region.txt")):
        wanted = {canonicalize_name(Requirement(r).name) for r in lock_requirements.section(group)}
        assert wanted <= names(lock), f"{lock} lacks {wanted - names(lock)}"
    model = {canonicalize_name(Requirement(r).name) for r in lock_requirements.section("model")}
    assert model - {"torch"} <= names("model.txt") and "torch" not in names("model.txt")
    assert "torch" in names("model-torch.txt") and not names("model-torch.txt") & names("model.txt")
    # Groups installed one after the other agree on every package they share.
    versions: dict[str, str] = {}
    for lock in GROUP_LOCKS:
        for req, _ in _entries(lock):
            key = f"{canonicalize_name(req.name)} {req.marker}"
            version = next(iter(req.specifier)).version
            assert versions.setdefault(key, version) == version, f"{lock}: {req} vs {versions[key]}"


def test_check_says_when_a_pin_changed(tmp_path):
    """A pin bumped in constraints.txt without `make lock`: the check fails and says what to run."""
    for rel in ("requirements.in", "constraints.txt", "scripts/lock_requirements.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    shutil.copytree(LOCKS, tmp_path / "paligemma_qgis" / "locks")
    script = [sys.executable, str(tmp_path / "scripts" / "lock_requirements.py"), "--check"]
    assert subprocess.run(script, capture_output=True).returncode == 0
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(constraints.read_text().replace("rasterio==", "rasterio==9.9.9\n#"))
    proc = subprocess.run(script, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "worker.txt: made from another requirements.in or constraints.txt" in proc.stderr
    assert "make lock" in proc.stderr


def test_the_workers_own_fix_hints_install_from_the_locks():
    """`worker --check` of a Python the plugin does not manage says how to install, hashed too."""
    from paligemma_qgis.cli.worker_check import _install_command

    assert (
        _install_command("py", "geo")
        == f'"py" -m pip install --require-hashes --no-deps -r "{LOCKS / "worker.txt"}"'
    )
    model = _install_command("py", "model")
    assert model.endswith(f'-r "{LOCKS / "model-torch.txt"}" -r "{LOCKS / "model.txt"}"')
    assert _install_command("py", "region").endswith(f'-r "{LOCKS / "region.txt"}"')
