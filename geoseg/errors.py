"""Errors caused by the user's input (data, configs, checkpoints), as opposed to bugs.

The stage scripts print these as one clear line instead of a traceback.
"""


class GeoSegError(Exception):
    """Base class: bad input that the user can fix; the message says what and where."""


class DataError(GeoSegError, ValueError):
    """A data file or folder is missing, unreadable or not in the expected format."""


class ConfigError(GeoSegError, ValueError):
    """A config module is missing a required name or holds a wrong value."""


class CheckpointError(GeoSegError, ValueError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""


class BandMismatchError(ConfigError, CheckpointError):
    """A network and what feeds or joins it (a dataset, a teacher, the checkpoint it resumes, an
    ensemble member) read different bands; a config or a checkpoint error, whichever was given."""


class WriteError(GeoSegError, OSError):
    """A file could not be written (a full disk, a quota, a read-only folder, no permission); the
    message names the file, the system's reason and the free space there."""


class TrainingError(GeoSegError, RuntimeError):
    """Training reached a state it cannot continue from (a non-finite loss or weights)."""


class PredictionError(GeoSegError, RuntimeError):
    """The models' merged output holds NaN or inf, so no map can be made of it.

    ``images``: the indices, within the batch predicted, of the images whose output is affected.
    """

    def __init__(self, message: str, images: tuple[int, ...] = ()):
        super().__init__(message)
        self.images = tuple(images)


def preview(names, limit: int = 10) -> str:
    """The first ``limit`` names, comma-separated, then how many more: for error messages."""
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
