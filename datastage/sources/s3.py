"""Amazon S3 and S3-compatible stores: ``s3://bucket/key`` and ``s3://bucket/prefix/``.

Owns: one boto3 client per process (thread-safe, so segments share it), listing prefixes
(``list_objects_v2`` pages), ranged ``GetObject`` with ``IfMatch`` on the ETag so a resumed or
segmented download never mixes two versions of an object, and botocore's exceptions turned into
datastage errors.

Credentials come from boto3's standard chain (environment, ``~/.aws``, SSO, instance role).
When the chain finds none, requests go unsigned, which is what public dataset buckets need; a
refusal then says that no credentials were found. The endpoint is ``settings.s3_endpoint``
(``AWS_ENDPOINT_URL`` or ``--s3-endpoint``) for MinIO, R2, Ceph and friends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Optional

import boto3  # noqa: F401  (imported here so a missing package is a MissingDependency)

from ..core.errors import AccessDenied, NetworkError, RemoteNotFound, SourceError
from ..core.text import one_line
from ..settings.config import Settings
from . import RemoteFile, library_failure
from .s3rules import parse_url, refusal

CHUNK = 1 << 20
HINT_CREDENTIALS = (
    "no AWS credentials were found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
    "or ~/.aws/credentials"
)
HINT_DENIED = "check the bucket policy and the credentials in use (AWS_PROFILE, ~/.aws)"


class S3Body:
    def __init__(self, stream: Any, offset: int, remote: RemoteFile) -> None:
        self._stream = stream
        self.offset = offset
        self.remote = remote

    def __iter__(self) -> Iterator[bytes]:
        if self._stream is None:
            return
        from botocore.exceptions import BotoCoreError

        try:
            yield from self._stream.iter_chunks(CHUNK)
        except (BotoCoreError, OSError) as e:
            raise NetworkError(f"S3 transfer of {self.remote.url} broke: {e}") from e
        finally:
            self.close()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


class S3Source:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._signed = True
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore import UNSIGNED
                from botocore.config import Config

                session = boto3.session.Session()
                self._signed = session.get_credentials() is not None
                config = Config(
                    retries={"max_attempts": self.settings.retries + 1, "mode": "standard"},
                    read_timeout=self.settings.timeout,
                    max_pool_connections=32,
                    **({} if self._signed else {"signature_version": UNSIGNED}),
                )
                self._client = session.client(
                    "s3", endpoint_url=self.settings.s3_endpoint or None, config=config
                )
            return self._client

    def list(self, url: str) -> list[RemoteFile]:
        bucket, key = parse_url(url)
        if key and not key.endswith("/"):
            try:
                head = self._call(url, self.client.head_object, Bucket=bucket, Key=key)
                return [_remote(url, key.rsplit("/", 1)[-1], head)]
            except RemoteNotFound:
                pass  # maybe a prefix written without its trailing slash
        prefix = key if not key or key.endswith("/") else key + "/"
        files = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in self._pages(url, pages):
            for obj in page.get("Contents", []):
                if not isinstance(obj.get("Key"), str) or not isinstance(obj.get("Size"), int):
                    listed = one_line(obj, limit=200)
                    raise SourceError(f"S3 request for {url} failed: unexpected entry {listed}")
                if obj["Key"].endswith("/"):
                    continue  # a "folder" marker object
                files.append(
                    RemoteFile(
                        url=f"s3://{bucket}/{obj['Key']}",
                        name=obj["Key"][len(prefix) :],
                        size=obj["Size"],
                        etag=obj.get("ETag"),
                    )
                )
        if not files:
            raise RemoteNotFound(f"no such key or prefix: {url}", 404)
        return files

    def open_range(self, f: RemoteFile, start: int = 0, end: Optional[int] = None) -> S3Body:
        bucket, key = parse_url(f.url)
        args: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end}"
            if f.etag:
                args["IfMatch"] = f.etag
        try:
            answer = self._call(f.url, self.client.get_object, **args)
        except _Precondition:
            # The object changed since the partial copy began: start over from byte 0.
            fresh = RemoteFile(url=f.url, name=f.name, digest=f.digest)
            return self.open_range(fresh, 0, end if start == 0 else None)
        except _Unsatisfiable as e:
            return S3Body(None, start, RemoteFile(url=f.url, name=f.name, size=e.size))
        total = _total_size(answer)
        offset = start if "ContentRange" in answer else 0
        remote = _remote(f.url, f.name, answer, size=total, digest=f.digest)
        return S3Body(answer["Body"], offset, remote)

    # -- errors ----------------------------------------------------------------------------
    def _call(self, url: str, method: Any, **args: Any) -> Any:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        try:
            return method(**args)
        except ClientError as e:
            raise self._client_error(url, e, args) from e
        except NoCredentialsError as e:
            raise AccessDenied(f"no AWS credentials for {url}", 401, HINT_CREDENTIALS) from e
        except EndpointConnectionError as e:
            raise NetworkError(f"cannot reach the S3 endpoint for {url}: {e}") from e
        except BotoCoreError as e:
            raise SourceError(f"S3 request for {url} failed: {e}") from e
        except Exception as e:  # botocore's parser choking on what the endpoint sent
            if not library_failure(e):
                raise  # a bug, or an error datastage raised on purpose
            raise SourceError(
                f"S3 request for {url} failed: {type(e).__name__}: {one_line(e)}"
            ) from e

    def _pages(self, url: str, pages: Any) -> Iterator[Any]:
        """Each page of a listing, with errors translated (pages are fetched lazily)."""
        iterator = iter(pages)
        while True:
            page = self._call(url, lambda: next(iterator, None))
            if page is None:
                return
            yield page

    def _client_error(self, url: str, e: Any, asked: dict[str, Any]) -> Exception:
        """The datastage error for S3's refusal of a request with arguments ``asked``; the
        answers open_range handles itself (``_Precondition``, ``_Unsatisfiable``) only to a
        request that sent an IfMatch or a Range: to any other, the endpoint misbehaved."""
        answer = refusal(e)
        if answer.changed and "IfMatch" in asked:
            return _Precondition()
        if answer.past_the_end and "Range" in asked:
            return _Unsatisfiable(_int(answer.actual_size))
        if answer.missing:
            return RemoteNotFound(f"no such {answer.missing}: {url} ({answer.reason})", 404)
        if answer.denied:
            hint = HINT_DENIED if self._signed else HINT_CREDENTIALS
            return AccessDenied(f"access denied to {url} ({answer.reason})", 403, hint)
        return SourceError(f"S3 error for {url}: {answer.reason} {answer.message}".strip())


class _Precondition(Exception):
    pass


class _Unsatisfiable(Exception):
    def __init__(self, size: Optional[int]) -> None:
        super().__init__()
        self.size = size


def _int(value: Any) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _total_size(answer: dict[str, Any]) -> Optional[int]:
    content_range = answer.get("ContentRange")
    if content_range and "/" in content_range:
        return _int(content_range.rsplit("/", 1)[1])
    return _int(answer.get("ContentLength"))


def _remote(
    url: str, name: str, answer: dict[str, Any], size: Optional[int] = None, digest: Any = None
) -> RemoteFile:
    modified = answer.get("LastModified")
    return RemoteFile(
        url=url,
        name=name,
        size=size if size is not None else _int(answer.get("ContentLength")),
        etag=answer.get("ETag"),
        last_modified=modified.isoformat() if modified is not None else None,
        digest=digest,
        content_type=answer.get("ContentType"),
    )
