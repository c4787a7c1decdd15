"""Checking a search storage before anything is spent: exit 2 with one line when it is unusable.

- ``sqlite:///FILE`` and ``journal:FILE``: the folder of FILE exists (one machine; sqlite
  serializes its writers, the journal takes a file lock).
- Any other URL is an RDB that SQLAlchemy opens (``postgresql://USER:PASS@HOST:PORT/DB``: the
  store for workers on several machines): the URL parses, its driver is installed (``pip
  install 'paretrain[postgres]'`` for PostgreSQL) and the server answers within a few seconds.
"""

from __future__ import annotations

from pathlib import Path

from paretrain.planner.errors import InputError

__all__ = ["check_storage", "check_workers"]

_CONNECT_TIMEOUT_S = 5


def check_storage(storage: str, where: str = "search.storage") -> None:
    """Raise ``InputError`` (exit 2) unless ``storage`` can hold the study (see the module)."""
    for prefix in ("sqlite:///", "journal:"):
        if storage.startswith(prefix):
            folder = Path(storage[len(prefix) :]).parent
            if not folder.is_dir():
                raise InputError(
                    f"{where}: the folder of {storage} does not exist ({folder}). To fix: "
                    "create it, or point the storage elsewhere"
                )
            return
    _check_rdb(storage, where)


def check_workers(workers: int) -> None:
    if workers < 1:
        raise InputError(
            f"--workers must be >= 1; got {workers}. To fix: pass the number of worker processes "
            "to start on this machine (1 runs the search in this process)"
        )


def _check_rdb(url: str, where: str) -> None:
    import sqlalchemy as sa

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise InputError(
            f"{where}: {url!r} is not a storage URL. To fix: use sqlite:///FILE, journal:FILE or "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    args = {"connect_timeout": _CONNECT_TIMEOUT_S} if parsed.get_backend_name() == "postgresql" else {}
    try:
        engine = sa.create_engine(parsed, connect_args=args)
    except (ImportError, sa.exc.NoSuchModuleError) as err:
        fix = (
            "pip install 'paretrain[postgres]'"
            if parsed.get_backend_name() == "postgresql"
            else "install the SQLAlchemy driver for it"
        )
        raise InputError(
            f"{where}: {shown} needs a database driver that is not installed ({err}). To fix: {fix}"
        ) from None
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as err:
        first = str(err.orig).strip().splitlines()[0] if err.orig is not None else type(err).__name__
        raise InputError(
            f"{where}: cannot connect to {shown} ({first}). To fix: start the database server, or "
            "check the host, port, user, password and database name in the URL"
        ) from None
    finally:
        engine.dispose()
