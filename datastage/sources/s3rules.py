"""What an ``s3://`` URL names and what S3's error codes mean: one answer for the two places
that talk to S3, the ``s3://`` source (sources/s3.py) and the shared cache (obtain/shared.py).

Imports nothing of boto3, so a bad URL is refused (and a push or a shared-cache lookup
configured) before boto3 is known to be installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..core.errors import UsageError
from ..core.text import one_line

#: Error codes (and the bare statuses S3 gives HEAD requests) by what they mean.
MISSING_KEY = frozenset({"NoSuchKey", "404", "NotFound"})
MISSING_BUCKET = frozenset({"NoSuchBucket"})
DENIED = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
)
CHANGED = frozenset({"PreconditionFailed", "412"})
PAST_THE_END = frozenset({"InvalidRange"})


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ("bucket", "some/key"), the key exactly as written: a
    trailing "/" marks a prefix, and "?" or "#" are part of the key (S3 allows them)."""
    scheme, sep, rest = url.partition("://")
    bucket, _, key = rest.partition("/")
    if not sep or scheme.lower() != "s3" or not bucket:
        raise UsageError(
            f"{url!r} is not an S3 URL (expected s3://bucket/key or s3://bucket/prefix/)"
        )
    return bucket, key


@dataclass(frozen=True)
class Refusal:
    """A ``botocore.exceptions.ClientError`` read through the table above."""

    code: str
    status: int
    message: str
    actual_size: Optional[str] = None  # InvalidRange: the object's size, as S3 reports it

    @property
    def missing(self) -> Optional[str]:
        """Which is missing ("bucket" or "key") when S3 says there is no such thing, else None."""
        if self.code in MISSING_BUCKET:
            return "bucket"
        if self.code in MISSING_KEY or self.status == 404:
            return "key"
        return None

    @property
    def denied(self) -> bool:
        return self.code in DENIED or self.status in (401, 403)

    @property
    def changed(self) -> bool:
        """An ``IfMatch`` that no longer matches: the object was replaced."""
        return self.code in CHANGED or self.status == 412

    @property
    def past_the_end(self) -> bool:
        """A range that starts at or after the object's end."""
        return self.code in PAST_THE_END or self.status == 416

    @property
    def reason(self) -> str:
        """The code, or the status when S3 sent no code (HEAD requests)."""
        return self.code or str(self.status)


def refusal(e: Any) -> Refusal:
    """The code, status and message of a ClientError (``e.response`` is botocore's dict)."""
    error = e.response.get("Error", {})
    status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return Refusal(
        code=str(error.get("Code", "")),
        status=int(status or 0),
        message=one_line(error.get("Message", "")),
        actual_size=error.get("ActualObjectSize"),
    )
