"""Errors in the command line's words: options by their flags, remedies as commands.

The labels come from the parser itself (each option's ``dest`` is the spec's flat name), so a
renamed flag renames itself in every message. Positional arguments and options no flag sets
have their names here.
"""

from __future__ import annotations

import argparse
from functools import cache

from ..core.errors import ErrorInfo, PaliGemmaQgisError, Wording, render

# Names that are positional arguments or not options of any command.
_NAMES = {
    "raster": "INPUT",
    "output": "OUTPUT",
    "labels": "--labels",
    "out_dir": "OUT_DIR",
    "stretch": "the stretch",
    "cache": "--cache",
    # positional arguments of change, occurrence, evaluate and finetune
    "before": "BEFORE",
    "after": "AFTER",
    "inputs": "RUN.gpkg|DIR",
    "pred": "PRED",
    "truth": "TRUTH",
    "data_dir": "DATA_DIR",
}
# Remedies the command line words otherwise than core's neutral ones: exact commands, flags and all.
_HF_ACCESS = (
    "open https://huggingface.co/{model}, log in and accept the licence (Gemma terms of use); then run "
    "`hf auth login` (or set the HF_TOKEN environment variable) on this machine and try again. Without "
    "internet, download the model folder elsewhere (`hf download {model} --local-dir DIR`), copy it here "
    "and pass that folder as {option}"
)
_REMEDIES: dict[str, str] = {
    "model_gated": _HF_ACCESS,
    "model_not_found": _HF_ACCESS,
    "model_folder_missing": (
        "give a folder holding config.json, *.safetensors and the tokenizer files (e.g. from "
        "`hf download {example} --local-dir {path}`), or a Hugging Face model id"
    ),
    "vae_missing": (
        "get it with `python -m paligemma_qgis weights download` (saves to {cache}), or download {url} "
        "(or {url2}) and put it at {cache}, set {env}=/path/to/{file}, or pass {option} FILE"
    ),
    "vae_exists": "pass {opt_force} to replace it",
    "model_not_cached": (
        "download it once with internet (`hf download {model}`, without {opt_offline}; gated: accept the "
        "licence on https://huggingface.co/{model} and `hf auth login` or HF_TOKEN first), or pass a local "
        "model folder as {option}"
    ),
}


def labels_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """dest -> its first long flag, over every subcommand of ``parser``."""
    out: dict[str, str] = {}

    def walk(p: argparse.ArgumentParser) -> None:
        for action in p._actions:  # argparse has no public listing of its actions
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            elif action.option_strings:
                flag = next(
                    (s for s in action.option_strings if s.startswith("--")), action.option_strings[0]
                )
                out.setdefault(action.dest, flag)

    walk(parser)
    return out


@cache
def cli_wording() -> Wording:
    from . import build_parser

    return Wording("cli", {**labels_of(build_parser()), **_NAMES}, _REMEDIES)


def failed_scenes(details: dict) -> dict[str, str]:
    """A summary's failed scenes, each error in the command line's words (from its code)."""
    infos = details.get("failed_scene_errors") or {}
    texts = details.get("failed_scenes") or {}
    return {
        scene: cli_message(ErrorInfo.from_data(infos[scene])) if scene in infos else str(text)
        for scene, text in texts.items()
    }


def cli_message(exc: PaliGemmaQgisError | ErrorInfo) -> str:
    """One line for the terminal."""
    info = exc.info if isinstance(exc, PaliGemmaQgisError) else exc
    return render(info, cli_wording())
