"""Mirrors over real loopback servers: fallback on 404 / HTML / digest mismatch, preference,
segments spread over mirrors that serve the same bytes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import datastage
from datastage.core.errors import AllMirrorsFailed
from tests.conftest import payload, run_cli, sha256, write_manifest
from tests.servers.http_server import FileServer

MIB = 1024 * 1024


@pytest.fixture
def server2() -> Iterator[FileServer]:
    s = FileServer()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASTAGE_MIN_SEGMENT", "256K")
    monkeypatch.setenv("DATASTAGE_PROBE", "0")
    monkeypatch.setenv("DATASTAGE_CONNECTIONS", "4")
    # The fallbacks in the manifest's order; ranking by speed is test_mirror_probe.py's.
    monkeypatch.setenv("DATASTAGE_MIRROR", "listed")


def _manifest(tmp_path, urls, data, pinned=True):  # type: ignore[no-untyped-def]
    entry = {"url": urls[0], "mirrors": list(urls[1:]), "extract": False, "name": "f.bin"}
    if pinned:
        entry["sha256"] = sha256(data)
    return write_manifest(tmp_path, "m", [entry])


@pytest.mark.parametrize("size", [MIB, 4 * MIB], ids=["one-stream", "segmented"])
@pytest.mark.parametrize("fault", ["404", "html", "wrong-bytes"])
def test_a_failing_mirror_is_dropped_for_the_next(tmp_path, server, server2, capsys, fault, size):
    data = payload(size)
    if fault == "404":
        bad = server.url("/missing.bin")
    elif fault == "html":
        bad = server.add("/f.bin", data, html=True)
    else:
        bad = server.add("/f.bin", payload(size, seed=99))  # same size, other bytes
    good = server2.add("/f.bin", data)
    (blob,) = datastage.fetch(str(_manifest(tmp_path, [bad, good], data)))
    assert blob.read_bytes() == data
    assert server.log, "the first URL was tried"
    assert "trying the next mirror" in capsys.readouterr().err


def test_every_failure_is_named_when_all_mirrors_fail(tmp_path, server, server2):
    data = payload(MIB)
    missing = server.url("/gone.bin")
    html = server.add("/page.bin", data, html=True)
    wrong = server2.add("/f.bin", payload(MIB, seed=5))
    manifest = _manifest(tmp_path, [missing, html, wrong], data)
    with pytest.raises(AllMirrorsFailed) as caught:
        datastage.fetch(str(manifest))
    message = str(caught.value)
    assert message.startswith("all 3 sources of f.bin failed")
    assert f"{missing}: HTTP 404" in message
    assert f"{html}: {html} returned an HTML page" in message
    assert f"{wrong}: checksum mismatch" in message

    done = run_cli("fetch", str(manifest))
    assert done.returncode == 4
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: all 3 sources of f.bin failed")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_preferred_mirror_is_tried_first(tmp_path, server, server2, how):
    data = payload(MIB)
    urls = [server.add("/f.bin", data), server2.add("/f.bin", data)]
    manifest = _manifest(tmp_path, urls, data)
    preferred = f"127.0.0.1:{server2.port}"
    if how == "flag":
        done = run_cli("fetch", str(manifest), "--mirror", preferred)
    else:
        done = run_cli("fetch", str(manifest), env={"DATASTAGE_MIRROR": preferred})
    assert done.returncode == 0, done.stderr
    assert not server.log and len(server2.log) == 1


def test_segments_are_spread_over_identical_mirrors(tmp_path, server, server2):
    data = payload(6 * MIB)
    urls = [server.add("/f.bin", data), server2.add("/f.bin", data)]
    (blob,) = datastage.fetch(str(_manifest(tmp_path, urls, data)))
    assert blob.read_bytes() == data
    # the log is written as responses end, so no order: one request opened the file whole
    assert [r.range for r in server.log + server2.log].count(None) == 1
    assert any(r.range is None for r in server.log), "the primary URL is asked first"
    assert any(r.status == 206 for r in server2.log), "the mirror served segments too"
    assert all(r.status == 206 for r in server2.log)


def test_unpinned_files_are_not_mixed_across_mirrors(tmp_path, server, server2):
    data = payload(6 * MIB)
    urls = [server.add("/f.bin", data), server2.add("/f.bin", data)]
    (blob,) = datastage.fetch(str(_manifest(tmp_path, urls, data, pinned=False)))
    assert blob.read_bytes() == data
    assert not server2.log, "without a digest nothing proves the mirror's bytes are the same"


def test_mirror_failing_mid_download_is_dropped_and_the_rest_continues(
    tmp_path, server, server2, capsys
):
    data = payload(6 * MIB)
    url = server.add("/f.bin", data)
    mirror = server2.add("/f.bin", data, statuses=[404] * 50)
    (blob,) = datastage.fetch(str(_manifest(tmp_path, [url, mirror], data)))
    assert blob.read_bytes() == data
    assert "continuing f.bin from the other mirrors" in capsys.readouterr().err


def test_a_mirror_is_used_when_the_first_url_needs_a_missing_library(tmp_path, server):
    data = b"mirror bytes\n" * 100
    url = server.add("/f.txt", data)
    entry = {"url": "gs://no-such-bucket/f.txt", "mirrors": [url], "sha256": sha256(data)}
    manifest = write_manifest(tmp_path, "m", [entry])
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    assert "gcsfs" in done.stderr and "trying the next mirror" in done.stderr
    assert (tmp_path / "out" / "m" / "f.txt").read_bytes() == data
