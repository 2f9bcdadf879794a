"""The toolkit's exceptions: each names what was wrong, where, and what was expected."""


class ToolkitError(Exception):
    """Base class; the command-line entry point prints these as one line, without a traceback."""


class ConfigError(ToolkitError, ValueError):
    """A configuration value or combination that cannot work (names the key)."""


class DataError(ToolkitError):
    """A dataset that is missing or malformed (names the file or directory and the fix)."""


class TrainingError(ToolkitError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); what was written so far is kept.

    Attributes:
        history (list): the per-epoch records completed before the failure.
    """

    def __init__(self, message: str, history: list | None = None) -> None:
        super().__init__(message)
        self.history = list(history or [])
