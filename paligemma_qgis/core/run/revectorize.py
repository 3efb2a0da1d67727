"""New polygons from a finished run, without the model: another minimum area, simplification,
output CRS or vote rule in seconds, not hours.

The run's GeoPackage holds what is needed: its ``run`` table the spec, its ``scenes`` layer
which scenes were mapped, and its ``chips`` layer every chip's model text. So
``revectorize`` is a run of ``segment_raster`` in which every chip's answer is known in
advance: the PaliGemma engine is replaced by a ``TextReplay`` that only decodes texts (the
VAE on the CPU), and the scenes are read again for their validity masks. For the
water-index engine the index is recomputed (it costs about what reading does). The result
equals a fresh ``segment`` run with the new options.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..progress import Progress
from ..redact import redact
from ..serial import flatten, leaves
from ..specs import SegmentSpec, segment_spec
from .summary import SegmentSummary

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
REPLAY_BATCH = 64


def _read_layer(path: Path, layer: str, columns: list[str] | None = None) -> Any:
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        return pyogrio.read_dataframe(path, layer=layer, columns=columns, read_geometry=False)
    except (DataSourceError, DataLayerError) as exc:
        raise InputError("not_a_run", path=str(path), layer=layer, detail=str(exc)) from None


def run_spec(path: str | Path) -> tuple[SegmentSpec, dict[str, str]]:
    """The spec a run was made with (from its ``run`` table's option rows), and the table itself."""
    path = Path(path)
    if not path.is_file():
        raise InputError("run_not_found", path=str(path))
    table = _read_layer(path, "run")
    rows = dict(zip(table["key"], table["value"], strict=True))
    names = set(leaves(SegmentSpec))
    values: dict[str, Any] = {}
    for key, text in rows.items():
        if not key.startswith("option.") or key[7:] not in names:
            continue
        try:
            values[key[7:]] = json.loads(text)
        except (TypeError, ValueError):
            values[key[7:]] = text
    if "raster" not in values or "output" not in values:
        raise InputError("run_without_inputs", path=str(path))
    spec = segment_spec(values)
    if spec.search.active:  # its items lived beside the output until the run ended
        raise InputError("revectorize_search_run", path=str(path), api=redact(spec.search.stac_api or ""))
    return spec, rows


def revectorize(
    run: str | Path, output: str | Path, progress: Progress | None = None, **changes: Any
) -> SegmentSummary:
    """Write ``output`` from the run ``run`` with ``changes`` (min_area_m2, simplify, out_crs, vote ...)."""
    from ..model.segmenter import EngineInfo
    from ..model.text_decoder import ChipTextDecoder
    from .driver import input_scenes, segment_raster
    from .stages import TextReplay, replay_info

    run = Path(run)
    bad = sorted(set(changes) - set(CHANGEABLE))
    if bad:
        raise InputError("revectorize_cannot_change", names=", ".join(bad))
    old, table = run_spec(run)
    # The run's own work folder and mask are not this run's (QGIS gives every run a scratch folder).
    flat = {
        **flatten(old),
        "mask_tif": None,
        "overwrite": False,
        "workdir": None,
        **{k: v for k, v in changes.items() if v is not None},
        "output": str(output),
        "restart": False,
        "executor": "local",
        "fail_fast": False,
    }
    if isinstance(old.grid.aoi, str) and not os.path.exists(old.grid.aoi) and table.get("aoi_wkb"):
        import shapely  # the AOI file is gone (QGIS passed a temporary copy): its geometry, as WKT

        aoi = shapely.from_wkb(table["aoi_wkb"])
        flat.update(aoi=shapely.to_wkt(aoi, rounding_precision=-1), aoi_crs=table.get("aoi_wkb_crs"))
    spec = segment_spec(flat)
    if Path(output).resolve() == run.resolve():
        raise InputError("revectorize_onto_run", field="output", path=str(output), run=run.name)
    scenes_layer = (
        _read_layer(run, "scenes", ["scene", "status", "error"]) if _has_layer(run, "scenes") else None
    )
    scenes = input_scenes(spec)
    failed: dict[str, str] = {}
    if scenes_layer is not None:
        status = dict(zip(scenes_layer["scene"], scenes_layer["status"], strict=True))
        done = {sid for sid, s in status.items() if s == "done"}
        missing = done - {s.id for s in scenes}
        if missing:
            raise InputError("run_scenes_gone", path=str(run), scenes=", ".join(sorted(missing)[:3]))
        errors = dict(zip(scenes_layer["scene"], scenes_layer["error"], strict=True))
        failed = {
            sid: str(errors.get(sid) or "failed in the run") for sid, s in status.items() if s != "done"
        }
        scenes = [s for s in scenes if s.id in status]
    facts = {"revectorized_from": str(run)}
    if spec.engine.name != "paligemma":
        return segment_raster(spec, progress, scenes=scenes, facts=facts, failed=failed)
    chips = _read_layer(run, "chips")
    if "scene" not in chips.columns:  # a single-scene output from before region runs
        chips["scene"] = scenes[0].id if scenes else ""
    texts: dict[str, dict[int, str]] = {}
    for scene, cid, text in zip(chips["scene"], chips["chip_id"], chips["text"], strict=True):
        if isinstance(text, str):
            texts.setdefault(scene, {})[int(cid)] = text
    size = int(float(table.get("chip_size") or 0)) or int(max(chips["width"].max(), chips["height"].max()))
    decoder = ChipTextDecoder.from_spec(spec.engine.paligemma)
    described = {k[7:]: v for k, v in table.items() if k.startswith("engine.")}
    info = replay_info(EngineInfo(name="paligemma", chip_size=size, batch_size=REPLAY_BATCH))
    stand_in = TextReplay(info, decoder, described, str(run))
    return segment_raster(
        spec,
        progress,
        lambda roles: stand_in,
        scenes=scenes,
        given_texts=lambda s: texts.get(s.id, {}),
        facts=facts,
        failed=failed,
    )


def _has_layer(path: Path, name: str) -> bool:
    import pyogrio

    return name in {row[0] for row in pyogrio.list_layers(path)}
