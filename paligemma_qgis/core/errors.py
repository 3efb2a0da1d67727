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

    def event_fields(self) -> dict:
        """What the worker's error event carries beyond message, kind, field and code (JSON values)."""
        return {}


def field_and_code(exc: BaseException) -> tuple[str | None, str | None]:
    """The option at fault and the kind of problem of an error (None, None for a foreign one).

    A core error re-raised with the file name in front (``raise InputError(f"{path}: {exc}")
    from None``) keeps the error it replaced as ``__context__``: its field and code still count.
    """
    if not isinstance(exc, PaliGemmaQgisError):
        return None, None
    field, code = exc.field, exc.code
    inner = exc.__context__
    for _ in range(3):
        if field is not None or not isinstance(inner, PaliGemmaQgisError):
            break
        field, code = inner.field, code or inner.code
        inner = inner.__context__
    return field, code


class InputError(PaliGemmaQgisError):
    """Bad input file or argument (names the file and what is wrong with it)."""


class OutputExistsError(PaliGemmaQgisError):
    """An output exists and overwriting was not asked for."""

    code = "output_exists"


class WeightsError(PaliGemmaQgisError):
    """Model or codec weights missing, corrupt or with an unexpected checksum."""


class OutputError(PaliGemmaQgisError):
    """An output cannot be written (no permission, disk full, ...); names the output."""


class AllScenesFailedError(PaliGemmaQgisError):
    """Every scene of a region run failed, so nothing was written.

    The message leads with the first scene's error (it names the file and what to do); the
    event carries every scene's error, and the first one's field and code, so a front end
    can say it in its own words.
    """

    code = "all_scenes_failed"
    MAX_LISTED = 20  # scenes whose errors travel in the event (a region may have thousands)

    def __init__(self, failures: list[tuple[str, str, BaseException]]) -> None:
        """``failures``: (scene id, error text, the exception) of every scene, in run order."""
        _, first_text, first = failures[0]
        super().__init__(f"{first_text} (all {len(failures)} scenes failed; nothing was written)")
        self.failures = failures
        self.first = first

    def event_fields(self) -> dict:
        first = self.first
        field, code = field_and_code(first)
        return {
            "scenes": len(self.failures),
            "first_message": self.failures[0][1],
            "first_field": field,
            "first_code": code,
            "first_kind": type(first).__name__,
            "failed_scenes": {sid: text for sid, text, _ in self.failures[: self.MAX_LISTED]},
        }
