"""Writing files so that a crash, a kill or a full disk never leaves half of one behind."""

import os
from collections.abc import Callable
from pathlib import Path

from geoseg.errors import DataError


def temporary_name(path: Path, unique: bool = False) -> Path:
    """The hidden ``.<name>.tmp`` beside ``path`` that a write goes to first (``unique``:
    ``.<name>.<process id>.tmp``, for files that two processes may write at once). It has no image
    or checkpoint extension, so no reader here takes it for a finished file."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp" if unique else f".{path.name}.tmp")


def write_atomic(
    path: str | os.PathLike,
    write: Callable[[Path], None],
    durable: bool = False,
    unique: bool = False,
) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file over ``path``.

    Readers see the previous file or the new one, never a partial one. On any failure the temporary
    file is removed and the previous file is left as it was. ``durable`` flushes the data and the
    rename to disk (checkpoints: surviving a power cut is worth the fsync). The temporary file is in
    the same folder, so the rename never crosses file systems. ``unique``: a temporary name of
    this process's own (``temporary_name``), so two processes writing ``path`` at once do not
    write into one temporary file; the last rename wins, whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path, unique)
    try:
        write(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync(path.parent)


def refuse_overwriting_input(
    output: str | os.PathLike, *inputs: str | os.PathLike, what: str = "output"
) -> None:
    """A DataError if ``output`` is one of ``inputs``: the same path, the same file through
    symbolic links (of the file or of a folder above it), or a hard link to it. Writing there
    would replace the input with its own result; ``what`` names the choice to change."""
    for source in inputs:
        if is_same_file(output, source):
            raise DataError(
                f"{output}: is the input {source}; refusing to write over it: choose another {what}"
            )


def check_output_folder(path: str | os.PathLike, flag: str) -> None:
    """A DataError, before any work, unless the folder ``path`` (given as ``flag``) exists or can
    be made: no file where it or a folder above it should be."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise DataError(
                    f"{flag} {path}: {folder} is a file, not a folder; choose another {flag}"
                )
            return


def check_output_file(path: str | os.PathLike, flag: str) -> None:
    """A DataError, before any work, unless the file ``path`` (given as ``flag``) can be written:
    not a folder, and no file where a folder above it should be."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{flag} {path}: is a folder; give the file to write")
    check_output_folder(path.parent, flag)


def is_same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether paths ``a`` and ``b`` name one file (links followed; need not exist)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:  # either is missing: no file to share
        return False


def write_text_atomic(path: str | os.PathLike, text: str, unique: bool = False) -> None:
    """``write_atomic`` for a text file (UTF-8)."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), unique=unique)


def _fsync(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. folders on Windows; the data is written, durability is best effort
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
