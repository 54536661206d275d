"""An S3 prefix as the cache shared by many machines: ``datastage push``, and get's lookup.

    s3://bucket/prefix/<dataset>/<file>                  a verified archive, pushed by one node
    s3://bucket/prefix/<dataset>/<file>.datastage.json   size + digests (sidecar.py)

``push NAME s3://bucket/prefix`` uploads the verified cache blobs of a dataset (fetching them
first if needed) unless the same bytes are already there. With ``shared_cache`` set (config
key, or $DATASTAGE_SHARED_CACHE) every ``get`` asks that prefix before the dataset's own URLs,
so N nodes pull from the bucket in parallel and the origin is hit once. Objects are hashed as
they arrive and checked against the manifest, like any download.

boto3 is imported lazily (``pip install 'datastage-ml[s3]'``); credentials, region and endpoint
come from the usual AWS configuration (``AWS_ENDPOINT_URL`` points it at MinIO or moto).
Upload only here: reading ``s3://`` URLs listed in manifests belongs to ``sources/s3.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from ..core import locks
from ..core.digests import CACHE_ALGORITHM, HEX_LENGTHS, check, hash_file
from ..core.errors import (
    AccessDenied,
    IntegrityError,
    MissingDependency,
    SourceError,
    install_hint,
)
from ..core.progress import Reporter
from ..core.text import one_line
from ..resolve.manifest import FileEntry, Manifest
from ..settings.config import Settings
from ..sources.s3rules import parse_url, refusal
from .cache import Blob, Cache
from .sidecar import SIDECAR, sidecar_for, sidecar_matches


def split(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ("bucket", "some/prefix"): where datasets go."""
    bucket, key = parse_url(url)
    return bucket, key.strip("/")


def _client() -> Any:
    try:
        import boto3
    except ImportError:
        raise MissingDependency(
            "pushing to or reading from S3 needs boto3", hint=install_hint("s3")
        ) from None
    from botocore.exceptions import BotoCoreError

    try:
        return boto3.client("s3")
    except BotoCoreError as e:  # e.g. AWS_PROFILE names a profile that does not exist
        raise SourceError(f"cannot set up an S3 client: {e}") from e


def _key(prefix: str, dataset: str, name: str) -> str:
    return "/".join(p for p in (prefix, dataset, name) if p)


def _errors(what: str) -> Any:
    """Translate botocore's exceptions into datastage errors for the block."""

    @contextlib.contextmanager
    def block() -> Any:
        from boto3.exceptions import Boto3Error, S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except NoCredentialsError as e:
            raise AccessDenied(
                f"{what}: no AWS credentials", 403, hint="set AWS_ACCESS_KEY_ID / AWS_PROFILE"
            ) from e
        except ClientError as e:
            answer = refusal(e)
            if answer.denied:
                raise AccessDenied(f"{what}: access denied ({answer.reason})", 403) from e
            raise SourceError(f"{what}: {answer.code or one_line(e)}") from e
        except BotoCoreError as e:
            raise SourceError(f"{what}: {e}") from e
        except S3UploadFailedError as e:  # upload_file wraps the ClientError in this
            raise SourceError(f"{what}: upload failed: {one_line(e)}") from e
        except Boto3Error as e:  # e.g. RetriesExceededError from download_file
            raise SourceError(f"{what}: {one_line(e)}") from e

    return block()


def _sidecar(client: Any, bucket: str, key: str) -> Optional[dict[str, Any]]:
    from botocore.exceptions import ClientError

    try:
        body = client.get_object(Bucket=bucket, Key=key + SIDECAR)["Body"].read()
        value = json.loads(body)
    except ClientError as e:
        if refusal(e).missing == "key":  # not pushed yet; a missing bucket is an error
            return None
        raise
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def push(
    manifest: Manifest, blobs: list[tuple[FileEntry, Blob]], url: str, reporter: Reporter
) -> list[str]:
    """Upload verified blobs under ``url``/<dataset>/; return the object URLs."""
    bucket, prefix = split(url)
    client = _client()
    pushed = []
    for entry, blob in blobs:
        key = _key(prefix, manifest.name, entry.name)
        with _errors(f"s3://{bucket}/{key}"):
            if sidecar_matches(_sidecar(client, bucket, key), entry, blob.size):
                reporter.say(f"{entry.name}: already in s3://{bucket}/{key}")
            else:
                reporter.say(f"uploading {entry.name} to s3://{bucket}/{key}")
                client.upload_file(
                    str(blob.path), bucket, key, ExtraArgs={"Metadata": {"sha256": blob.sha256}}
                )
                # Written after the object: a sidecar never vouches for a missing upload.
                sidecar = json.dumps(sidecar_for(entry, blob)).encode()
                client.put_object(Bucket=bucket, Key=key + SIDECAR, Body=sidecar)
        pushed.append(f"s3://{bucket}/{key}")
    return pushed


def holds(entry: FileEntry, dataset: str, url: str) -> bool:
    """Does the shared prefix have ``entry`` (its sidecar matches)? An unusable shared cache
    holds nothing, as for ``restore``."""
    bucket, prefix = split(url)
    key = _key(prefix, dataset, entry.name)
    try:
        client = _client()
        with _errors(f"s3://{bucket}/{key}"):
            return sidecar_matches(_sidecar(client, bucket, key), entry, None)
    except (SourceError, MissingDependency):
        return False


def restore(
    entry: FileEntry,
    dataset: str,
    url: str,
    store: Cache,
    settings: Settings,
    reporter: Reporter,
) -> Optional[Blob]:
    """Download ``entry`` from the shared prefix into the cache, verified; None on a miss."""
    bucket, prefix = split(url)
    key = _key(prefix, dataset, entry.name)
    try:  # the shared cache is a shortcut: whatever is wrong with it, the origin remains
        client = _client()
        with _errors(f"s3://{bucket}/{key}"):
            sidecar = _sidecar(client, bucket, key)
    except (SourceError, MissingDependency) as e:
        reporter.warn(f"shared cache unavailable: {e}")
        return None
    if not sidecar_matches(sidecar, entry, None):
        return None
    with locks.hold(
        store.lock_path(entry), f"download of {entry.name}", settings.lock_timeout, reporter.say
    ):
        blob = store.find(entry)
        if blob:
            return blob
        reporter.say(f"downloading {entry.name} from the shared cache s3://{bucket}/{key}")
        partial = store.root / "partial"
        partial.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=partial, prefix=f"{store.key(entry)}.", suffix=".s3")
        os.close(fd)
        try:
            with _errors(f"s3://{bucket}/{key}"):
                client.download_file(bucket, key, tmp)
            hasher = hash_file(Path(tmp), [d.algorithm for d in entry.digests])
            digests = hasher.hexdigests()
            check(f"s3://{bucket}/{key}", hasher.size, digests, entry.size, entry.digests)
            assert sidecar is not None
            if sidecar["digests"].get(CACHE_ALGORITHM) != digests[CACHE_ALGORITHM]:
                raise IntegrityError(f"s3://{bucket}/{key} does not match its sidecar")
            digests = {k: v for k, v in digests.items() if k in HEX_LENGTHS}
            return store.commit(Path(tmp), entry, digests, {})
        except (SourceError, IntegrityError) as e:
            reporter.warn(f"ignoring the shared cache copy: {e}")
            return None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
