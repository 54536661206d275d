"""datastage: get deep-learning datasets onto fast local disk, verified and ready to train.

    import datastage
    root = datastage.get("ljspeech", to="/root/autodl-tmp")   # -> Path to the dataset root

Only the public API is re-exported here; nothing heavy is imported until it is used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import api as _api
from .errors import DatastageError
from .redact import scrubbed as _scrubbed

# An error leaving the API shows no URL secret, not even in the exceptions chained behind it.
fetch = _scrubbed(_api.fetch)
get = _scrubbed(_api.get)
info = _scrubbed(_api.info)
list_datasets = _scrubbed(_api.list_datasets)
verify = _scrubbed(_api.verify)

__all__ = ["DatastageError", "__version__", "fetch", "get", "info", "list_datasets", "verify"]
