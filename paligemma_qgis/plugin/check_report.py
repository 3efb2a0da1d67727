"""The worker check (``worker --check``): run it, read its JSON, and render it as the setup page's report.

Apart from the page (setup_check) so that scripts and tests can run and render a check
without the dialog.
"""

from __future__ import annotations

import html
import json
import subprocess

from ..core.environment import GEO_PACKAGES
from .worker_env import worker_command, worker_env, worker_flags

# The dialog's check is killed after this long (seconds): importing torch takes a few seconds,
# a cold start on a slow disk maybe a minute; a hung GPU driver never ends.
CHECK_TIMEOUT_S = 120.0


def check_args(model: str | None, vae: str | None, executor: str = "local") -> list[str]:
    return ["--check", *worker_flags(model, vae, executor)]


def run_check(
    python: str | None = None,
    model: str | None = None,
    vae: str | None = None,
    timeout: float = 120,
    executor: str = "local",
) -> dict:
    """Run the check synchronously (tests, scripts); returns the worker's JSON or {"error": ...}."""
    command = worker_command(*check_args(model, vae, executor), python=python)
    try:
        proc = subprocess.run(
            command,
            capture_output=True,
            encoding="utf-8",  # the worker writes UTF-8 (PYTHONIOENCODING), not the locale's code page
            errors="replace",
            env=worker_env(),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else exc.stderr
        return timeout_result(command[0], command, timeout, stderr or "")
    except OSError as exc:
        return {"error": f"cannot run {command[0]}: {exc}", "command": " ".join(command)}
    return parse_check_output(proc.stdout, proc.stderr, proc.returncode, command)


def parse_check_output(stdout: str, stderr: str, returncode: int | None, command: list[str]) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    return {
        "error": f"the worker check failed (exit code {returncode})",
        "details": (stderr or stdout)[-3000:],
        "command": " ".join(command),
    }


def _mark(ok: bool, optional: bool = False) -> str:
    if ok:
        return '<span style="color:#1a7f37">✔</span>'
    return '<span style="color:#9a6700">●</span>' if optional else '<span style="color:#cf222e">✘</span>'


def timeout_result(python: str, command: list[str], seconds: float, stderr: str = "") -> dict:
    """The check's result when ``worker --check`` did not finish in ``seconds`` (and was killed)."""
    return {
        "error": f"the worker check did not finish in {seconds:g} s and was stopped "
        f"(worker Python: {python})",
        "hint": "The likely cause is a hang while importing torch or initialising the GPU: a broken or "
        "mismatched NVIDIA driver or CUDA install, or a package import that never returns. Run the "
        "command in a terminal to see where it stops; reinstall the GPU driver, or install the CPU "
        "build of torch in the worker environment, or choose another Python.",
        "details": stderr[-3000:],
        "command": " ".join(command),
    }


def render_check(check: dict, ray_address: str = "") -> str:
    """HTML report of a worker check: one row per requirement, then the fix commands.

    ``ray_address``: Worker setup's; with one, Ray is required (else an optional extra).
    """
    esc = html.escape
    if "error" in check:
        hint = check.get("hint") or (
            "Create the worker environment with the commands below, or choose another Python."
        )
        details = check.get("details", "")
        return (
            f"<p>{_mark(False)} <b>{esc(check['error'])}</b></p>"
            f"<p>Command: <code>{esc(check.get('command', ''))}</code></p>"
            + (f"<pre>{esc(details)}</pre>" if details else "")
            + f"<p>{esc(hint)}</p>"
        )
    packages = check.get("packages", {})
    cuda = check.get("cuda", {})
    model = check.get("model", {})
    vae = check.get("vae", {})
    rows = [
        (True, False, "Python", f"{check.get('python')} ({check.get('python_version')})"),
    ]
    for name in GEO_PACKAGES.values():
        rows.append((bool(packages.get(name)), False, name, packages.get(name) or "missing"))
    for name in ("torch", "transformers"):
        rows.append(
            (bool(packages.get(name)), False, name, packages.get(name) or "missing (PaliGemma engine only)")
        )
    if ray_address:
        rows.append(
            (
                bool(packages.get("ray")),
                False,
                "ray",
                packages.get("ray") or f"missing: needed for {ray_address}",
            )
        )
    else:
        rows.append(
            (
                bool(packages.get("ray")),
                True,
                "ray",
                packages.get("ray") or "not installed (only to send the work to a Ray cluster)",
            )
        )
    gpu = cuda.get("device") if cuda.get("available") else ("Apple MPS" if cuda.get("mps") else None)
    rows.append((bool(gpu), True, "GPU", gpu or "none: PaliGemma runs on the CPU (slow)"))
    if model.get("value"):
        rows.append(
            (
                bool(model.get("found")),
                False,
                "Model",
                f"{model['value']}: {model.get('where') or 'not found locally'}",
            )
        )
    rows.append(
        (
            bool(vae.get("found")),
            False,
            "VAE codec",
            vae.get("where") or f"{vae.get('value') or 'vae-oid.npz'}: not found",
        )
    )
    body = "".join(
        f"<tr><td>{_mark(ok, optional)}</td><td><b>{esc(label)}</b></td><td>{esc(str(value))}</td></tr>"
        for ok, optional, label, value in rows
    )
    ready = check.get("ready", {})
    summary = (
        f"<p>Water-index engine: {_mark(bool(ready.get('water-index')))} &nbsp; "
        f"PaliGemma engine: {_mark(bool(ready.get('paligemma')))}"
        + (f" &nbsp; Ray ({esc(ray_address)}): {_mark(bool(packages.get('ray')))}" if ray_address else "")
        + "</p>"
    )
    fixes = "".join(
        f"<li>{esc(fix['problem'])}<br><code>{esc(fix['command'])}</code></li>"
        for fix in check.get("fixes", [])
    )
    fixes_html = f"<p><b>To fix:</b></p><ol>{fixes}</ol>" if fixes else "<p>Nothing to fix.</p>"
    return f"{summary}<table cellspacing='4'>{body}</table>{fixes_html}"
