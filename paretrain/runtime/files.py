"""Reading input files and writing output files atomically (temp file, fsync, rename)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from paretrain.planner.errors import InputError
from paretrain.planner.measure.profile import Profile
from paretrain.planner.measure.profile_file import profile_from_json, profile_to_json

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "has_password",
    "read_profile",
    "read_text",
    "sha256_file",
    "strict_json",
    "write_profile",
]


def _umask() -> int:
    """The process's umask: read from ``/proc/self/status`` where there is one; else set and
    set back (at import, before any thread of paretrain's creates a file)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: the mode ``open`` gives a new file in this process
FILE_MODE = 0o666 & ~_umask()


def _can_create_in(folder: Path) -> bool:
    """Whether a file can be made in ``folder``: tried with an unnamed temporary file (on Linux it
    never has a name in the folder), since permission bits say nothing to root, and a folder such
    as ``/proc`` refuses new files whatever they say."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_writable(path: str | Path, option: str, *, folder: bool = False) -> None:
    """Before anything is spent, that the file (or, with ``folder``, the folder) ``path`` given
    as ``option`` can be written: what exists of it is of the right kind, and the nearest folder
    that exists above it takes new files. Folders missing in between are made when it is
    written. ``InputError`` (exit 2), one line, otherwise; nothing is written."""
    p = Path(path)
    kind = "a folder" if folder else "a file"
    if p.exists() and p.is_dir() != folder:
        fix = "name a folder" if folder else f"name a file, such as {p / 'plan.json'}"
        raise InputError(f"{option} {p}: must be {kind}, but it is not. To fix: {fix}")
    probe = p if folder and p.is_dir() else p.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(
            f"{option} {p}: {probe} is a file, so {kind} cannot be made under it. To fix: choose another path"
        )
    if not _can_create_in(probe):
        raise InputError(
            f"{option} {p}: no file can be made in the folder {probe}. To fix: choose a folder this user "
            "may write"
        )


def _finite(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def strict_json(value: object, **kwargs: Any) -> str:
    """``json.dumps`` that any JSON reader takes: a non-finite number (a metric not measured yet,
    ``inf``; a diverged loss, ``nan``) is written as ``null``, never as bare ``Infinity``/``NaN``."""
    return json.dumps(_finite(value), allow_nan=False, **kwargs)


def has_password(*uris: str | None) -> bool:
    """Whether one of ``uris`` carries a password (``scheme://user:password@host/...``): a file
    that records it is written private (``atomic_write_bytes(private=True)``)."""
    for uri in uris:
        try:
            if uri and urlsplit(uri).password:
                return True
        except ValueError:
            continue
    return False


def atomic_write_bytes(path: str | Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, fsync, rename. The
    file gets the mode that ``open`` would give it (0666 less the process's umask: 0644 with
    the usual 022, ``FILE_MODE``), not the temp file's private 0600, so that a plan, a profile or
    a checkpoint can be shared like the ledgers and plots written beside it; ``private``: 0600
    (a plan whose spec names a database URI with its password, ``has_password``). A file system
    that refuses the mode (some network mounts) keeps the one it gives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if not private:
            with contextlib.suppress(OSError):
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


def atomic_write_text(path: str | Path, text: str, *, private: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), private=private)


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
