"""datastage: get deep-learning datasets onto fast local disk, verified and ready to train.

    import datastage
    root = datastage.get("ljspeech", to="/root/autodl-tmp")   # -> Path to the dataset root

Only the public API is re-exported here; nothing heavy is imported until it is used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import fetch, get, info, list_datasets, verify
from .errors import DatastageError

__all__ = ["DatastageError", "__version__", "fetch", "get", "info", "list_datasets", "verify"]
