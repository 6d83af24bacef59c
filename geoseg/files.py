"""Writing files so that a crash, a kill or a full disk never leaves half of one behind, and two
writers of one file never collide; recognising the inputs a result was computed from; reading a
JSON file back, with errors that name it."""

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from geoseg.errors import DataError, GeoSegError, WriteError

_SAMPLE_BYTES = 1 << 20  # hashed at each end of a file by file_fingerprint


# Temporary names: ``.<name>.<host>.<pid>.<random>.tmp`` (GDAL may add its own suffix to one, e.g.
# ``.ovr.tmp``). The writer's host and process id make a leftover tell from a write in progress.
_OWNER = re.compile(r"\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp(\..*)?")
# A temporary made on another machine sharing the folder is stale once untouched this long: its
# writer cannot be asked whether it runs, and writes in progress modify their files every few
# seconds to minutes.
STALE_AFTER_S = 24 * 3600


def temporary_name(path: str | os.PathLike, folder: bool = False) -> Path:
    """A new hidden temporary beside ``path``, created empty (a folder with ``folder``) and
    returned: ``.<name>.<host>.<process id>.<random>.tmp``.

    It is created exclusively (``O_EXCL``, ``mkdir``), so no two writers, processes or calls ever
    share one, and its name records its writer for ``is_stale_temporary``. It has no image or
    checkpoint extension, so no reader here takes it for a finished file.
    """
    path = Path(path)
    while True:
        candidate = path.with_name(
            f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        )
        try:
            if folder:
                candidate.mkdir()
            else:
                os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return candidate


def is_stale_temporary(path: Path) -> bool:
    """Whether the temporary ``path`` is a leftover that no running writer will finish.

    Made on this machine: stale once its writer's process has exited (a recycled process id keeps
    a leftover a while longer, which is harmless). Made on another machine sharing the folder (a
    cluster's nodes), or on Windows: stale once untouched for ``STALE_AFTER_S``, as whether its
    writer runs cannot be asked. A name with no writer in it comes from an older version of this
    code, which no longer runs: stale.
    """
    owner = _OWNER.search(path.name)
    if owner is None:
        return True
    if owner["host"] == _host() and os.name == "posix":  # os.kill(pid, 0) would kill on Windows
        return not _process_runs(int(owner["pid"]))
    try:
        modified = path.lstat().st_mtime
    except FileNotFoundError:
        return False
    return time.time() - modified > STALE_AFTER_S


