"""Writing files so that a crash, a kill or a full disk never leaves half of one behind."""

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from geoseg.errors import DataError, GeoSegError, WriteError


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
    what: str = "the file",
    failures: tuple[type[BaseException], ...] = (OSError,),
) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file over ``path``.

    Readers see the previous file or the new one, never a partial one. On any failure the temporary
    file is removed and the previous file is left as it was. ``durable`` flushes the data and the
    rename to disk (checkpoints: surviving a power cut is worth the fsync). The temporary file is in
    the same folder, so the rename never crosses file systems. ``unique``: a temporary name of
    this process's own (``temporary_name``), so two processes writing ``path`` at once do not
    write into one temporary file; the last rename wins, whole.

    A failure of type ``failures`` (a full disk, a quota, a read-only folder) is a WriteError of one
    line (``write_error``) naming ``path`` as ``what``.
    """
    path = Path(path)
    existed = path.exists()
    tmp = temporary_name(path, unique)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, failures) and not isinstance(error, GeoSegError):
            raise write_error(path, error, what, existed) from error
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


def write_error(
    path: str | os.PathLike, error: BaseException, what: str = "the file", existed: bool = False
) -> WriteError:
    """The WriteError for a failed write of ``path``: one line naming it, the system's reason
    (e.g. "No space left on device") and the free space on its file system. ``existed``: a
    previous file is there, intact."""
    kept = "the previous one is intact" if existed else "nothing partial is left"
    return WriteError(
        f"{path}: could not write {what} ({_reason(error)}; {_free_space(Path(path))}); {kept}"
    )


@contextmanager
def reporting_write_errors(
    path: str | os.PathLike,
    what: str = "the file",
    failures: tuple[type[BaseException], ...] = (OSError,),
) -> Iterator[None]:
    """Turn a failure of type ``failures`` inside the block into ``write_error(path, ...)``, for
    writes that do not go through ``write_atomic`` (they clean up after themselves)."""
    existed = Path(path).exists()
    try:
        yield
    except GeoSegError:
        raise
    except failures as error:
        raise write_error(path, error, what, existed) from error


def _reason(error: BaseException) -> str:
    """The system's reason where an OSError in the chain of ``error`` has one (libraries wrap
    it), else the message of ``error``."""
    seen, cause = set(), error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    message = str(error).replace(" See previous exception for details.", "")  # GDAL's
    return message.rstrip(".") or type(error).__name__


def _free_space(path: Path) -> str:
    """``"N MiB free on its file system"`` for the file system ``path`` is (or would be) on."""
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    size, unit = float(free), 0
    while size >= 1024 and unit < len(units) - 1:
        size, unit = size / 1024, unit + 1
    amount = f"{free} B" if unit == 0 else f"{size:.1f} {units[unit]}"
    return f"{amount} free on its file system"


# fsync answers with these where a file system cannot flush (durability is then best effort)
_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF}


def _fsync(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. folders on Windows; the data is written, durability is best effort
        return
    try:
        os.fsync(descriptor)
    except OSError as error:
        # Some file systems (NFS) report a full disk or a lost write only here: such a file must
        # not replace the previous one. Folders are best effort.
        if error.errno not in _FSYNC_UNSUPPORTED and not path.is_dir():
            raise
    finally:
        os.close(descriptor)
