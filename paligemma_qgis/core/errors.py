"""User-facing errors: each names the file and the problem, so front ends print them as is."""


class PaliGemmaQgisError(Exception):
    """Base of every error the CLI and the plugin show to the user without a traceback."""


class InputError(PaliGemmaQgisError):
    """Bad input file or argument (names the file and what is wrong with it)."""


class OutputExistsError(PaliGemmaQgisError):
    """An output exists and overwriting was not asked for."""


class WeightsError(PaliGemmaQgisError):
    """Model or codec weights missing, corrupt or with an unexpected checksum."""


class OutputError(PaliGemmaQgisError):
    """An output cannot be written (no permission, disk full, ...); names the output."""
