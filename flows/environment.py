"""Prefect environment defaults, applied before Prefect is imported. A value the user set wins.

- ``PREFECT_HOME``: ``$XDG_DATA_HOME/restore/prefect`` (``~/.local/share/restore/prefect``), so the
  embedded default neither needs nor touches a Prefect profile of the user's (which might point at
  a server that is not running). ``restore serve`` and ``restore batch`` share it.
- ``PREFECT_SERVER_ANALYTICS_ENABLED=false``: otherwise the server tries to reach the internet.
- Console logs at WARNING (the API still records INFO for the UI); the server logs at WARNING.
- A longer start-up timeout for the temporary API: 20 s is too tight on a busy 2-core machine.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path


def default_prefect_home(env: MutableMapping[str, str] = os.environ) -> Path:
    data_home = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "restore" / "prefect"


_USER_ENV = frozenset(os.environ)  # names the user set before flows was imported: never overridden


def set_prefect_defaults(env: MutableMapping[str, str] = os.environ, *, console_level: str = "WARNING",
                         user_set: frozenset[str] | None = None) -> None:
    """Set the defaults above for every name the user did not set (later calls may change our own)."""
    user_set = _USER_ENV if user_set is None else user_set
    defaults = {
        "PREFECT_HOME": str(default_prefect_home(env)),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": console_level,
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    }
    for name, value in defaults.items():
        if name not in user_set:
            env[name] = value
    Path(env["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)  # Prefect creates one level only


def serve_record_path(env: MutableMapping[str, str] = os.environ) -> Path:
    """Where ``restore serve`` notes its API URL, so ``restore batch`` can run on that server."""
    return Path(env.get("PREFECT_HOME") or default_prefect_home(env)) / "restore-serve.json"
