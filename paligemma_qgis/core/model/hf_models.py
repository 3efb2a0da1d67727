"""Loading PaliGemma (model + processor) from the Hugging Face Hub or a local folder.

Why a module of its own: users meet three problems here, and each needs a clear message,
not a library traceback: the model is gated (licence not accepted, not logged in), the
machine is offline and the model is not cached, or a local folder is not a model folder.
It also picks device and dtype once, so every front end answers "is my GPU used?" the
same way (``describe_device``).

- Hub ids are fetched with ``huggingface_hub.snapshot_download`` (honours HF_HOME /
  HF_HUB_CACHE, HF_TOKEN and ``hf auth login``), then loaded from that folder, so the model
  and the processor come from the same files and errors have precise types.
- Offline: ``offline=True`` or HF_HUB_OFFLINE=1 uses the cache only.
- ``trust_remote_code`` is never set: PaliGemma lives in transformers itself.
- The token is never printed or logged; library messages are scrubbed of it as well.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import WeightsError

if TYPE_CHECKING:  # heavy imports stay inside functions
    import torch

log = logging.getLogger(__name__)

DEFAULT_MODEL = "google/paligemma2-3b-mix-224"

# Models known to answer "segment <class>" (mix checkpoints), with their input size.
KNOWN_MODELS: dict[str, int] = {
    "google/paligemma2-3b-mix-224": 224,
    "google/paligemma2-3b-mix-448": 448,
    "google/paligemma2-10b-mix-224": 224,
    "google/paligemma2-10b-mix-448": 448,
    "google/paligemma-3b-mix-224": 224,
    "google/paligemma-3b-mix-448": 448,
    "google/paligemma2-3b-pt-896": 896,
    "google/paligemma-3b-pt-896": 896,
}

# What a PaliGemma folder needs; anything else in a Hub repo (flax/pytorch .bin/gguf) is skipped.
_ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.jinja"]

_TRUE = {"1", "true", "yes", "on"}


@dataclass
class LoadedModel:
    """A model ready for generation, with what front ends want to show about it."""

    model: Any  # PaliGemmaForConditionalGeneration
    processor: Any  # PaliGemmaProcessor
    device: torch.device
    dtype: torch.dtype
    source: str  # the id or folder the user gave
    folder: Path  # where the files were read from
    image_size: int  # the chip size the model sees (224, 448, 896)

    def describe(self) -> str:
        return f"{self.source} on {describe_device(self.device, self.dtype)}"


# --------------------------------------------------------------------------- device, dtype


def select_device(device: str | None = None) -> torch.device:
    """'auto'/None -> cuda, else mps, else cpu; an explicit name is checked to exist."""
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise WeightsError("device_unknown", field="device", value=repr(device)) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise WeightsError("no_cuda", field="device", value=repr(device), torch=torch.__version__)
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise WeightsError(
                "cuda_index", field="device", value=repr(device), count=torch.cuda.device_count()
            )
        return torch.device("cuda", index)
    if dev.type == "mps" and not _mps_available():
        raise WeightsError("no_mps", field="device", value=repr(device))
    return dev


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """CUDA: bfloat16 where the GPU has it natively, else float32; MPS and CPU: float32.

    PaliGemma was trained in bfloat16. float16 is avoided everywhere: Gemma's residual
    stream overflows float16's range (inf/NaN logits), a known Gemma problem. On MPS that
    leaves float32 (bfloat16 needs macOS 14 and several MPS kernels still lack it): about
    12 GB for the 3B model, correct everywhere. CPU bfloat16 matmuls are slow on most
    CPUs, so CPU stays float32 too. An explicit dtype overrides all of this.
    """
    import torch

    if dtype is not None and dtype != "auto":
        if isinstance(dtype, torch.dtype):
            return dtype
        names = {
            "bf16": "bfloat16",
            "fp16": "float16",
            "half": "float16",
            "fp32": "float32",
            "float": "float32",
        }
        name = names.get(str(dtype).lower(), str(dtype).lower())
        value = getattr(torch, name, None)
        if not isinstance(value, torch.dtype) or name not in {"bfloat16", "float16", "float32"}:
            raise WeightsError("dtype_unknown", field="dtype", value=repr(dtype))
        return value
    if device.type == "cuda":
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch without the keyword
            native = torch.cuda.is_bf16_supported()
        return torch.bfloat16 if native else torch.float32
    return torch.float32


def describe_device(device: torch.device, dtype: torch.dtype | None = None) -> str:
    """One line for users: 'cuda:0 (NVIDIA H100 80GB HBM3), bfloat16' or 'cpu (8 threads), float32'."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        where = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    elif device.type == "mps":
        where = "mps (Apple GPU)"
    elif device.type == "cpu":
        where = f"cpu ({torch.get_num_threads()} threads)"
    else:
        where = str(device)
    return f"{where}, {str(dtype).removeprefix('torch.')}" if dtype is not None else where