def remove_stale_temporaries(folder: str | os.PathLike, stems: Iterable[str] | None = None) -> int:
    """Delete the stale temporaries (``is_stale_temporary``) in ``folder`` of files named
    ``<stem>.<anything>`` for ``stems`` (None: of any file); their count. Other writers' temporaries
    in progress are left alone, so that runs sharing a folder never delete each other's work. A
    temporary folder is deleted with its contents; links are deleted, never followed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    wanted = None if stems is None else {f".{stem}." for stem in stems}
    removed = 0
    for path in folder.glob(".*tmp"):
        if wanted is not None and not any(
            path.name[: end + 1] in wanted for end in _dots(path.name)
        ):
            continue
        if not is_stale_temporary(path):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)  # does not follow the links inside
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed


def write_atomic(
    path: str | os.PathLike,
    write: Callable[[Path], None],
    durable: bool = False,
    what: str = "the file",
    failures: tuple[type[BaseException], ...] = (OSError,),
) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file over ``path``.

    Readers see the previous file or the new one, never a partial one. On any failure the temporary
    file is removed and the previous file is left as it was. ``durable`` flushes the data and the
    rename to disk (checkpoints: surviving a power cut is worth the fsync). The temporary file
    (``temporary_name``: this call's own, already created empty) is in the same folder, so the
    rename never crosses file systems, and two processes writing ``path`` at once never write into
    one file: the last rename wins, whole.

    A failure of type ``failures`` (a full disk, a quota, a read-only folder) is a WriteError of one
    line (``write_error``) naming ``path`` as ``what``.
    """
    path = Path(path)
    existed = path.exists()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_name(path)
        write(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
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


def check_build_output(
    output: str | os.PathLike,
    sources: dict[str, str | os.PathLike],
    is_previous_build: Callable[[Path], bool],
    made_by: str,
    flag: str = "--output-root",
) -> None:
    """A DataError, before any work, unless the folder ``output`` (given as ``flag``) can take a
    build that ``replace_folder`` swaps in whole: apart from every source (``sources``: what it
    is -> its path; neither inside the other, as given or with links resolved), and absent, empty
    or a previous build (``is_previous_build(folder)``; ``made_by`` names the builder)."""
    check_output_folder(output, flag)
    given = Path(os.path.abspath(output))
    for name, source in sources.items():
        source = Path(os.path.abspath(source))
        pairs = ((given, source), (Path(os.path.realpath(given)), Path(os.path.realpath(source))))
        if any(a == b or a in b.parents or b in a.parents for a, b in pairs):
            raise DataError(
                f"output root {output} overlaps {name} {source}: the sources are never written "
                "to, so the output must be a separate folder"
            )
    if given.is_dir() and any(given.iterdir()) and not is_previous_build(given):
        raise DataError(
            f"{output}: exists, is not empty and was not made by {made_by}; refusing to replace "
            "it. Choose another output root or remove that folder yourself."
        )


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


def _remove_path(path: Path) -> None:
    """Delete ``path``: a link itself (never its target), or a folder tree whose links are deleted,
    not followed (``shutil.rmtree`` does not follow links)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def replace_folder(output: Path, staging: Path) -> None:
    """Swap the finished build folder ``staging`` in at ``output``; whatever stood there (the
    previous build: the caller checks that it is one) is removed.

    Another build of the same output may finish meanwhile: whatever stands at ``output`` is moved
    into a folder of this build's own (a rename onto an empty folder) before ``staging`` takes its
    place, and a rename that finds a new output there tries again, so the last build to finish
    stays, whole, and no build removes another's folder in progress.
    """
    while True:
        previous = temporary_name(output, folder=True)
        with contextlib.suppress(FileNotFoundError):  # none yet, or another build moved it
            os.replace(output, previous)
        try:
            staging.rename(output)
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            continue  # another build's output appeared in between: move it aside too
        finally:
            _remove_path(previous)  # deletes links themselves, never what they point to
        return


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """``write_atomic`` for a text file (UTF-8)."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json_file(path: Path, what: str, missing: str):
    """The JSON value the file ``path`` holds. A file not there is the DataError
    "<path>: <missing>"; one that cannot be read or parsed, "<path>: not a readable JSON <what>"."""
    if not path.is_file():
        raise DataError(f"{path}: {missing}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not a readable JSON {what} ({error})") from error


def file_fingerprint(path: str | os.PathLike) -> dict:
    """What a result computed from the file ``path`` was computed from: its size, modification time
    (ns) and the SHA-256 of its first and last MiB (of all of it, when smaller than 2 MiB).

    Cheap for files of any size (two reads of 1 MiB), and it changes when a file is replaced under
    the same name: by another file (size, time or content differ), or rewritten in place. A copy
    that does not keep the modification time (``cp`` without ``-p``) counts as changed.
    """
    path = Path(path)
    with path.open("rb") as file:
        status = os.fstat(file.fileno())
        digest = hashlib.sha256(file.read(_SAMPLE_BYTES))
        if status.st_size > 2 * _SAMPLE_BYTES:
            file.seek(-_SAMPLE_BYTES, os.SEEK_END)
        digest.update(file.read())
    return {
        "size": status.st_size,
        "mtime_ns": status.st_mtime_ns,
        "sample_sha256": digest.hexdigest(),
    }


def _host() -> str:
    """This machine's name as it goes into temporary names: letters, digits and ``-``."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, as another user
        return True
    return True


def _dots(name: str) -> list[int]:
    return [index for index, char in enumerate(name) if char == "." and index > 0]


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
