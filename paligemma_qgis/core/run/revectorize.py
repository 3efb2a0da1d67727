"""New polygons from a finished run, without the model: another minimum area, simplification,
output CRS or vote rule in seconds, not hours.

The run's GeoPackage holds what is needed: its ``run`` table the options, its ``scenes``
layer which scenes were mapped, and its ``chips`` layer every chip's model text. So
``revectorize`` is a run of ``segment_raster`` in which every chip's answer is known in
advance: the PaliGemma engine is replaced by a stand-in that only decodes texts
(``ChipTextDecoder``: the VAE on the CPU), and the scenes are read again for their validity
masks. For the water-index engine the index is recomputed (it costs about what reading does).
The result equals a fresh ``segment`` run with the new options.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..progress import Progress
from .driver import SegmentSummary, segment_raster
from .options import SegmentOptions

# What may change: everything else is the run's own (it decided the chips and the answers).
CHANGEABLE = (
    "min_area_m2",
    "simplify",
    "out_crs",
    "vote",
    "dissolve",
    "mask_tif",
    "overwrite",
    "workdir",
    "vae",
    "allow_custom_vae",
)


def _read_layer(path: Path, layer: str, columns: list[str] | None = None) -> Any:
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        return pyogrio.read_dataframe(path, layer=layer, columns=columns, read_geometry=False)
    except (DataSourceError, DataLayerError) as exc:
        raise InputError(f"{path}: not the output of a segment run (no {layer!r} layer: {exc})") from None


def run_options(path: str | Path) -> tuple[SegmentOptions, dict[str, str]]:
    """The options a run was made with (from its ``run`` table), and the table itself."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: run GeoPackage not found")
    table = _read_layer(path, "run")
    rows = dict(zip(table["key"], table["value"], strict=True))
    names = {f.name for f in dataclasses.fields(SegmentOptions)}
    values: dict[str, Any] = {}
    for key, text in rows.items():
        if not key.startswith("option.") or key[7:] not in names:
            continue
        try:
            values[key[7:]] = json.loads(text)
        except (TypeError, ValueError):
            values[key[7:]] = text
    for key in ("bands", "model", "vae", "preset", "out_crs", "aoi_crs", "engine", "workdir", "device"):
        if key in values and values[key] is not None and not isinstance(values[key], str):
            values[key] = str(values[key])
    if "raster" not in values or "output" not in values:
        raise InputError(f"{path}: its run table does not say which rasters were mapped")
    return SegmentOptions.from_dict(values), rows


class TextReplaySegmenter:
    """Stands in for PaliGemma: every chip's answer is known, only the codec is needed."""

    name = "paligemma"

    def __init__(self, decoder: Any, chip_size: int, described: dict[str, Any], source: Path):
        self.decoder, self.chip_size, self._described, self._source = (
            decoder,
            int(chip_size),
            described,
            source,
        )
        self.batch_size = 64

    def bands_needed(self, bands: Any) -> list[int]:
        return []

    def prepare(self, sample: Any) -> None:
        pass

    def generate_texts(self, batch: Any) -> list[str | None]:
        if batch.valid.reshape(len(batch), -1).any(axis=1).any():
            raise InputError(
                f"{self._source}: chips {list(batch.ids)[:5]} have no model text in the chips layer; "
                "revectorize needs the output of a finished run"
            )
        return [None] * len(batch)

    def describe(self) -> dict[str, Any]:
        return dict(self._described)


def revectorize(
    run: str | Path, output: str | Path, progress: Progress | None = None, **changes: Any
) -> SegmentSummary:
    """Write ``output`` from the run ``run`` with ``changes`` (min_area_m2, simplify, out_crs, vote ...)."""
    from ..inputs.scenes import resolve_inputs
    from ..model.text_decoder import ChipTextDecoder

    run = Path(run)
    bad = sorted(set(changes) - set(CHANGEABLE))
    if bad:
        raise InputError(f"revectorize cannot change {', '.join(bad)} (the chips were decided by the run)")
    old, table = run_options(run)
    # The run's own work folder and mask are not this run's (QGIS gives every run a scratch folder).
    changes = {
        "mask_tif": None,
        "overwrite": False,
        "workdir": None,
        **{k: v for k, v in changes.items() if v is not None},
    }
    if isinstance(old.aoi, str) and not Path(old.aoi).exists() and table.get("aoi_wkb"):
        import shapely

        changes.update(aoi=shapely.from_wkb(table["aoi_wkb"]), aoi_crs=table.get("aoi_wkb_crs"))
    options = dataclasses.replace(
        old, output=str(output), restart=False, executor="local", fail_fast=False, **changes
    )
    if Path(output).resolve() == run.resolve():
        raise InputError(f"{output}: write the new polygons to another file than the run {run.name}")
    options.validate()
    scenes_layer = _read_layer(run, "scenes", ["scene", "status"]) if _has_layer(run, "scenes") else None
    scenes = resolve_inputs(options.inputs, stac_bands=options.stac_bands, engine=options.engine)
    if scenes_layer is not None:
        done = set(scenes_layer.loc[scenes_layer["status"] == "done", "scene"])
        missing = done - {s.id for s in scenes}
        if missing:
            raise InputError(
                f"{run}: its scenes {', '.join(sorted(missing)[:3])} are not among its inputs any more"
            )
        scenes = [s for s in scenes if s.id in done]
    facts = {"revectorized_from": str(run)}
    if options.engine != "paligemma":
        return segment_raster(options, progress, scenes=scenes, facts=facts)
    chips = _read_layer(run, "chips")
    if "scene" not in chips.columns:  # a single-scene output from before region runs
        chips["scene"] = scenes[0].id if scenes else ""
    texts: dict[str, dict[int, str]] = {}
    for scene, cid, text in zip(chips["scene"], chips["chip_id"], chips["text"], strict=True):
        if isinstance(text, str):
            texts.setdefault(scene, {})[int(cid)] = text
    size = int(float(table.get("chip_size") or 0)) or int(max(chips["width"].max(), chips["height"].max()))
    decoder = ChipTextDecoder.from_options(options.vae, options.classes, options.allow_custom_vae)
    described = {k[7:]: v for k, v in table.items() if k.startswith("engine.")}
    stand_in = TextReplaySegmenter(decoder, size, described, run)
    return segment_raster(
        options, progress, stand_in, scenes=scenes, given_texts=lambda s: texts.get(s.id, {}), facts=facts
    )


def _has_layer(path: Path, name: str) -> bool:
    import pyogrio

    return name in {row[0] for row in pyogrio.list_layers(path)}
