"""One redaction for every text the tool keeps, shows or sends (core/redact.py)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from paligemma_qgis.core.redact import is_secret_param, redact, redact_tree, scene_stem

ENCODED = quote("https://u:pw@host/b.tif?X-Goog-Signature=GSIG&token=TOK&x=1", safe="")

# (text, what redact must return)
CASES = [
    # user and password in URLs, plain and inside GDAL paths
    ("http://user:PASS@host/a.tif", "http://REDACTED@host/a.tif"),
    ("/vsicurl/http://user:PASS@127.0.0.1:8000/a.tif", "/vsicurl/http://REDACTED@127.0.0.1:8000/a.tif"),
    ("/vsicurl/https://us%40er:p@ss@host/a.tif", "/vsicurl/https://REDACTED@host/a.tif"),
    ("https://ghp_TOKEN@github.com/x", "https://REDACTED@github.com/x"),
    ("ftp://anonymous@host/x", "ftp://REDACTED@host/x"),
    ("s3://bucket/key.tif", "s3://bucket/key.tif"),
    ("/vsis3/bucket/a@b.tif", "/vsis3/bucket/a@b.tif"),  # an @ in a path is not a user
    ("mail me at someone@example.org", "mail me at someone@example.org"),
    # signing parameters, any case
    (
        "/vsicurl/https://b.s3.amazonaws.com/k.tif?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIA%2F2020%2Fs3"
        "&x-amz-signature=SIG&X-Amz-Security-Token=STS&versionId=3",
        "/vsicurl/https://b.s3.amazonaws.com/k.tif?X-Amz-Algorithm=REDACTED&X-Amz-Credential=REDACTED"
        "&x-amz-signature=REDACTED&X-Amz-Security-Token=REDACTED&versionId=3",
    ),
    (
        "https://storage.googleapis.com/b/o.tif?X-Goog-Credential=C&X-Goog-Signature=S&alt=media",
        "https://storage.googleapis.com/b/o.tif?X-Goog-Credential=REDACTED&X-Goog-Signature=REDACTED&alt=media",
    ),
    (
        "https://acc.blob.core.windows.net/c/x.tif?sv=2021-08-06&ss=b&srt=o&sp=r&se=2030-01-01&st=2020-01-01"
        "&spr=https&skoid=OID&sig=AB%2Bcd%3D",
        "https://acc.blob.core.windows.net/c/x.tif?sv=REDACTED&ss=REDACTED&srt=REDACTED&sp=REDACTED"
        "&se=REDACTED&st=REDACTED&spr=REDACTED&skoid=REDACTED&sig=REDACTED",
    ),
    (
        "https://h/x.tif?Token=T&KEY=K&Signature=S&access_token=A&code=C&api_key=P&page=2",
        "https://h/x.tif?Token=REDACTED&KEY=REDACTED&Signature=REDACTED&access_token=REDACTED"
        "&code=REDACTED&api_key=REDACTED&page=2",
    ),
    (
        "https://h/x.tif?Policy=P&Key-Pair-Id=K#frag",
        "https://h/x.tif?Policy=REDACTED&Key-Pair-Id=REDACTED#frag",
    ),
    # a URL in the middle of a message
    (
        "error: HTTP 403 for https://h/x.tif?sig=SECRET&se=1 (forbidden). Retry.",
        "error: HTTP 403 for https://h/x.tif?sig=REDACTED&se=REDACTED (forbidden). Retry.",
    ),
    (
        "'/vsicurl/http://u:PW@h/x.tif?token=T' not recognized as a supported file format.",
        "'/vsicurl/http://REDACTED@h/x.tif?token=REDACTED' not recognized as a supported file format.",
    ),
    # /vsicurl?url=<percent-encoded URL>&other options
    (
        f"/vsicurl?use_head=no&url={ENCODED}&cookie=C&header.Authorization=Bearer%20X",
        "/vsicurl?use_head=no&url=https%3A%2F%2FREDACTED%40host%2Fb.tif%3FX-Goog-Signature%3DREDACTED"
        "%26token%3DREDACTED%26x%3D1&cookie=REDACTED&header.Authorization=REDACTED",
    ),
    # one encoding deeper (a /vsicurl? URL inside a URL)
    (
        "https://proxy/get?src="
        + quote("/vsicurl?url=" + quote("http://u:p@h/x.tif?sig=S", safe=""), safe=""),
        "https://proxy/get?src=%2Fvsicurl%3Furl%3Dhttp%253A%252F%252FREDACTED%2540h%252Fx.tif%253Fsig%253DREDACTED",
    ),
    # XML (a STAC scene's VRT document)
    (
        "<SourceFilename>/vsicurl/https://h/x.tif?st=1&amp;sig=SECRET&amp;a=b</SourceFilename>",
        "<SourceFilename>/vsicurl/https://h/x.tif?st=REDACTED&amp;sig=REDACTED&amp;a=b</SourceFilename>",
    ),
    # JSON dumps keep their quotes
    ('{"raster": "https://h/x.tif?sig=S"}', '{"raster": "https://h/x.tif?sig=REDACTED"}'),
    # headers and environment-style assignments
    ("Authorization: Bearer abc.def", "Authorization: REDACTED"),
    (
        "AWS_SECRET_ACCESS_KEY=xyz GDAL_HTTP_USERPWD=a:b TOKEN=t",
        "AWS_SECRET_ACCESS_KEY=REDACTED GDAL_HTTP_USERPWD=REDACTED TOKEN=REDACTED",
    ),  # fmt: skip
    # nothing to redact
    ("/data/scenes/lakes_20200831.tif", "/data/scenes/lakes_20200831.tif"),
    ("https://h/x.tif?page=2&monkey=1&keyboard=2", "https://h/x.tif?page=2&monkey=1&keyboard=2"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


@pytest.mark.parametrize(
    ("location", "stem"),
    [
        ("/vsicurl/https://u:p@host/a/scene_20200831.tif?X-Amz-Credential=AKIA/2020/x/aws4_request", "scene_20200831"),
        ("/vsicurl/https://host/a/b.c.tif?sig=a/b/c", "b.c"),
        (f"/vsicurl?use_head=no&url={ENCODED}", "b"),
        ("/vsis3/bucket/dir/key.tif", "key"),
        ("/vsizip//data/a.zip/inner.tif", "inner"),
        ("https://u:SECRET@host", "host"),
        ("https://host/", "host"),
        ("/vsicurl?use_head=no", ""),
    ],
)  # fmt: skip
def test_scene_stem_holds_no_secret_and_no_slash(location: str, stem: str) -> None:
    assert scene_stem(location) == stem
    assert "/" not in stem and "SECRET" not in stem and "AKIA" not in stem


def test_secret_params_and_trees() -> None:
    assert all(is_secret_param(n) for n in ("X-Amz-Date", "x-goog-expires", "SIG", "refresh_token", "my_key"))
    assert not any(is_secret_param(n) for n in ("page", "monkey", "use_head", "url", "versionId"))
    tree = {"inputs": ["http://u:p@h/x.tif", 3], "by_scene": {"https://h/y.tif?sig=S": 1}, "n": None}
    assert redact_tree(tree) == {
        "inputs": ["http://REDACTED@h/x.tif", 3],
        "by_scene": {"https://h/y.tif?sig=REDACTED": 1},
        "n": None,
    }


def test_log_records_and_warnings_are_redacted(capsys) -> None:
    """The worker's stderr (shown under Details…, kept in QGIS's log) and the CLI's warning lines."""
    import logging

    from paligemma_qgis.cli.library_warnings import redacted_logging, warning_line

    url = "/vsicurl/https://user:hunter2@example.org/a.tif?X-Amz-Signature=abcdef123"
    assert "hunter2" not in warning_line(f"cannot read {url}") and "abcdef123" not in warning_line(url)
    handler = redacted_logging()
    try:
        try:
            raise OSError(f"failed to open {url}")
        except OSError:
            logging.getLogger("paligemma_qgis.test").exception("scene %s failed", url)
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert "scene" in err and "Traceback" in err
    assert "hunter2" not in err and "abcdef123" not in err
