"""Every error datastage raises on purpose, and the exit code the CLI uses for it.

Third-party exceptions (requests, OSError, tarfile, ...) are converted into these once, at the
boundary where they happen, with ``raise ... from e``. The CLI prints ``error: <message>`` and,
when there is one, ``hint: <hint>``, then exits with ``exit_code``.

    DatastageError                       1
    ├── UsageError                       2   bad flag combination, bad target string, ~nosuchuser
    │   └── NoDefaultFolder              2   no --to and no platform default
    ├── ManifestError                    3   unreadable or invalid manifest (names file and key)
    │   ├── InvalidManifest              3   every problem of one manifest, each with its key
    │   └── DatasetNotFound              3   unknown name ("did you mean ...")
    ├── MissingDependency                3   optional package not installed (install hint)
    ├── GatedDataset                     3   files with no public URL: register, then --from DIR
    ├── SourceError                      4   the remote side failed
    │   ├── HTTPStatusError              4   4xx/5xx after retries
    │   │   ├── RemoteNotFound           4   404/410
    │   │   └── AccessDenied             4   401/403
    │   ├── QuotaExceeded                4   a quota page instead of the file (Drive)
    │   ├── UnexpectedHTML               4   any other HTML page instead of the file
    │   ├── NetworkError                 4   connection/timeouts after retries
    │   │   └── HostUnreachable          4   connection refused, name not resolved (quick)
    │   ├── RemoteChanged                4   file changed on the server while downloading
    │   ├── NotInFolder                  4   files missing from a --from folder (all named)
    │   └── AllMirrorsFailed             4   every URL of a file failed (each reason listed)
    ├── IntegrityError                   5
    │   ├── ChecksumMismatch             5   expected vs actual digest
    │   ├── SizeMismatch                 5   expected vs actual size
    │   ├── VerifyFailed                 5   staged tree differs from its marker
    │   └── DamagedBlob                  5   a cache file no longer matches its sha256
    ├── ArchiveError                     6
    │   ├── UnsafeArchiveMember          6   path traversal, links outside, devices
    │   ├── CorruptArchive               6   truncated or damaged
    │   ├── UnsupportedArchive           6
    │   └── ArchiveTooLarge              6   unpacks to more than declared (zip bomb)
    ├── InsufficientSpace                7   needed vs free, where
    ├── LockTimeout                      8
    └── OfflineError                     4   network needed but DATASTAGE_OFFLINE=1

Exit code 130 means interrupted (Ctrl-C). Messages and hints are redacted when the error is
made (redact.py): a URL's password or token never reaches a message, whoever prints it.

Errors that a caller acts on carry what it needs as fields, so nothing is decided by matching
their text: ``expected``/``actual`` (ChecksumMismatch: "alg:hex"; SizeMismatch: bytes) and the
``url`` they came from, ``failures`` (AllMirrorsFailed: each URL with its error), ``blobs``
(DamagedBlob), ``path`` (CorruptArchive: the archive as its message names it; InsufficientSpace:
where). URLs in fields are redacted like messages. A caller that knows more says so with
``amend`` (same object, fields and type; the text redacted again).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Optional

from .redact import redact_text, redact_url


class DatastageError(Exception):
    """Root of every datastage error. ``str(e)`` is a complete one-line message."""

    exit_code = 1

    def __init__(self, message: str, hint: Optional[str] = None) -> None:
        message, hint = redact_text(message), hint and redact_text(hint)  # issue 11 item 4
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its type, args and fields, without calling ``__init__`` again: the
        default calls ``type(e)(*e.args)``, which fails for errors whose ``__init__`` takes
        more than the message (InsufficientSpace, HTTPStatusError, InvalidManifest), so a
        multiprocessing worker's error could not reach its parent (nor an AllMirrorsFailed
        whose ``failures`` hold one)."""
        return (_rebuilt, (type(self), self.args, self.__dict__))

    def amend(self, suffix: str = "", hint: Optional[str] = None) -> None:
        """Say more where more is known: ``suffix`` is appended to the message, ``hint`` (if
        given) replaces the hint; both redacted, as in a new error. Type and fields stay."""
        self.message = redact_text(f"{self.message}{suffix}")
        self.args = (self.message,)
        if hint is not None:
            self.hint = redact_text(hint)


