"""Reading input files and writing output files atomically (temp file, fsync, rename)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from paretrain.planner.errors import InputError
from paretrain.planner.measure.profile import Profile
from paretrain.planner.measure.profile_file import profile_from_json, profile_to_json

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "read_profile",
    "read_text",
    "sha256_file",
    "write_profile",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: the mode ``open`` gives a new file in this process (read once, at import: setting the umask
#: to read it is not safe while other threads create files)
FILE_MODE = 0o666 & ~_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, fsync, rename. The
    file gets the mode that ``open`` would give it (0666 less the process's umask: 0644 with
    the usual 022, ``FILE_MODE``), not the temp file's private 0600, so that a plan, a profile or a checkpoint
    can be shared like the ledgers and plots written beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_text(path: str | Path, what: str, fix: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such {what} file. To fix: {fix}")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{p}: cannot read the {what} ({err}). To fix: {fix}") from None


def read_profile(path: str | Path) -> Profile:
    text = read_text(
        path, "profile", "check 'profiles:' in the spec, or write one with 'paretrain profile SPEC -o FILE'"
    )
    return profile_from_json(text, str(path))


def write_profile(profile: Profile, path: str | Path) -> None:
    atomic_write_text(path, profile_to_json(profile))


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (``OSError`` when it cannot be read)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
