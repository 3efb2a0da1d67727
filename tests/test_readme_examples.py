"""The README's qgis_process examples, run as written on the sample tile (with the plugin from its zip)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from qgis.core import QgsVectorLayer

# End to end (subprocesses, QGIS tasks, Ray, servers): `make test` runs it, `make test-fast` does not.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _readme_block(heading: str) -> list[str]:
    """The lines of the first ```bash block after ``heading`` in README.md."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block is not None, f"no bash block after {heading!r}"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.shared_data
def test_qgis_process_examples_work_as_written(qgis_process, shared_data, tmp_path):
    exe, env = qgis_process
    lines = _readme_block("### Processing and qgis_process")
    outputs = []
    for line in lines:
        args = shlex.split(line)
        if args[0] == "cp":  # the sample tile, from wherever ../shared/data is here
            source = Path(args[1].replace("../shared/data", str(shared_data)))
            shutil.copy(source, tmp_path / args[2])
            continue
        assert args[0] == "qgis_process.bin", line
        run = subprocess.run(
            [exe, *args[1:]], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
        )
        assert run.returncode == 0, f"{line}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
        outputs += [a.split("=", 1)[1] for a in args if a.startswith("OUTPUT=")]
    assert len(outputs) == 2
    counts = []
    for name in outputs:
        layer = QgsVectorLayer(f"{tmp_path / name}|layername=water", "water", "ogr")
        assert layer.isValid(), name
        counts.append(layer.featureCount())
        del layer
    assert counts[0] > 10 and counts[0] == counts[1]  # the preset and NIR=4 say the same


@pytest.mark.shared_data
def test_qgis_process_region_example_works_as_written(qgis_process, shared_data, tmp_path):
    """The region example: the sample tile and a folder ``tiles`` of two more (its quarters)."""
    exe, env = qgis_process
    import rasterio
    from rasterio.windows import Window

    naip = shared_data / "rasters" / "opengeos_naip_m_4709963_se_14_1_20200831.tif"
    shutil.copy(naip, tmp_path / "naip.tif")
    (tmp_path / "tiles").mkdir()
    with rasterio.open(naip) as src:
        for i, col in enumerate((0, src.width // 2)):
            window = Window(col, 0, src.width // 2, src.height // 2)
            profile = {**src.profile, "width": src.width // 2, "height": src.height // 2,
                       "transform": src.window_transform(window)}  # fmt: skip
            with rasterio.open(tmp_path / "tiles" / f"quarter_{i}.tif", "w", **profile) as dst:
                dst.write(src.read(window=window))
    subprocess.run([exe, "plugins", "enable", "paligemma_qgis"], capture_output=True, env=env, check=True)
    (line,) = _readme_block("sends the work to Ray. With more rasters in a folder")
    args = shlex.split(line)
    assert args[:3] == ["qgis_process.bin", "run", "paligemma:segment_water_region"], line
    run = subprocess.run([exe, *args[1:]], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, f"{line}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    scenes = QgsVectorLayer(f"{tmp_path / 'region.gpkg'}|layername=scenes", "scenes", "ogr")
    dissolved = QgsVectorLayer(f"{tmp_path / 'region.gpkg'}|layername=water_dissolved", "d", "ogr")
    assert scenes.featureCount() == 3 and {f["status"] for f in scenes.getFeatures()} == {"done"}
    assert dissolved.isValid() and dissolved.featureCount() > 10
    del scenes, dissolved
