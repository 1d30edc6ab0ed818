"""The ``unsubkit`` command line. Thin: builds the settings and the app object, calls the core.

Each verb group lives in its own module with a ``register(app)`` function; :data:`MODULES`
lists them. Errors from :mod:`unsubkit.errors` become one line on stderr and exit status 1.
"""

from __future__ import annotations

import importlib
import sys

from ..errors import UnsubkitError
from .common import app, fail

__all__ = ["app", "main"]

MODULES = [
    "core",
    "consent",
    "contacts",
    "filter",
    "webhooks",
    "dkim",
    "prepare",
    "check",
    "probe",
    "ingest",
    "relay",
]

for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}").register(app)


def main() -> None:
    try:
        app()
    except UnsubkitError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
