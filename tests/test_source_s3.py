"""S3 against moto's server mode on 127.0.0.1: real HTTP, real boto3, through the CLI and API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import payload, run_cli, sha256

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

BUCKET = "speech"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """(endpoint, client) of a fresh moto server with one bucket; credentials in the env."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    server.stop()


def test_key_one_liner_stages_the_file(s3: tuple[str, Any], tmp_path: Path) -> None:
    endpoint, client = s3
    data = payload(3 * 1024 * 1024 + 17, seed=1)
    client.put_object(Bucket=BUCKET, Key="raw/clip.bin", Body=data)
    result = run_cli(
        "get", f"s3://{BUCKET}/raw/clip.bin", "--to", str(tmp_path / "out"),
        "--s3-endpoint", endpoint, "--sha256", sha256(data), "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    root = Path(result.stdout.strip().splitlines()[-1])
    assert root == tmp_path / "out" / "clip"
    assert (root / "clip.bin").read_bytes() == data


def test_prefix_expands_into_a_tree(s3: tuple[str, Any], tmp_path: Path) -> None:
    endpoint, client = s3
    files = {"set/a.wav": payload(1000, 2), "set/sub/b.wav": payload(2000, 3), "other/c": b"x"}
    for key, body in files.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    result = run_cli(
        "get", f"s3://{BUCKET}/set/", "--to", str(tmp_path), "-q",
        env={"AWS_ENDPOINT_URL": endpoint},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    root = tmp_path / "set"
    assert (root / "a.wav").read_bytes() == files["set/a.wav"]
    assert (root / "sub" / "b.wav").read_bytes() == files["set/sub/b.wav"]
    assert not (root / "c").exists()


def test_ranged_reads_and_validator(s3: tuple[str, Any]) -> None:
    """What the segmented engine relies on: size, ETag, exact ranges, restart on change."""
    from datastage.settings import config
    from datastage.sources import for_url

    endpoint, client = s3
    data = payload(100_000, seed=4)
    client.put_object(Bucket=BUCKET, Key="k.bin", Body=data)
    source = for_url("s3://speech/k.bin", config.resolve(s3_endpoint=endpoint))
    [listed] = source.list(f"s3://{BUCKET}/k.bin")
    assert listed.size == len(data) and listed.etag
    body = source.open_range(listed, 1000, 1999)
    assert body.offset == 1000 and body.remote.size == len(data)
    assert b"".join(body) == data[1000:2000]
    client.put_object(Bucket=BUCKET, Key="k.bin", Body=data[::-1])  # the object changes
    body = source.open_range(listed, 5000)
    assert body.offset == 0 and b"".join(body) == data[::-1]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (f"s3://{BUCKET}/missing.bin", "no such key or prefix"),
        ("s3://no-such-bucket/x.bin", "no such"),
    ],
)
def test_missing_keys_and_buckets_are_one_line_errors(
    s3: tuple[str, Any], tmp_path: Path, url: str, words: str
) -> None:
    endpoint, _ = s3
    result = run_cli("get", url, "--to", str(tmp_path), "--s3-endpoint", endpoint)
    assert result.returncode == 4
    first = result.stderr.strip().splitlines()[0]
    assert first.startswith("error: ") and words in first, result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_endpoint_is_a_network_error(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    result = run_cli(
        "get", "s3://b/k.bin", "--to", str(tmp_path), "--s3-endpoint", "http://127.0.0.1:9",
        env={"DATASTAGE_RETRIES": "0", "AWS_MAX_ATTEMPTS": "1"},
    )  # fmt: skip
    assert result.returncode == 4
    assert result.stderr.startswith("error: cannot reach the S3 endpoint"), result.stderr


@pytest.fixture
def s3_with_auth(s3: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """The same server, now checking signatures and IAM (moto's own switch, in-process)."""
    from moto import settings

    endpoint, client = s3
    client.put_object(Bucket=BUCKET, Key="private.bin", Body=b"secret")
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    yield endpoint, client


def test_unknown_credentials_are_access_denied(
    s3_with_auth: tuple[str, Any], tmp_path: Path
) -> None:
    endpoint, _ = s3_with_auth
    result = run_cli(
        "get", f"s3://{BUCKET}/private.bin", "--to", str(tmp_path), "--s3-endpoint", endpoint,
        env={"AWS_ACCESS_KEY_ID": "AKIAUNKNOWN", "AWS_SECRET_ACCESS_KEY": "wrong"},
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: access denied to s3://{BUCKET}/private.bin"), lines
    assert lines[1].startswith("hint: check the bucket policy")


def test_missing_credentials_say_so(
    s3_with_auth: tuple[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, _ = s3_with_auth
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    result = run_cli(
        "get", f"s3://{BUCKET}/private.bin", "--to", str(tmp_path), "--s3-endpoint", endpoint,
        env=env,
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: access denied"), lines
    assert lines[1].startswith("hint: no AWS credentials were found"), lines
