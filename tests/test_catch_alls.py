"""Issue 12: a bug surfaces as a bug, not as "the remote failed" or a silently missing value;
bad input still ends in one error line; one one-line rule and one yes/no rule for the package."""

from __future__ import annotations

import binascii
from pathlib import Path
from typing import Any

import pytest

from datastage.core.errors import NetworkError, RemoteNotFound, SourceError
from datastage.core.text import boolean, one_line, switch
from datastage.settings import config
from tests.conftest import run_cli, sha256, write_manifest

# -- sources: a library's failure is translated, a bug is not --------------------------------


class QuotaError(Exception):
    """Stands for an error class a storage library defines (gcsfs.HttpError, ...)."""


@pytest.fixture
def buggy_fs() -> Any:
    """An fsspec backend ("buggyfs://") whose answers depend on the path asked for."""
    fsspec = pytest.importorskip("fsspec")
    from fsspec.implementations.memory import MemoryFileSystem

    class BuggyFS(MemoryFileSystem):
        protocol = "buggyfs"
        store: dict[str, Any] = {}  # its own, not the memory:// one
        pseudo_dirs = [""]

        @classmethod
        def _strip_protocol(cls, path: Any) -> Any:
            return super()._strip_protocol(str(path).replace("buggyfs://", "memory://", 1))

        def info(self, path: str, **kwargs: Any) -> Any:
            for word, error in FAILURES.items():
                if word in path and "read-" not in path:
                    raise error
            if "sizeless" in path:
                return ["an info that is not a mapping"]
            return super().info(path, **kwargs)

        def isdir(self, path: str) -> bool:
            return False if "sizeless" in path else bool(super().isdir(path))

        def _open(self, path: str, *args: Any, **kwargs: Any) -> Any:
            if "read-typeerror" in path and kwargs.get("mode", "rb") == "rb":
                raise TypeError("a bug in the backend's read")
            return super()._open(path, *args, **kwargs)

    fsspec.register_implementation("buggyfs", BuggyFS, clobber=True)
    fs = BuggyFS()
    fs.pipe("/read-typeerror.bin", b"x" * 10)
    return fs


FAILURES: dict[str, BaseException] = {
    "typeerror": TypeError("unsupported operand"),
    "keyerror": KeyError("size"),
    "quota": QuotaError("quota exceeded"),
    "refused": ValueError("bucket names may not contain '_'"),
    "gone": FileNotFoundError("gone"),
    "down": ConnectionError("connection refused"),
}


def test_fsspec_passes_bugs_through_and_translates_the_rest(buggy_fs: Any) -> None:
    from datastage.sources import RemoteFile
    from datastage.sources.fsspec import FsspecSource

    source = FsspecSource(config.resolve())
    # raised inside the backend (its parser choking on what the remote said): the remote failed
    for word in ("typeerror", "keyerror"):
        with pytest.raises(SourceError, match=type(FAILURES[word]).__name__):
            source.list(f"buggyfs://{word}.bin")
    body = source.open_range(RemoteFile("buggyfs://read-typeerror.bin", "x.bin"))
    with pytest.raises(SourceError, match="a bug in the backend's read"):
        b"".join(body)
    # raised by datastage's own code (here: on an info it cannot read): a bug, not "remote failed"
    with pytest.raises(AttributeError):  # was "cannot read ...: AttributeError", exit 4
        source.list("buggyfs://sizeless.bin")

    with pytest.raises(SourceError, match=r"QuotaError: quota exceeded"):
        source.list("buggyfs://quota.bin")
    with pytest.raises(SourceError, match=r"ValueError: bucket names may not"):
        source.list("buggyfs://refused.bin")
    with pytest.raises(RemoteNotFound):
        source.list("buggyfs://gone.bin")
    with pytest.raises(NetworkError):
        source.list("buggyfs://down.bin")


def test_hf_passes_bugs_through_and_translates_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    requests = pytest.importorskip("requests")
    from datastage.sources.hf import HFSource

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    failure: list[BaseException] = []

    def repo_info(*args: Any, **kwargs: Any) -> Any:
        raise failure[0]

    def repo_info_of_another_version(self: Any) -> Any:  # datastage's call no longer fits
        raise AssertionError("never reached")

    source = HFSource(config.resolve())
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", repo_info_of_another_version)
    with pytest.raises(TypeError):  # was "failed for dataset repo org/x: TypeError", exit 4
        source.list("hf://datasets/org/x")
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", repo_info)
    failure[:] = [requests.ConnectionError("connection refused")]
    with pytest.raises(NetworkError, match=r"cannot reach http://127\.0\.0\.1:9"):
        source.list("hf://datasets/org/x")
    # the library choking on a hostile Hub answer (e.g. `[]`) is that endpoint's failure
    failure[:] = [TypeError("list indices must be integers or slices, not str")]
    with pytest.raises(SourceError, match="TypeError"):
        source.list("hf://datasets/org/x")


