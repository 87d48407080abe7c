"""Where `headwater export -o PATH` writes, and writing there without ever replacing what is not a file.

``-o`` replaces a regular file atomically: the rows go to a temporary file in the same folder, which
is renamed over the file once complete, so a reader never sees half an export and a failed one
leaves the old file as it was. A rename replaces whatever has the name, so anything else is refused
before a row is read: a device (``-o /dev/full`` would have become a regular file), a FIFO, a socket,
a folder. A symlink to a regular file is followed and its target replaced (as editors and shells
write through a link); the link stays. ``-o -`` is standard output.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from headwater.cli.console import out
from headwater.errors import HeadwaterError

STDOUT = "-"
_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket"}


def target(output: Path) -> Path | None:
    """The regular file ``-o output`` writes (a symlink's target), or None for standard output.
    HeadwaterError for anything that is not, or cannot become, a regular file."""
    if str(output) == STDOUT:
        return None
    try:
        found = output.stat()  # follows symlinks
    except FileNotFoundError:
        return _new_file(output)
    except NotADirectoryError:
        raise _refused(output, f"{_first_file(output)} is a file, not a folder", "Pick a path inside an existing folder.") from None
    except OSError as exc:
        raise _refused(output, exc.strerror or str(exc), "Pick a path you may write to.") from None
    if not stat.S_ISREG(found.st_mode):
        kind = _KINDS.get(stat.S_IFMT(found.st_mode), "not a file")
        raise _refused(
            output,
            f"it is not a regular file but {kind}",
            "Pass the name of a file to write (it is replaced), or -o - for standard output (e.g. `-o - > /dev/...`).",
            why="an export replaces the file it writes, and must never replace a device, pipe, socket or folder",
        )
    return output.resolve() if output.is_symlink() else output


def _new_file(output: Path) -> Path:
    if output.is_symlink():
        raise _refused(output, f"it is a symlink to {os.readlink(output)}, which does not exist", "Create the file it points to, or pass another path.")
    folder = output.parent
    if not folder.is_dir():
        if folder.exists():
            raise _refused(output, f"{folder} is not a folder", "Pick a path inside an existing folder.")
        raise _refused(output, f"the folder {folder} does not exist", f"Create it first (mkdir -p {folder}) or pick another path.")
    return output


def _first_file(path: Path) -> Path:
    for parent in reversed(path.parents):
        if parent.is_file():
            return parent
    return path.parent


def _refused(output: Path, what: str, fix: str, *, why: str | None = None) -> HeadwaterError:
    return HeadwaterError(f"Cannot write to -o {output}: {what}", why=why, fix=fix)


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """A temporary file next to ``path`` that replaces it once the block ends without an error
    (removed otherwise). It gets ``path``'s mode if that exists, else what a new file would get."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    except OSError as exc:
        raise _refused(path, f"cannot create a file in {path.parent} ({exc.strerror or exc})", "Pick a folder you may write to.") from None
    partial = Path(name)
    try:
        os.fchmod(fd, _mode_for(path))
        with os.fdopen(fd, "wb") as handle:
            yield handle
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it back at once
    os.umask(mask)
    return mask


# Write errors that are the disk's, not a bug: said as such (exit 2), the partial file removed.
_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up", errno.EFBIG: "the file is too large for its file system", errno.EIO: "the device reported an I/O error"}


def write_to(output: Path | None, fmt: str, write: Callable[[BinaryIO], int], stdout: BinaryIO) -> int:
    """Run ``write`` into the file ``-o output`` names (see `target`), or into ``stdout``."""
    path = target(output) if output is not None else None
    try:
        if path is None:
            try:
                return _to_stdout(fmt, write, stdout)
            except BrokenPipeError:  # `-o - | head`: the reader left; stop as `out` does (exit 141)
                out.on_broken_pipe()
        with replacing(path) as handle:
            return write(handle)
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        where = "standard output" if path is None else str(path)
        raise HeadwaterError(f"Cannot write the export to {where}: {_FULL[exc.errno]}", why=exc.strerror, fix="Free some space there, or write somewhere else with -o.") from None


def _to_stdout(fmt: str, write: Callable[[BinaryIO], int], stdout: BinaryIO) -> int:
    if fmt != "xlsx":
        rows = write(stdout)
        stdout.flush()
        return rows
    with tempfile.TemporaryFile() as scratch:  # an XLSX is a zip, finished when the workbook closes
        rows = write(scratch)
        scratch.seek(0)
        while chunk := scratch.read(1 << 20):
            stdout.write(chunk)
        stdout.flush()
    return rows