def _rebuilt(
    cls: type[DatastageError], args: tuple[Any, ...], fields: dict[str, Any]
) -> DatastageError:
    """An unpickled error (``DatastageError.__reduce__``): its args and fields as they were."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(fields)
    return error


def _redacted(url: Optional[str]) -> Optional[str]:
    return None if url is None else redact_url(url)


def note_hint(error: BaseException) -> None:
    """Add a datastage error's hint to what its traceback shows (a PEP 678 note, Python 3.11+).

    A notebook shows an exception's type, text and notes: without this, "run: datastage get
    ..." or "pip install ..." would be lost there (the CLI prints ``hint`` on its own line)."""
    hint = getattr(error, "hint", None)
    if not isinstance(error, DatastageError) or not hint or hint in str(error):
        return
    note = f"hint: {hint}"
    if hasattr(error, "add_note") and note not in getattr(error, "__notes__", ()):
        error.add_note(note)


class UsageError(DatastageError):
    exit_code = 2


class NoDefaultFolder(UsageError):
    """No --to was given and this machine has no default to stage to."""


class ManifestError(DatastageError):
    exit_code = 3


class DatasetNotFound(ManifestError):
    """An unknown dataset or subset. ``str(e)`` carries the "did you mean ..." hint too: a
    notebook shows only the exception's text (the CLI prints ``message`` and ``hint`` apart)."""

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class InvalidManifest(ManifestError):
    """All of a manifest's problems at once, so it is fixed in one round, not one per run.

    ``problems`` holds one "<where>: <key>: <reason>" line each (the CLI prints them under a
    summary); ``str()`` is still one line: the problem itself, or the count and every problem.
    """

    def __init__(self, where: str, problems: Sequence[tuple[str, str]]) -> None:
        # redacted here like every message: a notebook prints ``e.problems`` and ``e.summary``
        self.problems = tuple(redact_text(f"{where}: {key}: {reason}") for key, reason in problems)
        if len(problems) == 1:
            message = self.problems[0]
        else:
            listed = "; ".join(f"{key}: {reason}" for key, reason in problems)
            message = f"{where}: {len(problems)} problems: {listed}"
        super().__init__(message)
        self.summary = (
            self.problems[0] if len(problems) == 1 else f"{where}: {len(problems)} problems"
        )


class MissingDependency(DatastageError):
    exit_code = 3


class GatedDataset(DatastageError):
    """Files no URL can fetch (a dataset behind a registration form): the user downloads them
    and passes the folder with ``--from``. Exit 3 like a missing dependency: nothing was
    tried, something must be installed (here: downloaded) first."""

    exit_code = 3


#: The name on the package index. ``datastage`` there is an unrelated package (IBM's DataStage
#: SDK), so every install hint names this distribution; the import and command stay ``datastage``.
DISTRIBUTION = "datastage-ml"