# -- the narrowed catch-alls -------------------------------------------------------------------


def test_env_does_not_hide_a_to_it_cannot_use() -> None:
    """`env` used to show "(none: pass --to)" with exit 0 whatever resolving --to raised."""
    done = run_cli("env", env={"DATASTAGE_TO": "~no-such-user-datastage/data"})
    assert done.returncode != 0
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert "(none" not in done.stdout


#: A 7z archive (7z a -mhc=off -m0=copy) whose header starts with property 0x00 instead of
#: kHeader, CRCs fixed: py7zr's header parser raises TypeError("Unknown field") on it.
HOSTILE_7Z = binascii.unhexlify(
    "377abcaf271c0004"
    "6a360f8d"
    "06000000000000004200000000000000"
    "fbebb8c3"
    "68656c6c6f0a"  # the member's bytes, stored
    "0004060001090600070b01000101000c0600080a0120303a3600000501110d0061002e00740078007400"
    "0000140a0100c62a24419e7fdd01150601002080a4810000"
)


def test_a_hostile_7z_header_read_by_py7zr_is_one_archive_error(
    tmp_path: Path, datastage_cli: Any
) -> None:
    """No 7z tool and no bsdtar on PATH: py7zr lists (space check), checks methods and
    extracts; its TypeError on crafted bytes is the archive's fault (exit 6), not ours."""
    pytest.importorskip("py7zr")
    (tmp_path / "bad.7z").write_bytes(HOSTILE_7Z)
    manifest = write_manifest(tmp_path, "ds", [{"url": "bad.7z", "sha256": sha256(HOSTILE_7Z)}])
    empty = tmp_path / "no-tools"
    empty.mkdir()
    done = datastage_cli(
        "get", str(manifest), "--to", str(tmp_path / "out"), env={"PATH": str(empty)}
    )
    assert done.returncode == 6, done.stderr
    assert done.stderr.startswith("error: ") and "bad.7z is damaged" in done.stderr
    assert not (tmp_path / "out" / "ds").exists()


# -- one rule for one-line messages and for yes/no words ---------------------------------------


def test_one_line() -> None:
    assert one_line("a\n  b\tc\r\n") == "a b c"
    assert one_line(ValueError("bad\nthing")) == "bad thing"
    assert one_line(EOFError()) == "EOFError"  # never "damaged (7z): "
    assert one_line("x" * 500, limit=300) == "x" * 300
    assert one_line("") == ""


def test_boolean_and_switch() -> None:
    for word in ("1", "true", "YES", " on "):
        assert boolean(word) is True
    for word in ("0", "False", "no", "off"):
        assert boolean(word) is False
    for typo in ("ture", "", "2"):
        with pytest.raises(ValueError):
            boolean(typo)
    assert switch(None, default=True) is True and switch(" ", default=False) is False
    assert switch("off", default=True) is False and switch("2", default=False) is True


@pytest.mark.parametrize(
    "value, shown", [("1", True), ("yes", True), ("0", False), ("false", False)]
)
def test_debug_switch_reads_the_same_words(
    value: str, shown: bool, tmp_path: Path, datastage_cli: Any
) -> None:
    done = datastage_cli(
        "get", str(tmp_path / "missing.toml"), "--to", str(tmp_path), env={"DATASTAGE_DEBUG": value}
    )
    assert done.returncode != 0 and done.stderr.count("error: ") == 1
    assert ("Traceback" in done.stderr) is shown, done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["get", "demo", "--to", "~no-such-user-datastage/x"],
        ["stage", "~no-such-user-datastage/src", "--to", "/tmp"],
        ["get", "demo", "--to", "/tmp/x", "--cache", "~no-such-user-datastage/c"],
    ],
)
def test_a_tilde_user_that_does_not_exist_is_a_usage_error(args: list[str]) -> None:
    """pathlib raises RuntimeError for ~nosuchuser: it was an internal error, exit 1."""
    done = run_cli(*args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ~no-such-user-datastage: no such user")
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
