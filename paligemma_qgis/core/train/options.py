"""What ``export``, ``export-pairs``, ``finetune`` and ``evaluate`` need, as frozen values that check themselves.

Every front end builds them through ``core.serial``: the command line from its argument
names (``unflatten``; each argument's ``dest`` is a field name), the QGIS worker from the
job's JSON object (``from_data``); ``export.json`` and ``finetune.json`` record
``to_data``'s form. A bad value fails where the options are made, before a file is
opened; what needs a file (a folder that is not there, labels that do not overlap the
raster) is checked when the command starts.

Standard library only: the QGIS plugin may build these too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .. import rules
from ..errors import InputError

PREFIX = "segment water"  # the prompt of every exported example
LABEL = "water"  # the class name of every exported object
WATER_INDEX = rules.WATER_INDEX_LABELS  # ExportOptions.labels: label chips with the water index


def _require(ok: bool, name: str, value: float, bound: str) -> None:
    if not ok:
        raise InputError("option_range", field=name, value=f"{value:g}", bound=bound)


def _check_split(valid_fraction: float, empty_policy: str, empty_cap: float) -> None:
    """The train/valid split and the empty-chip policy, shared by both exports."""
    _require(0 <= valid_fraction < 1, "valid_fraction", valid_fraction, "at least 0 and below 1")
    if empty_policy not in rules.EMPTY_POLICIES:
        raise InputError(
            "option_choice",
            field="empty_policy",
            value=repr(empty_policy),
            choices=", ".join(rules.EMPTY_POLICIES),
        )


def _paths_as_text(options: object, names: tuple[str, ...]) -> None:
    """Path objects from Python callers as the text the codec and the JSON files carry."""
    for name in names:
        value = getattr(options, name)
        if value is not None and not isinstance(value, str):
            object.__setattr__(options, name, os.fspath(value))


@dataclass(frozen=True)
class ExportOptions:
    """``export``: a georeferenced raster + known water -> chips, train/valid JSONL and chips.gpkg.

    labels: a vector file of water polygons (any CRS), a mask raster (any grid; water where
    value > ``mask_threshold``, nodata = unlabelled) or ``"water-index"``.
    block_size: chips per side of a spatial block; blocks, not chips, go to train or valid.
    empty_policy: what to do with chips without water: "keep" all, "drop" all, or "cap"
    them at ``empty_cap`` of each split's chips (seeded choice).
    max_nodata_fraction: chips with more nodata than this are not written.
    strict_labels: refuse invalid label polygons (default: repair with make_valid, counted).
    on_read_error: "fail" on an unreadable raster block, or "skip" it as nodata (counted).
    """

    raster: str = ""
    out_dir: str = ""
    labels: str = ""
    label_layer: str | None = None
    label_where: str | None = None
    bands: tuple[int, ...] | None = None  # RGB rendering bands of the chips (1-based); one band: grey
    preset: rules.PresetName | None = None
    resolution: float | None = None
    green: int | None = None
    nir: int | None = None
    swir: int | None = None
    size: int = rules.CHIP_SIZE
    overlap: int = rules.EXPORT_OVERLAP
    min_object_pixels: int = rules.EXPORT_MIN_OBJECT_PIXELS
    max_objects: int = 0  # 0: every object; each costs about 24 tokens of the training sequence
    mask_threshold: float = 0.0
    vae: str | None = None
    allow_custom_vae: bool = False
    valid_fraction: float = rules.EXPORT_VALID_FRACTION
    block_size: int = rules.EXPORT_BLOCK_SIZE
    seed: int = 0
    empty_policy: rules.EmptyPolicy = rules.EXPORT_EMPTY_POLICY
    empty_cap: float = rules.EMPTY_CAP
    max_nodata_fraction: float = rules.EXPORT_MAX_NODATA_FRACTION
    prefix: str = PREFIX
    label: str = LABEL
    overwrite: bool = False
    strict_labels: bool = False
    on_read_error: rules.ReadErrorMode = "fail"

    def __post_init__(self) -> None:
        _paths_as_text(self, ("raster", "out_dir", "labels", "vae"))
        if not self.raster:
            raise InputError("input_missing", field="raster")
        if not self.out_dir:
            raise InputError("export_out_dir_missing", field="out_dir")
        if not self.labels:
            raise InputError("export_labels_missing", field="labels")
        if isinstance(self.bands, list):  # a JSON list from Python callers
            object.__setattr__(self, "bands", tuple(self.bands))
        if self.bands is not None and len(self.bands) not in (1, 3):
            raise InputError("bands_count", field="bands", value=",".join(map(str, self.bands)))
        for name in ("green", "nir", "swir"):
            value = getattr(self, name)
            if value is not None:
                _require(value >= 1, name, value, "at least 1")
        _require(self.size >= 1, "size", self.size, "at least 1")
        _require(0 <= self.overlap < self.size, "overlap", self.overlap, f"at least 0 and below {self.size}")
        _check_split(self.valid_fraction, self.empty_policy, self.empty_cap)
        _require(self.block_size >= 1, "block_size", self.block_size, "at least 1 chip")


@dataclass(frozen=True)
class PairsOptions:
    """``export-pairs``: image/mask folders (no georeference) -> chips + JSONL, split image by image."""

    images: str = ""
    masks: str = ""
    out_dir: str = ""
    names: str | None = None  # a text file listing the images to use (default: all)
    mask_threshold: int = rules.PAIRS_MASK_THRESHOLD
    min_object_pixels: int = rules.PAIRS_MIN_OBJECT_PIXELS
    max_objects: int = 0
    vae: str | None = None
    allow_custom_vae: bool = False
    valid_fraction: float = rules.PAIRS_VALID_FRACTION
    seed: int = 0
    empty_policy: rules.EmptyPolicy = rules.PAIRS_EMPTY_POLICY
    empty_cap: float = rules.EMPTY_CAP
    size: int = rules.CHIP_SIZE
    prefix: str = PREFIX
    label: str = LABEL
    overwrite: bool = False
    allow_large_images: bool = False  # over PIL's decompression-bomb limit (89 megapixels)

    def __post_init__(self) -> None:
        _paths_as_text(self, ("images", "masks", "out_dir", "names", "vae"))
        for name in ("images", "masks"):
            if not getattr(self, name):
                raise InputError("pairs_folder_missing", field=name)
        if not self.out_dir:
            raise InputError("export_out_dir_missing", field="out_dir")
        _require(self.size >= 1, "size", self.size, "at least 1")
        _check_split(self.valid_fraction, self.empty_policy, self.empty_cap)


@dataclass(frozen=True)
class FinetuneOptions:
    """``finetune``: train PaliGemma on an export folder. ``max_steps`` counts optimizer steps."""

    data_dir: str = ""
    out_dir: str = ""
    model: str = ""  # the base model: a Hugging Face id or a local folder
    epochs: int = 1
    lr: float | None = None  # default: 2e-5 full fine-tuning, 2e-4 LoRA
    batch_size: int = 2
    grad_accum: int = 8
    lora: bool = False
    lora_rank: int = 16
    lora_alpha: int | None = None  # None: twice the rank
    unfreeze_vision: bool = False
    max_steps: int | None = None
    device: str | None = None  # auto, cpu, cuda, cuda:N or mps
    dtype: str | None = None
    weight_decay: float = 0.0
    seed: int = 0
    offline: bool | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        _paths_as_text(self, ("data_dir", "out_dir", "model"))
        for name in ("data_dir", "out_dir", "model"):
            if not getattr(self, name):
                raise InputError("finetune_option_missing", field=name)
        for name in ("epochs", "batch_size", "grad_accum", "lora_rank"):
            value = getattr(self, name)
            _require(value >= 1, name, value, "at least 1")
        if self.lora_alpha is None:
            object.__setattr__(self, "lora_alpha", 2 * self.lora_rank)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (2e-4 if self.lora else 2e-5)


@dataclass(frozen=True)
class EvaluateOptions:
    """``evaluate``: predicted water (PRED) scored against known water (TRUTH).

    PRED: a ``.jsonl`` of model outputs (the pairs case), else segment's GeoPackage, a vector
    file or a mask raster (the georeferenced case, on the grid of ``reference_raster``, else
    of the truth mask). ``mask_threshold``: truth masks are water above it (None: 150 for
    JPEG masks of pairs, 0 for mask rasters).
    """

    pred: str = ""
    truth: str = ""
    reference_raster: str | None = None  # the grid (and valid pixels) for a vector truth
    images: str | None = None  # pairs with a JSONL truth: the images (for their sizes)
    vae: str | None = None
    allow_custom_vae: bool = False
    pred_layer: str | None = "water"
    truth_layer: str | None = None
    truth_where: str | None = None
    mask_threshold: float | None = None
    truth_nodata: float | None = None  # a truth mask value meaning "no label" (Sen1Floods11: -1)
    allow_large_images: bool = False
    block: int = 2048  # pixels per side of a scored block (memory, not the answer)

    def __post_init__(self) -> None:
        _paths_as_text(self, ("pred", "truth", "reference_raster", "images", "vae"))
        if not self.pred:
            raise InputError("evaluate_option_missing", field="pred", what="prediction")
        if not self.truth:
            raise InputError("evaluate_option_missing", field="truth", what="truth")
        _require(self.block >= 1, "block", self.block, "at least 1")

    @property
    def is_pairs(self) -> bool:
        """Model outputs (JSONL) against masks or truth suffixes, not maps on a grid."""
        return Path(self.pred).suffix.lower() == ".jsonl"
