"""The files kfjupyter reads, lists, copies or serves for its users: one rule for links,
one for who may read them.

**Links are refused, never followed.** A symbolic link found below a folder kfjupyter
reads for you (a job's outputs, a folder registered as a model, an artifact in the store,
a notebook's path under the Jupyter server's root) is refused with a
:class:`LinkRefusedError` that names it: a program cannot make kfjupyter list, register or
serve a file from outside the folder by linking it in. The folder itself is taken as it is
named (a workspace or a server root may live behind a link); only what lies below it is
checked. :func:`files_under` and :func:`path_under` are the only ways in.

**The workspace is private.** Folders kfjupyter creates are ``0700`` and its files ``0600``
(as Jupyter does for its runtime files): :func:`private_dir` makes a folder so (the
workspace, each job's folder, the artifact store), the processes it starts (supervisors and
everything under them, model servers, the canary router) run with :data:`PRIVATE_UMASK`, so
whatever they write is private too, and :func:`make_private` closes what this process wrote
into a job's folder before its job starts. This process's own umask is left alone: the
kernel and the Jupyter server write the user's files too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from .errors import InvalidOptionError

#: The umask of every process kfjupyter starts: what they create only their user reads.
PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
#: The longest relative path accepted (Linux's PATH_MAX); a longer one is refused, not tried.
MAX_PATH = 4096


class LinkRefusedError(InvalidOptionError):
    """A symbolic link where kfjupyter reads a file or folder for you; ``link`` is its path."""

    def __init__(self, message: str, link: Path):
        super().__init__(message)
        self.link = link


def _shown(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _refuse_link(path: Path, where: str) -> LinkRefusedError:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return LinkRefusedError(
        f"{where} is a symbolic link (to {target}): kfjupyter follows no links; put the file itself there instead",
        path,
    )


def clean_relpath(relative: str, what: str = "path") -> PurePosixPath:
    """``relative`` as a plain relative path (``a/b.txt``), or InvalidOptionError naming what
    is wrong: empty, a NUL, too long, absolute, or a ``..`` that climbs out."""
    if not isinstance(relative, str) or not relative.strip():
        raise InvalidOptionError(f"{what} must be a non-empty relative path, got {relative!r}")
    if "\x00" in relative:
        raise InvalidOptionError(f"{what} {_shown(relative)} holds a NUL character")
    if len(relative.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise InvalidOptionError(f"{what} {_shown(relative)} is too long ({len(relative)} characters; at most {MAX_PATH})")
    pure = PurePosixPath(relative)
    if pure.is_absolute():
        raise InvalidOptionError(f"{what} {_shown(relative)} is absolute: it must be relative")
    parts: list[str] = []
    for part in pure.parts:
        if part == "..":
            if not parts:
                raise InvalidOptionError(f"{what} {_shown(relative)} leaves its folder")
            parts.pop()
        elif part != ".":
            parts.append(part)
    if not parts:
        raise InvalidOptionError(f"{what} {_shown(relative)} names no file")
    return PurePosixPath(*parts)


def path_under(root: Path, relative: str, what: str = "path") -> Path:
    """``root / relative`` checked: a plain relative path (:func:`clean_relpath`) none of
    whose parts below ``root`` is a link (:class:`LinkRefusedError` names the first). The
    path need not exist; a part that cannot be looked at (too long a name …) is refused."""
    rel = clean_relpath(relative, what)
    current = Path(root)
    done: list[str] = []
    for part in rel.parts:
        current = current / part
        done.append(part)
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):  # it does not exist
            return Path(root).joinpath(*rel.parts)
        except (OSError, ValueError) as exc:
            raise InvalidOptionError(f"{what} {_shown(relative)} refused: {getattr(exc, 'strerror', None) or exc}") from None
        if stat.S_ISLNK(mode):
            shown = _shown(relative) if len(done) == len(rel.parts) else f"{_shown(relative)}: {_shown('/'.join(done))}"
            raise _refuse_link(current, f"{what} {shown}")
    return current


def files_under(root: Path, relative: str | None = None, what: str = "folder") -> list[Path]:
    """Every file below ``root`` (or below ``root / relative``, itself checked by
    :func:`path_under`), sorted, following no link: a link anywhere below is a
    :class:`LinkRefusedError` naming it, and so is refused anything else that is not a
    regular file or a folder (a FIFO would block whoever copies it). A folder that does
    not exist has no files."""
    base = path_under(root, relative, what) if relative is not None else Path(root)
    if not base.is_dir():
        return []
    found: list[Path] = []
    for folder, dirs, names in os.walk(base, followlinks=False):
        here = Path(folder)
        for name in sorted(dirs + names):
            path = here / name
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:  # removed meanwhile
                continue
            where = f"{what} {base}: {_shown(path.relative_to(base).as_posix())}"
            if stat.S_ISLNK(mode):
                raise _refuse_link(path, where)
            if stat.S_ISREG(mode):
                found.append(path)
            elif not stat.S_ISDIR(mode):
                raise InvalidOptionError(f"{where} is not a regular file (a FIFO, socket or device): refused")
    return sorted(found)


def private_dir(path: Path, tighten: bool = True) -> Path:
    """Make the folder ``path`` and its missing parents readable by their user only
    (0700). With ``tighten``, an existing folder of this user's is made so too (one of
    another user's is left as it is). Returns ``path``."""
    path = Path(path)
    if not path.is_dir():
        missing = [p for p in [path, *path.parents] if not p.exists()]
        for folder in reversed(missing):
            try:
                folder.mkdir(mode=DIR_MODE)
            except FileExistsError:
                pass
            folder.chmod(DIR_MODE)  # whatever the umask
    elif tighten:
        info = path.stat()
        if stat.S_IMODE(info.st_mode) != DIR_MODE and info.st_uid == os.getuid():
            path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Make the file ``path`` exist, readable and writable by its user only (0600)."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        make_private(path)
    return path


def _close(path: str, mode: int, uid: int) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != uid:
        return
    current = stat.S_IMODE(info.st_mode)
    wanted = DIR_MODE if stat.S_ISDIR(info.st_mode) else current & mode
    if current != wanted:
        try:
            os.chmod(path, wanted)
        except FileNotFoundError:
            pass


def make_private(root: Path) -> None:
    """Take every permission of group and others from ``root`` and what lies below it
    (this user's files and folders; no link is followed, one that vanishes meanwhile is
    skipped): folders become 0700, files keep only their user's bits (0644 → 0600)."""
    uid = os.getuid()
    _close(str(root), 0o700, uid)
    for folder, dirs, names in os.walk(root, followlinks=False):
        for name in dirs + names:
            _close(os.path.join(folder, name), 0o700, uid)