def install_hint(extra: str) -> str:
    """``pip install 'datastage-ml[s3]'``: the command that adds an optional dependency."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


class SourceError(DatastageError):
    exit_code = 4


class HTTPStatusError(SourceError):
    def __init__(self, message: str, status: int, hint: Optional[str] = None) -> None:
        super().__init__(message, hint)
        self.status = status


class RemoteNotFound(HTTPStatusError):
    pass


class AccessDenied(HTTPStatusError):
    pass


class QuotaExceeded(SourceError):
    pass


class UnexpectedHTML(SourceError):
    pass


class NetworkError(SourceError):
    pass


class HostUnreachable(NetworkError):
    """Connection refused or the host name does not resolve: a quick retry or two, not minutes
    of backoff (retrying.py)."""


class RemoteChanged(SourceError):
    pass


class AllMirrorsFailed(SourceError):
    """Every URL of a file failed; ``failures`` holds each (redacted URL, its error), in order."""

    def __init__(
        self,
        message: str,
        hint: Optional[str] = None,
        *,
        failures: Sequence[tuple[str, BaseException]] = (),
    ) -> None:
        super().__init__(message, hint)
        self.failures = tuple((redact_url(url), error) for url, error in failures)


class NotInFolder(SourceError):
    """``--from DIR`` lacks files the dataset needs: the source failed to provide them, as a
    404 from a URL base does (exit 4, like RemoteNotFound)."""


class OfflineError(SourceError):
    pass


class IntegrityError(DatastageError):
    exit_code = 5


class ChecksumMismatch(IntegrityError):
    """Bytes whose digest is not the expected one: ``expected`` and ``actual`` are "alg:hex";
    ``url`` is where the bytes came from, when one URL did."""

    def __init__(
        self,
        message: str,
        hint: Optional[str] = None,
        *,
        expected: Optional[str] = None,
        actual: Optional[str] = None,
        url: Optional[str] = None,
    ) -> None:
        super().__init__(message, hint)
        self.expected = expected
        self.actual = actual
        self.url = _redacted(url)


class SizeMismatch(IntegrityError):
    """Bytes (or an announced length) of another size: ``expected`` and ``actual`` in bytes;
    ``url`` is where they came from, when one URL did."""

    def __init__(
        self,
        message: str,
        hint: Optional[str] = None,
        *,
        expected: Optional[int] = None,
        actual: Optional[int] = None,
        url: Optional[str] = None,
    ) -> None:
        super().__init__(message, hint)
        self.expected = expected
        self.actual = actual
        self.url = _redacted(url)


class VerifyFailed(IntegrityError):
    pass


class DamagedBlob(IntegrityError):
    """Cache blobs whose bytes no longer match the sha256 they are named by (altered on disk).
    ``blobs`` are the cache.Blob values (path, size, the expected sha256), so the caller can
    drop them and fetch them again."""

    def __init__(
        self, message: str, blobs: tuple[Any, ...] = (), hint: Optional[str] = None
    ) -> None:
        super().__init__(message, hint)
        self.blobs = blobs


class ArchiveError(DatastageError):
    exit_code = 6


class UnsafeArchiveMember(ArchiveError):
    pass


class CorruptArchive(ArchiveError):
    """A truncated or damaged archive; ``path`` is the archive as the message names it."""

    def __init__(
        self, message: str, hint: Optional[str] = None, *, path: Optional[str] = None
    ) -> None:
        super().__init__(message, hint)
        self.path = path


class UnsupportedArchive(ArchiveError):
    pass


class ArchiveTooLarge(ArchiveError):
    pass


class InsufficientSpace(DatastageError):
    exit_code = 7

    def __init__(self, where: str, needed: Optional[int], free: int, what: str = "") -> None:
        from .units import human_bytes

        what = f" {what}" if what else ""
        need = f"need {human_bytes(needed)}" if needed else "the disk filled up"
        super().__init__(
            f"not enough disk space in {where}{what}: {need}, {human_bytes(free)} free",
            hint="free some space, or choose another folder with --to / --cache",
        )
        self.path = where
        self.needed = needed
        self.free = free


class LockTimeout(DatastageError):
    exit_code = 8


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # datastage/


def raised_in(e: BaseException, folder: str = _PACKAGE_DIR) -> bool:
    """Whether the innermost frame of ``e``'s traceback is code under ``folder`` (default:
    datastage's own). Tells our bug from a library choking on the bytes it was given."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename.startswith(folder + os.sep)


# The public name of these classes is ``datastage.errors`` (a stable import path for users,
# registered by datastage/__init__.py), whatever module of the package defines them.
for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, DatastageError):
        _cls.__module__ = "datastage.errors"
del _cls
