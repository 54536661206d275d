"""datastage: get deep-learning datasets onto fast local disk, verified and ready to train.

    import datastage
    root = datastage.get("ljspeech", to="/root/autodl-tmp")   # -> Path to the dataset root

Only the public API is re-exported here; nothing heavy is imported until it is used.
"""

from __future__ import annotations

import functools as _functools
import sys as _sys
from typing import Any as _Any
from typing import Callable as _Callable
from typing import TypeVar as _TypeVar

from . import api as _api
from .core import errors
from .core.errors import DatastageError
from .core.errors import note_hint as _note_hint
from .core.redact import scrubbed as _scrubbed
from .core.version import __version__

_F = _TypeVar("_F", bound=_Callable[..., _Any])


def _public(function: _F) -> _F:
    """An error leaving the API shows no URL secret, not even in the exceptions chained behind
    it (redact.scrubbed), and shows its hint: a notebook prints no separate ``hint:`` line."""
    scrubbed = _scrubbed(function)

    @_functools.wraps(function)
    def wrapper(*args: _Any, **kwargs: _Any) -> _Any:
        try:
            return scrubbed(*args, **kwargs)
        except DatastageError as e:
            _note_hint(e)
            raise

    return wrapper  # type: ignore[return-value]


# ``datastage.errors`` is the public home of every exception (``from datastage.errors import
# ChecksumMismatch``); the classes live in core/errors.py, the bottom of the layer order.
_sys.modules[__name__ + ".errors"] = errors

fetch = _public(_api.fetch)
get = _public(_api.get)
info = _public(_api.info)
list_datasets = _public(_api.list_datasets)
verify = _public(_api.verify)

__all__ = ["DatastageError", "__version__", "fetch", "get", "info", "list_datasets", "verify"]
