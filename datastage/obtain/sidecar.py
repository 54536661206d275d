"""The sidecar: what vouches for a saved copy of a verified file, beside it as
``<file>.datastage.json`` (size, digests, the URL redacted), written after the file.

Shared by the persistent tier (persistent.py) and the shared S3 cache (shared.py), so neither
imports the other for it.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from ..core.digests import CACHE_ALGORITHM
from ..core.redact import record_matches, url_fields
from ..resolve.manifest import FileEntry
from .cache import Blob

SIDECAR = ".datastage.json"


def sidecar_for(entry: FileEntry, blob: Blob) -> dict[str, Any]:
    """What vouches for a saved copy (here, or in the shared S3 cache): size and digests."""
    digests = {CACHE_ALGORITHM: blob.sha256}
    digests.update({d.algorithm: d.hexdigest for d in entry.digests})
    return {
        "name": entry.name,
        **url_fields(entry.url),  # the URL redacted, and the full URL's sha256 to match
        "size": blob.size,
        "digests": digests,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def sidecar_matches(sidecar: Any, entry: FileEntry, size: Optional[int]) -> bool:
    """A sidecar vouches for ``entry``: same size (and ``size``, the copy's, when known), and
    every digest both name agrees; an entry without digests must come from the same URL."""
    digests = sidecar.get("digests") if isinstance(sidecar, dict) else None
    if not isinstance(digests, dict) or CACHE_ALGORITHM not in digests:
        return False
    if size is not None and sidecar.get("size") != size:
        return False
    if entry.size is not None and sidecar.get("size") != entry.size:
        return False
    if entry.digests:
        known = [d for d in entry.digests if d.algorithm in digests]
        return bool(known) and all(digests[d.algorithm] == d.hexdigest for d in known)
    return record_matches(sidecar, entry.url)
