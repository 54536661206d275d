"""`datastage push` to an S3 prefix, and `get` on another machine pulling from it (moto server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from tests.conftest import payload, run_cli, sha256, write_manifest
from tests.servers.ranged import LoopbackServer, send_simple

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A real S3 endpoint on 127.0.0.1 (moto's threaded server) with a bucket ``team``."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    client = boto3.client("s3")
    client.create_bucket(Bucket="team")
    yield client
    server.stop()


def test_push_then_get_from_the_shared_prefix(tmp_path, server, s3, monkeypatch):
    data = payload(300_000, 7)
    url = server.add("/big.bin", data)
    manifest = write_manifest(
        tmp_path, "big", [{"url": url, "sha256": sha256(data), "extract": False}]
    )
    done = run_cli("push", str(manifest), "s3://team/datasets")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "s3://team/datasets/big/big.bin"
    assert s3.get_object(Bucket="team", Key="datasets/big/big.bin")["Body"].read() == data
    sidecar = json.loads(
        s3.get_object(Bucket="team", Key="datasets/big/big.bin.datastage.json")["Body"].read()
    )
    assert sidecar["digests"]["sha256"] == sha256(data) and sidecar["size"] == len(data)
    origin_requests = len(server.log)

    # Pushing again uploads nothing.
    again = run_cli("push", str(manifest), "s3://team/datasets")
    assert again.returncode == 0 and "already in s3://team/datasets/big/big.bin" in again.stderr

    # "Another machine": empty cache, the prefix configured first; the origin is not asked.
    monkeypatch.setenv("DATASTAGE_CACHE", str(tmp_path / "node2-cache"))
    assert run_cli("config", "set", "shared_cache", "s3://team/datasets").returncode == 0
    got = run_cli("get", str(manifest), "--to", str(tmp_path / "node2"))
    assert got.returncode == 0, got.stderr
    assert "from the shared cache" in got.stderr
    assert len(server.log) == origin_requests
    assert (tmp_path / "node2" / "big" / "big.bin").read_bytes() == data


def test_a_bad_object_in_the_shared_prefix_falls_back_to_the_origin(
    tmp_path, server, s3, monkeypatch
):
    data = payload(20_000, 3)
    url = server.add("/x.bin", data)
    manifest = write_manifest(tmp_path, "x", [{"url": url, "sha256": sha256(data)}])
    assert run_cli("push", str(manifest), "s3://team/p").returncode == 0
    s3.put_object(Bucket="team", Key="p/x/x.bin", Body=bytes(len(data)))  # corrupted in place
    monkeypatch.setenv("DATASTAGE_CACHE", str(tmp_path / "other-cache"))
    monkeypatch.setenv("DATASTAGE_SHARED_CACHE", "s3://team/p")
    before = len(server.requests_for("/x.bin"))
    got = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert got.returncode == 0, got.stderr
    assert "warning: ignoring the shared cache copy: checksum mismatch" in got.stderr
    assert len(server.requests_for("/x.bin")) == before + 1
    assert (tmp_path / "out" / "x" / "x.bin").read_bytes() == data


def test_push_to_a_bad_url_is_one_line(tmp_path):
    manifest = write_manifest(tmp_path, "x", [{"url": "http://127.0.0.1:9/x.bin"}])
    done = run_cli("push", str(manifest), "https://example.org/bucket")
    assert done.returncode == 2
    assert done.stderr.startswith("error: 'https://example.org/bucket' is not an S3 URL")


def test_push_to_a_missing_bucket_is_one_line(tmp_path, server, s3):
    data = payload(1000)
    manifest = write_manifest(
        tmp_path, "x", [{"url": server.add("/x.bin", data), "sha256": sha256(data)}]
    )
    done = run_cli("push", str(manifest), "s3://no-such-bucket/p")
    assert done.returncode == 4
    assert done.stderr.startswith("error: s3://no-such-bucket/p/x/x.bin: NoSuchBucket")


def test_a_broken_shared_cache_setup_falls_back_to_the_origin(tmp_path, server, monkeypatch):
    data = payload(50_000, 8)
    url = server.add("/f.bin", data)
    manifest = write_manifest(
        tmp_path, "f", [{"url": url, "sha256": sha256(data), "extract": False}]
    )
    monkeypatch.setenv("DATASTAGE_SHARED_CACHE", "s3://team/datasets")
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")  # boto3 cannot even make a client
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    got = run_cli("get", str(manifest), "--to", str(tmp_path / "out"))
    assert got.returncode == 0, got.stderr
    assert "shared cache unavailable" in got.stderr and "no-such-profile" in got.stderr
    assert (tmp_path / "out" / "f" / "f.bin").read_bytes() == data
    assert len(server.requests_for("/f.bin")) == 1


def test_a_prefix_with_query_like_characters_is_kept_whole(tmp_path, server, s3):
    """'?' and '#' are part of an S3 key: the shared cache's own URL parser used to cut the
    prefix there (urlsplit), so `push ... s3://team/a?b` wrote under s3://team/a/."""
    data = payload(2000, 5)
    manifest = write_manifest(
        tmp_path, "q", [{"url": server.add("/q.bin", data), "sha256": sha256(data)}]
    )
    done = run_cli("push", str(manifest), "s3://team/runs?v=2#x")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "s3://team/runs?v=2#x/q/q.bin"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team", Prefix="runs")["Contents"]]
    assert sorted(keys) == ["runs?v=2#x/q/q.bin", "runs?v=2#x/q/q.bin.datastage.json"]


class _DisabledBucket(BaseHTTPRequestHandler):
    """Every request answered as S3 answers a bucket whose access was disabled."""

    def _refuse(self) -> None:
        send_simple(self, 403, ALL_ACCESS_DISABLED, "application/xml")

    do_GET = do_HEAD = do_PUT = do_POST = _refuse


ALL_ACCESS_DISABLED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AllAccessDisabled</Code>'
    b"<Message>All access to this object has been disabled</Message></Error>"
)


def test_all_access_disabled_reads_as_access_denied_for_push_and_source(
    tmp_path, server, monkeypatch
):
    """One S3 error table: the shared cache did not know AllAccessDisabled (only the s3://
    source did) and called it a plain S3 error."""
    disabled = type("DisabledS3", (LoopbackServer,), {"handler": _DisabledBucket})()
    monkeypatch.setenv("AWS_ENDPOINT_URL", disabled.base)
    for name, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    data = payload(1000, 2)
    manifest = write_manifest(
        tmp_path, "d", [{"url": server.add("/d.bin", data), "sha256": sha256(data)}]
    )
    try:
        pushed = run_cli("push", str(manifest), "s3://closed/p")
        fetched = run_cli("get", "s3://closed/p/d.bin", "--to", str(tmp_path / "out"))
    finally:
        disabled.close()
    assert pushed.returncode == 4
    assert pushed.stderr.startswith(
        "error: s3://closed/p/d/d.bin: access denied (AllAccessDisabled)"
    )
    assert fetched.returncode == 4
    assert fetched.stderr.startswith("error: access denied to s3://closed/p/d.bin (")
