"""User-facing errors: each names the file and the problem, so front ends print them as is.

The message speaks the command line's language (``--nir``). ``field`` says which option the
problem is about, by its SegmentOptions/ExportOptions name (``"nir"``, ``"vae"``, ``"model"``,
``"output"`` ...), and ``code`` what kind of problem it is (``"band_unknown"``,
``"vae_missing"`` ...): the worker sends both, so the QGIS dialog can say it in its own words
("choose the NIR band", "VAE file: Download…") instead of printing command-line flags.
"""

from __future__ import annotations


class PaliGemmaQgisError(Exception):
    """Base of every error the CLI and the plugin show to the user without a traceback."""

    field: str | None = None  # default of the class; an instance may name another
    code: str | None = None

    def __init__(self, message: str = "", *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        if field is not None:
            self.field = field
        if code is not None:
            self.code = code


class InputError(PaliGemmaQgisError):
    """Bad input file or argument (names the file and what is wrong with it)."""


class OutputExistsError(PaliGemmaQgisError):
    """An output exists and overwriting was not asked for."""

    code = "output_exists"


class WeightsError(PaliGemmaQgisError):
    """Model or codec weights missing, corrupt or with an unexpected checksum."""


class OutputError(PaliGemmaQgisError):
    """An output cannot be written (no permission, disk full, ...); names the output."""