# --------------------------------------------------------------------------- locating files


def offline_requested(offline: bool | None = None) -> bool:
    """The parameter wins; otherwise HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE from the environment."""
    if offline is not None:
        return bool(offline)
    return any(
        os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _looks_like_path(model: str) -> bool:
    return (
        os.path.isabs(model)
        or model.startswith((".", "~"))
        or os.sep in model.replace("/", "", 1)  # "org/name" has exactly one "/"
        or (os.altsep is not None and os.altsep in model)
        or Path(model).expanduser().exists()
    )


def _scrub(text: str, token: str | None) -> str:
    """Remove any token value from a message before it reaches a user or a log."""
    for secret in {token, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")}:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def resolve_model_folder(
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    offline: bool | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
) -> Path:
    """A local folder holding the model files: the folder itself, or the Hub snapshot (downloaded once)."""
    text = os.fspath(model).strip()
    if not text:
        raise WeightsError("model_missing", field="model", example=DEFAULT_MODEL)
    if _looks_like_path(text):
        folder = Path(text).expanduser()
        if not folder.exists():
            raise WeightsError("model_folder_missing", field="model", path=str(folder), example=DEFAULT_MODEL)
        if not folder.is_dir() or not (folder / "config.json").is_file():
            raise WeightsError("model_folder_bad", field="model", path=str(folder))
        return folder

    from huggingface_hub import errors as hub_errors
    from huggingface_hub import snapshot_download

    is_offline = offline_requested(offline)
    try:
        path = snapshot_download(
            text,
            revision=revision,
            cache_dir=os.fspath(cache_dir) if cache_dir is not None else None,
            token=token,  # None: huggingface_hub uses HF_TOKEN or the stored login
            local_files_only=is_offline,
            allow_patterns=_ALLOW_PATTERNS,
        )
    except hub_errors.GatedRepoError:
        raise WeightsError("model_gated", field="model", model=text) from None
    except hub_errors.RepositoryNotFoundError:
        raise WeightsError("model_not_found", field="model", model=text) from None
    except hub_errors.RevisionNotFoundError:
        raise WeightsError(
            "model_revision", field="model", model=repr(text), revision=repr(revision)
        ) from None
    except (hub_errors.LocalEntryNotFoundError, FileNotFoundError):
        why = (
            "offline mode is on (HF_HUB_OFFLINE)"
            if is_offline
            else "the Hugging Face Hub could not be reached"
        )
        raise WeightsError("model_not_cached", field="model", model=text, reason=why) from None
    except hub_errors.HFValidationError:
        raise WeightsError("model_id_bad", field="model", model=repr(text), example=DEFAULT_MODEL) from None
    except (OSError, hub_errors.HfHubHTTPError) as exc:  # network trouble, disk full, ...
        raise WeightsError(
            "model_fetch_failed", field="model", model=repr(text), detail=_scrub(str(exc), token)
        ) from None
    return Path(path)


# --------------------------------------------------------------------------- loading


def load_paligemma(
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    offline: bool | None = None,
    token: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load PaliGemmaForConditionalGeneration + PaliGemmaProcessor, in eval mode, on one device.

    attn_implementation None lets transformers choose (SDPA where the text backbone allows
    it: Gemma 1 yes, Gemma 2 uses eager because SDPA has no logit soft-capping).
    """
    import torch

    dev = device if isinstance(device, torch.device) else select_device(device)
    dt = select_dtype(dev, dtype)
    folder = resolve_model_folder(model, offline=offline, token=token, cache_dir=cache_dir, revision=revision)

    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor

    try:
        config = PaliGemmaConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise WeightsError(
            "model_config_bad", field="model", path=str(folder), detail=_scrub(str(exc), token)
        ) from None
    if getattr(config, "model_type", None) != "paligemma":
        raise WeightsError(
            "model_type_bad", field="model", path=str(folder), model_type=repr(config.model_type)
        )

    kwargs: dict[str, Any] = {"dtype": dt, "local_files_only": True, "trust_remote_code": False}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        processor = PaliGemmaProcessor.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
        net = PaliGemmaForConditionalGeneration.from_pretrained(folder, config=config, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise WeightsError(
            "model_load_failed", field="model", path=str(folder), detail=_scrub(str(exc), token)[:500]
        ) from None
    try:
        net.to(dev)  # type: ignore[arg-type]
    except RuntimeError as exc:  # typically CUDA out of memory
        raise WeightsError(
            "gpu_memory",
            field="device",
            when="moving the model",
            device=describe_device(dev, dt),
            detail=str(exc)[:300],
        ) from None
    net.eval()
    image_size = int(config.vision_config.image_size)  # type: ignore[union-attr]
    log.info("loaded %s from %s on %s", os.fspath(model), folder, describe_device(dev, dt))
    return LoadedModel(
        model=net,
        processor=processor,
        device=dev,
        dtype=dt,
        source=os.fspath(model),
        folder=folder,
        image_size=image_size,
    )
