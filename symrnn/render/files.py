"""Atomic writes: every output appears whole or not at all.

Each helper writes to a temporary file in the destination's own folder and
renames it over the destination with :func:`os.replace` (atomic on POSIX
within one file system).  A failure anywhere before the rename removes the
temporary file and leaves the previous destination, if any, untouched.
Missing parent folders are created.  Every :class:`OSError` becomes an
:class:`~symrnn.errors.OutputError` naming the path and the reason.

* :func:`atomic_write_text` / :func:`atomic_write_bytes`: one file from a
  string or bytes.
* :func:`atomic_path`: a context manager yielding a temporary path with the
  destination's suffix, for writers that want a file name (matplotlib,
  pdftoppm, ``shutil.copyfile``).
* :func:`atomic_folder`: a context manager yielding a fresh temporary folder;
  on success its files are moved into the destination folder (renamed into
  place when the destination does not exist yet, otherwise file by file), on
  failure it is deleted and the destination is as it was.

This module sits in ``render`` (the lowest stage that writes files) so the
LaTeX writer, the code generator, the report and the CLI share it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from symrnn.errors import OutputError

__all__ = ["atomic_write_text", "atomic_write_bytes", "atomic_path", "atomic_folder",
           "ensure_folder"]


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


@contextlib.contextmanager
def _reported(what: str) -> Iterator[None]:
    """An OSError in the block becomes OutputError "cannot write WHAT: reason"."""
    try:
        yield
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(f"cannot write {what}: {_reason(err)}") from None


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def ensure_folder(folder: Path) -> Path:
    """Create ``folder`` (and its parents); OutputError naming the path when impossible."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"cannot create folder {str(folder)!r}: a file of that name "
                          "exists") from None
    except OSError as err:
        raise OutputError(f"cannot create folder {str(folder)!r}: {_reason(err)}") from None
    return folder


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same suffix); rename it over ``path`` on success."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: it is a folder")
    if path.exists() and not path.is_file():
        raise OutputError(f"cannot write {str(path)!r}: not a regular file (it is not replaced)")
    ensure_folder(path.parent)
    with _reported(repr(str(path))):
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}",
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with _reported(repr(str(path))):
            yield tmp
            _keep_mode(tmp, path)
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def _keep_mode(tmp: Path, path: Path) -> None:
    """Give the new file the old file's mode, or the umask default (mkstemp makes 0600)."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0o666 & ~_umask()
    with contextlib.suppress(OSError):
        os.chmod(tmp, mode)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8); return the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def _clashes(src: Path, dest: Path) -> list[Path]:
    """Destinations in ``dest`` that an entry of ``src`` could not replace (file vs folder)."""
    out = []
    for entry in src.iterdir():
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if target.exists() and not target.is_dir():
                out.append(target)
            elif target.is_dir():
                out += _clashes(entry, target)
        elif target.is_dir() or (target.exists() and not target.is_file()):
            out.append(target)
    return out


def _move_into(src: Path, dest: Path) -> None:
    """Move every entry of ``src`` into ``dest``, each by one rename."""
    for entry in sorted(src.iterdir()):
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink():
            ensure_folder(target)
            _move_into(entry, target)
        else:
            if target.is_dir():
                raise OutputError(f"cannot write {str(target)!r}: it is a folder")
            os.replace(entry, target)


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; its files land in ``folder`` only when the block succeeds.

    A new ``folder`` is the temporary sibling renamed into place (one rename); an
    existing one receives the files one rename each, and files of its own that the
    block did not write stay.  On failure nothing in ``folder`` changes.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write folder {str(folder)!r}: a file of that name exists")
    exists = folder.is_dir()
    parent = folder if exists else folder.parent
    ensure_folder(parent)
    what = f"folder {str(folder)!r}"
    with _reported(what):
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name or 'out'}.tmp-", dir=parent))
    try:
        with _reported(what):
            yield tmp
            os.chmod(tmp, 0o777 & ~_umask())
            if exists:
                clashes = _clashes(tmp, folder)
                if clashes:
                    raise OutputError(f"cannot write {str(clashes[0])!r}: a folder or special "
                                      "file of that name is in the way; nothing was written")
                _move_into(tmp, folder)
            else:
                os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
