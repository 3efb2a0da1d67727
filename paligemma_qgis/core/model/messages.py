"""Error codes raised in core/model, with their neutral words (see core.errors).

Templates hold facts as ``{params}``; options only as ``{option}`` (the error's field) or
``{opt_NAME}``, which each front end fills with its own name. Commands of this package
(``weights download``) are a front end's words: the command line adds them in its remedies
(cli/wording.py); Hugging Face's own tools (``hf auth login``, ``hf download``) and
environment variables are the same for every front end and stay here.
"""

from __future__ import annotations

from ..errors import Message

_HF_ACCESS = (
    "open https://huggingface.co/{model}, log in and accept the licence (Gemma terms of use); then run "
    "`hf auth login` (or set the HF_TOKEN environment variable) on this machine and try again. Without "
    "internet, download the model folder elsewhere (Hugging Face's `hf download {model}`, into a folder), "
    "copy it here and set {option} to that folder"
)

MESSAGES: dict[str, Message] = {
    "class_name_bad": Message("class names may not contain '<', '>', ';' or newlines: {names}"),
    # the device and the number type (hf_models)
    "device_unknown": Message("unknown {option} {value}", "use auto, cpu, cuda, cuda:N or mps"),
    "no_cuda": Message(
        "{option} {value} asked for, but this PyTorch ({torch}) sees no CUDA GPU",
        "install a CUDA build of torch, or set {option} to cpu",
    ),
    "cuda_index": Message("{option} {value}: only {count} CUDA device(s) present"),
    "no_mps": Message(
        "{option} {value} asked for, but the Apple MPS backend is not available", "set {option} to cpu"
    ),
    "dtype_unknown": Message("unknown {option} {value}", "use auto, bfloat16, float16 or float32"),
    "gpu_memory": Message(
        "out of GPU memory {when} on {device}: {detail}",
        "free the GPU (other programs), use a smaller model, or set {option} to cpu",
    ),
    # the model: a folder or a Hugging Face id (hf_models)
    "model_missing": Message("no model given", "give a Hugging Face id such as {example}, or a model folder"),
    "model_folder_missing": Message(
        "model folder {path} does not exist",
        "give a folder holding config.json, *.safetensors and the tokenizer files (e.g. downloaded with "
        "Hugging Face's `hf download {example}`), or a Hugging Face model id",
    ),
    "model_folder_bad": Message(
        "{path} is not a PaliGemma model folder: config.json is missing",
        "a model folder holds config.json, *.safetensors, tokenizer.json and the processor/preprocessor config",
    ),
    "model_gated": Message("{model} is a gated model and this account has no access yet", _HF_ACCESS),
    "model_not_found": Message(
        "model {model} was not found on the Hugging Face Hub (a typo, or a private/gated repo and this "
        "machine is not logged in)",
        _HF_ACCESS,
    ),
    "model_revision": Message("model {model} has no revision {revision}"),
    "model_not_cached": Message(
        "model {model} is not in the local Hugging Face cache and {reason}",
        "download it once with internet (`hf download {model}`; gated: accept the licence on "
        "https://huggingface.co/{model} and `hf auth login` or HF_TOKEN first), or set {option} to a "
        "local model folder",
    ),
    "model_id_bad": Message(
        "{model} is neither an existing folder nor a valid Hugging Face model id",
        "give an id like {example}, or a model folder",
    ),
    "model_fetch_failed": Message("could not fetch model {model}: {detail}"),
    "model_config_bad": Message("{path}: config.json is not a PaliGemma config ({detail})"),
    "model_type_bad": Message("{path}: model_type is {model_type}, not 'paligemma'"),
    "model_load_failed": Message("could not load the PaliGemma model from {path}: {detail}"),
    # the mask codec's weights, vae-oid.npz (weights)
    "vae_missing": Message(
        "VAE weights not found: {path} ({source})",
        "download {file} once from {url} (or {url2}) and put it at {cache}, set {env}=/path/to/{file}, "
        "or set {option} to the file",
    ),
    "vae_not_file": Message("{path}: the VAE weights path is not a file", "set {option} to the file"),
    "vae_checksum": Message(
        "{path}: sha256 {digest} is not the checksum of Google's {file} ({expected})",
        "the file may be a partial download or a different VAE; to use it anyway, set {opt_allow_custom_vae}",
    ),
    "vae_arrays_missing": Message("{path}: not a vae-oid.npz codec file, missing array {names}"),
    "vae_array_shape": Message("{path}: array {name} has shape {shape}, expected {expected}"),
    "vae_array_dtype": Message("{path}: array {name} has dtype {dtype}, expected float32"),
    "vae_array_nonfinite": Message("{path}: array {name} holds NaN or infinite values"),
    "vae_exists": Message("{path} {state}", "set {opt_force} to replace it"),
    "download_truncated": Message("{url}: connection closed after {received} of {expected} bytes"),
    "download_checksum": Message("{url}: downloaded file has sha256 {digest}, expected {expected}"),
    "download_failed": Message(
        "could not download {file} ({failures})",
        "if this machine is offline, download {url} on another machine and copy it to {path}, or set {env}",
    ),
    # the water index's bands (water_index); band_out_of_range is raised by core.inputs too
    "band_unknown": Message(
        "the raster has no {role} band for {index}",
        "set {option} to its band number, choose the sensor with {opt_preset}, or set {opt_engine} to paligemma",
    ),
    "same_band": Message("green and {role} are the same band ({band})", "choose another band for {option}"),
}
