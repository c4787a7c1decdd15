"""The rendezvous's settings: where the run hosts it and how long it waits, from ``PARETRAIN_*`` variables.

See ``paretrain.runtime.train.elastic`` for what each setting governs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from paretrain.planner.errors import InputError

__all__ = ["Settings", "parse_endpoint"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Where the run hosts the rendezvous and how long it waits (see the module docstring)."""

    host: str = "127.0.0.1"
    port: int = 0
    nnodes: int = 1
    timeout_s: float = 300.0
    max_restarts: int = 3
    collective_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if self.nnodes < 1:
            raise ValueError(f"PARETRAIN_NNODES must be >= 1, but got {self.nnodes}")
        if self.timeout_s <= 0 or self.collective_timeout_s <= 0:
            raise ValueError(f"timeouts must be > 0, but got {self.timeout_s}, {self.collective_timeout_s}")
        if self.max_restarts < 0:
            raise ValueError(f"PARETRAIN_MAX_RESTARTS must be >= 0, but got {self.max_restarts}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """The settings from ``PARETRAIN_*`` variables; ``InputError`` (exit 2) on a bad one,
        naming it."""
        env = dict(os.environ if env is None else env)

        def read(name: str, default: str, kind: type, rule: str) -> Any:
            raw = env.get(name, default)
            try:
                return kind(raw)
            except ValueError:
                raise InputError(
                    f"environment: {name} must be {rule}; got {raw!r}. To fix: set it to "
                    f"{rule} or unset it (default {default})"
                ) from None

        endpoint = env.get("PARETRAIN_RDZV_ENDPOINT", "127.0.0.1:0")
        try:
            host, port = parse_endpoint(endpoint)
        except ValueError:
            raise InputError(
                f"environment: PARETRAIN_RDZV_ENDPOINT must be HOST:PORT; got {endpoint!r}. "
                "To fix: set it like 10.0.0.1:29400 or unset it"
            ) from None
        try:
            return cls(
                host=host,
                port=port,
                nnodes=read("PARETRAIN_NNODES", "1", int, "an integer >= 1"),
                timeout_s=read("PARETRAIN_RDZV_TIMEOUT_S", "300", float, "seconds > 0"),
                max_restarts=read("PARETRAIN_MAX_RESTARTS", "3", int, "an integer >= 0"),
                collective_timeout_s=read("PARETRAIN_COLLECTIVE_TIMEOUT_S", "300", float, "seconds > 0"),
            )
        except ValueError as err:
            raise InputError(
                f"environment: {err}. To fix: set PARETRAIN_NNODES >= 1, PARETRAIN_MAX_RESTARTS "
                ">= 0 and the timeouts to positive seconds"
            ) from err


def parse_endpoint(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"a rendezvous endpoint is HOST:PORT, but got {text!r}")
    return host, int(port)
