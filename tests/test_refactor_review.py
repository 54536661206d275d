"""Found by reviewing the issue-12 refactor against the tree before it (4fa9787): errors that
could not cross a process boundary; hostile or broken answers (Hub, S3, Drive) that ended as an
internal error or a manifest error instead of the remote's failure; a stage SRC copy left
behind, hidden and unresumable, after a refusal at the swap."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

import datastage
from datastage.core.errors import (
    AllMirrorsFailed,
    InsufficientSpace,
    InvalidManifest,
    RemoteNotFound,
)
from tests.conftest import run_cli, write_manifest
from tests.servers.http_server import FileServer
from tests.servers.ranged import LoopbackServer, send_simple

#: Unpickles stdin in a fresh interpreter (as a multiprocessing parent does) and says what came.
UNPICKLE = (
    "import pickle, sys\n"
    "e = pickle.loads(sys.stdin.buffer.read())\n"
    "failures = [(u, type(f).__name__, getattr(f, 'status', None)) for u, f in "
    "getattr(e, 'failures', ())]\n"
    "print(type(e).__module__, type(e).__name__, repr(str(e)), failures, e.hint, "
    "getattr(e, 'needed', None), getattr(e, 'problems', None), sep='|')\n"
)


def _unpickled_elsewhere(error: BaseException) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", UNPICKLE], input=pickle.dumps(error), capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip().split("|")


def test_the_error_of_a_file_whose_mirrors_all_failed_crosses_a_process_boundary(
    tmp_path: Path,
) -> None:
    """A worker process's ``datastage.get`` error reaches its parent by pickle. The failures
    AllMirrorsFailed now carries hold HTTPStatusErrors, whose ``__init__`` takes a status:
    the default unpickling called ``RemoteNotFound(message)`` and raised TypeError (a
    multiprocessing pool then hangs on the result it cannot read)."""
    server = FileServer()
    try:
        urls = [f"{server.base}/gone-{i}.bin" for i in range(2)]
        manifest = write_manifest(
            tmp_path, "ds", [{"url": urls[0], "mirrors": urls[1:], "name": "f.bin"}]
        )
        with pytest.raises(datastage.errors.AllMirrorsFailed) as caught:
            datastage.get(str(manifest), to=tmp_path / "to", quiet=True)
    finally:
        server.close()
    module, kind, text, failures, *_ = _unpickled_elsewhere(caught.value)
    assert (module, kind) == ("datastage.errors", "AllMirrorsFailed")
    assert text == repr(str(caught.value)) and "all 2 sources of f.bin failed" in text
    assert failures == repr([(url, "RemoteNotFound", 404) for url in urls])


@pytest.mark.parametrize(
    "error",
    [
        InsufficientSpace("/data", 10 << 30, 1 << 20, "to stage ds"),
        RemoteNotFound("no such file: https://h/x", 404),
        InvalidManifest("ds.toml", [("files[0].url", "missing"), ("name", "empty")]),
        AllMirrorsFailed("all 1 sources failed", failures=[("https://h/x", OSError("boom"))]),
    ],
    ids=lambda e: type(e).__name__,
)
def test_every_error_survives_pickling_with_its_fields(error: datastage.DatastageError) -> None:
    error.hint = "a hint"
    module, kind, text, _, hint, needed, problems = _unpickled_elsewhere(error)
    assert (module, kind, text, hint) == ("datastage.errors", type(error).__name__,
                                          repr(str(error)), "a hint")  # fmt: skip
    assert needed == str(getattr(error, "needed", None))
    assert problems == str(getattr(error, "problems", None))
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error) and repr(vars(again)) == repr(vars(error))


# -- a Hub answer huggingface_hub accepts, but that datastage's own code choked on ----------


class _OneAnswer(LoopbackServer):
    """Answers every request with ``answer`` (JSON), as a broken or hostile Hub mirror."""

    answer: object = None

    class handler(BaseHTTPRequestHandler):
        state: _OneAnswer

        def do_GET(self) -> None:
            body = json.dumps(self.state.answer).encode()
            send_simple(self, 200, body, content_type="application/json")


@pytest.fixture
def odd_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[_OneAnswer]:
    pytest.importorskip("huggingface_hub")
    server = _OneAnswer()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield server
    server.close()


COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ({"id": "org/x", "sha": COMMIT, "siblings": [{"rfilename": 5}]}, "file name 5"),
        ({"id": "org/x", "sha": 5, "siblings": [{"rfilename": "a.bin", "size": 3}]}, "commit 5"),
        (
            {"id": "org/x", "sha": COMMIT, "siblings": [{"rfilename": "a.bin", "size": "big"}]},
            "size 'big' of 'a.bin'",
        ),
        (
            {
                "id": "org/x",
                "sha": COMMIT,
                "siblings": [
                    {"rfilename": "a.bin", "lfs": {"size": 3, "sha256": 7, "pointerSize": 1}}
                ],
            },
            "sha256 7 of 'a.bin'",
        ),
    ],
    ids=["name", "commit", "size", "lfs-sha256"],
)
def test_a_hub_listing_of_the_wrong_types_is_that_remotes_failure(
    odd_hub: _OneAnswer, tmp_path: Path, answer: object, said: str
) -> None:
    """Was an internal error (exit 1, "report the traceback") or a manifest error (exit 3,
    "manifest: 2 problems") for what is the endpoint's fault: one error line, exit 4."""
    odd_hub.answer = answer
    result = run_cli(
        "get", "hf://datasets/org/x", "--to", str(tmp_path / "to"), "--hf-endpoint", odd_hub.base,
        env={"DATASTAGE_RETRIES": "0"},
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: {odd_hub.base} failed for dataset repo org/x: "), first
    assert f"unexpected answer: {said}" in first
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert not (tmp_path / "to").exists() or not any((tmp_path / "to").iterdir())


# -- an S3 endpoint answering 412 or 416 to requests that sent no IfMatch or Range ----------


def _s3_error(code: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        "<Message>refused</Message></Error>"
    ).encode()


class _OneRefusal(LoopbackServer):
    """Answers every request with ``status`` and S3's error document for ``code``."""

    status, code = 412, "PreconditionFailed"

    class handler(BaseHTTPRequestHandler):
        state: _OneRefusal

        def refuse(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            send_simple(self, self.state.status, _s3_error(self.state.code), "application/xml")

        do_GET = do_HEAD = do_PUT = do_POST = refuse


@pytest.mark.parametrize(
    ("status", "code"), [(412, "PreconditionFailed"), (416, "InvalidRange")], ids=str
)
@pytest.mark.parametrize("target", ["s3://b/p/d.bin", "s3://b/p/"], ids=["key", "prefix"])
def test_an_s3_answer_to_a_question_not_asked_is_that_remotes_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int, code: str, target: str
) -> None:
    """S3 answers "the object changed" and "past the end" to a ranged, IfMatch'ed GET
    (open_range restarts or ends on them). To a HEAD or a listing they escaped as private
    exceptions: "internal error: _Precondition", exit 1."""
    pytest.importorskip("boto3")
    server = _OneRefusal()
    server.status, server.code = status, code
    for name, value in {
        "AWS_ENDPOINT_URL": server.base,
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        result = run_cli(
            "get", target, "--to", str(tmp_path / "to"), env={"DATASTAGE_RETRIES": "0"}
        )
    finally:
        server.close()
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith(f"error: S3 error for {target}: "), result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def _listing(contents: str) -> bytes:
    return (
        '<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        "<Name>b</Name><Prefix>p/</Prefix><KeyCount>1</KeyCount><IsTruncated>false</IsTruncated>"
        f"<Contents>{contents}</Contents></ListBucketResult>"
    ).encode()


class _OneListing(LoopbackServer):
    """Answers every GET with ``listing`` (a ListObjectsV2 result), as a broken endpoint."""

    listing = b""

    class handler(BaseHTTPRequestHandler):
        state: _OneListing

        def do_GET(self) -> None:
            send_simple(self, 200, self.state.listing, "application/xml")


@pytest.mark.parametrize(
    ("contents", "said"),
    [
        ("<Key>p/a</Key><Size>x</Size>", "ValueError: invalid literal for int()"),
        ("<Size>5</Size>", "unexpected entry {'Size': 5}"),
        ("<Key>p/a</Key>", "unexpected entry {'Key': 'p/a'}"),
    ],
    ids=["size-not-a-number", "no-key", "no-size"],
)
def test_an_s3_listing_botocore_or_datastage_chokes_on_is_that_remotes_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, contents: str, said: str
) -> None:
    """botocore's parser raising ValueError on a listing was not translated at all (the s3
    source caught only botocore's own classes), and an entry without a Key or Size was a
    KeyError in datastage's code: both "internal error", exit 1."""
    pytest.importorskip("boto3")
    server = _OneListing()
    server.listing = _listing(contents)
    for name, value in {
        "AWS_ENDPOINT_URL": server.base,
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        result = run_cli("get", "s3://b/p/", "--to", str(tmp_path / "to"))
    finally:
        server.close()
    assert result.returncode == 4, result.stderr
    assert result.stderr.startswith(f"error: S3 request for s3://b/p/ failed: {said}")
    assert len(result.stderr.splitlines()) == 1


def test_an_empty_drive_folder_is_the_remotes_answer_not_a_manifest_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Drive folder link whose page lists no file was "manifest: files: needs at least one
    [[files]] entry" (exit 3, about a manifest the user never wrote); as an empty S3 prefix
    or fsspec folder: nothing there, exit 4."""
    from tests.servers.gdrive_server import DriveServer

    folder = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"
    server = DriveServer()
    server.add_folder(folder, "Empty", [])
    monkeypatch.setenv("DATASTAGE_GDRIVE_ENDPOINT", server.base)
    try:
        url = f"https://drive.google.com/drive/folders/{folder}"
        result = run_cli("get", url, "--to", str(tmp_path / "to"))
    finally:
        server.close()
    assert result.returncode == 4, result.stderr
    assert result.stderr == f"error: no files in Google Drive folder {folder}\n"


def test_a_stage_refused_at_the_swap_leaves_no_unresumable_copy_behind(tmp_path: Path) -> None:
    """stage SRC keeps its partial folder on failure, for the next run to resume, but the swap
    comes after its journal and owner record are removed: a refusal there (a user's file saved
    into DIR/<name> during the copy) left a complete, hidden copy that no later run would
    resume or remove. It goes now; the re-run copies again and leaves only the dataset."""
    from tests.procs import wait_for

    root = Path(__file__).resolve().parents[1]
    src, to = tmp_path / "src", tmp_path / "fast"
    src.mkdir()
    for i in range(40):
        (src / f"f{i:02d}.bin").write_bytes(bytes([i]) * 40_000)  # 1.6 MB at 2 MB/s
    slow = {"SLOW_MOUNT_DIR": str(src), "SLOW_MOUNT_RATE": str(2 << 20)}
    path = os.pathsep.join([str(root / "tests" / "slowmount"), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "datastage", "stage", str(src), "--to", str(to), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **slow, "PYTHONPATH": path},
    )
    journals = lambda: list(to.glob(".src.partial-*/.datastage-journal.jsonl"))  # noqa: E731
    wait_for(lambda: bool(journals()) and journals()[0].stat().st_size > 0, proc, timeout=60,
             what="the copy under way")  # fmt: skip
    (to / "src").mkdir()
    (to / "src" / "results.csv").write_text("mine")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "is not a datastage dataset" in err
    assert (to / "src" / "results.csv").read_text() == "mine"
    assert sorted(p.name for p in to.iterdir()) == ["src"]  # was: + a hidden full copy
    (to / "src" / "results.csv").unlink()
    (to / "src").rmdir()
    again = run_cli("stage", str(src), "--to", str(to))
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in to.iterdir()) == ["src"]
    assert (to / "src" / "f39.bin").read_bytes() == bytes([39]) * 40_000
