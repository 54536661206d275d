"""Issue 11 item 4: a URL's password and tokens are never printed or stored.

End to end against a loopback server that wants basic auth *and* a query token: every line
datastage prints and every file it writes (cache, target, persistent tier) is searched for the
secrets; the redacted form must be where it helps (errors, ``info``, records).
"""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import datastage
from datastage.core.redact import (
    is_secret_key,
    record_matches,
    redact_text,
    redact_url,
    same_url,
    url_fields,
)
from datastage.resolve import oneliner as direct
from tests.archives import make_tar
from tests.conftest import payload, run_cli, tree, write_manifest
from tests.servers.auth_server import AuthServer

PASSWORD = "pw-Sesame-7391"
TOKEN = "tok-Zanzibar-5521"
SIG = "sig-Qwerty-0846"
SECRETS = (PASSWORD, TOKEN, SIG)
REDACTED_QUERY = "?token=***&sig=***"


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    s = AuthServer("alice", PASSWORD, {"token": TOKEN, "sig": SIG})
    yield s
    s.close()


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _files_leaking(*roots: Path) -> list[str]:
    """Every file (and name) under ``roots`` that holds a secret."""
    paths = [path for root in roots for path in root.rglob("*")]
    text = {path: path.read_bytes().decode("latin-1") if path.is_file() else "" for path in paths}
    return [str(path) for path in paths if _leaks(str(path)) or _leaks(text[path])]


def _data(folder: Path) -> dict[str, str]:
    return {k: v for k, v in tree(folder).items() if not k.startswith(".datastage")}


def _redacted(url: str) -> str:
    """What datastage shows for one of ``auth_server``'s secret URLs."""
    return redact_url(url)


# -- the function ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pass@host/x?token=S", "https://***@host/x?token=***"),
        # port, IPv6 literal, presigned S3: the signature and credential go, expiry stays
        (
            "http://u:p@[2001:db8::1]:8443/x?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIA%2F20240101&X-Amz-Date=20240101T000000Z&X-Amz-Expires=900"
            "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=IQo&X-Amz-Signature=ab12",
            "http://***@[2001:db8::1]:8443/x?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=***&X-Amz-Date=20240101T000000Z&X-Amz-Expires=900"
            "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=***&X-Amz-Signature=***",
        ),
        ("http://[::1]:8080/x?a=1", "http://[::1]:8080/x?a=1"),  # nothing secret: unchanged
        # '@' in the password: percent-encoded, or not
        ("https://user:p%40ss@host:8443/x", "https://***@host:8443/x"),
        ("https://user:p@ss@host/x", "https://***@host/x"),
        # a password with an unescaped '/', '?' or '#' (host "user", bad port "ab")
        ("https://user:ab/cd@host/x", "https://***@host/x"),
        ("https://user:ab#cd@host/x", "https://***@host/x"),
        # a token as the user name (GitHub), a scheme-relative URL, no scheme at all
        ("https://ghp_abc123@github.com/o/r.tar", "https://***@github.com/o/r.tar"),
        ("//u:p@host/x?sig=1", "//***@host/x?sig=***"),
        ("user:pass@host/x?token=1", "***@host/x?token=***"),
        ("host/x?token=1&b=2", "host/x?token=***&b=2"),
        # s3:// with keys in it; hf://'s '@' is a revision, not a login
        ("s3://AKIA:wJalr@bucket/key.tar", "s3://***@bucket/key.tar"),
        ("hf://datasets/org/repo@v1.0/data/x.tar", "hf://datasets/org/repo@v1.0/data/x.tar"),
        ("hf://gpt2@main/model.bin", "hf://gpt2@main/model.bin"),
        # fragments, repeated keys, any case, percent-encoded names, empty values
        ("https://h/x#access_token=T&state=s", "https://h/x#access_token=***&state=s"),
        ("https://h/x?token=a&token=b&TOKEN=c", "https://h/x?token=***&token=***&TOKEN=***"),
        ("https://h/x?X%2DAmz%2DSignature=s&dl=1", "https://h/x?X%2DAmz%2DSignature=***&dl=1"),
        ("https://h/x?token=&key", "https://h/x?token=&key"),
        # Azure SAS: only sig; GCS v4 and v2; Drive's resourcekey; API keys
        (
            "https://a.blob.core.windows.net/c/b?sv=2022-11-02&se=2030-01-01&sp=r&sr=b&sig=Xy%3D",
            "https://a.blob.core.windows.net/c/b?sv=2022-11-02&se=2030-01-01&sp=r&sr=b&sig=***",
        ),
        (
            "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Credential=sa%40p.iam&X-Goog-Expires=600&X-Goog-Signature=9f",
            "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            "&X-Goog-Credential=***&X-Goog-Expires=600&X-Goog-Signature=***",
        ),
        (
            "https://storage.googleapis.com/b/o?GoogleAccessId=sa&Expires=1&Signature=a%2Bb",
            "https://storage.googleapis.com/b/o?GoogleAccessId=sa&Expires=1&Signature=***",
        ),
        (
            "https://drive.google.com/uc?id=1x&resourcekey=0-k&api_key=A&auth=B&password=C",
            "https://drive.google.com/uc?id=1x&resourcekey=***&api_key=***&auth=***&password=***",
        ),
        # a session id in the path; a login in a URL passed along in the query
        ("https://h/a;jsessionid=XYZ/b.tar", "https://h/a;jsessionid=***/b.tar"),
        (
            "https://h/go?next=https://u:p@h2/y?token=z&b=2",
            "https://h/go?next=https://***@h2/y?token=***&b=2",
        ),
        # not URLs, or broken ones: never an exception, nothing invented
        ("/data/set@v2/a.tar", "/data/set@v2/a.tar"),
        ("http://[::1/x", "http://[::1/x"),
        ("", ""),
        # review: a value runs to the next separator whatever it holds; a URL or a query
        # percent-encoded in a value; a key in full-width letters; short key names
        ('https://h/x?token="T T"<&a=1', "https://h/x?token=***&a=1"),
        ("https://h/x?next=https%3A%2F%2Fu%3Apw%40h2%2F&a=1", "https://h/x?next=***&a=1"),
        ("https://h/x?q=a%26token%3DS&a=1", "https://h/x?q=***&a=1"),
        ("https://h/x?\uff54oken=T", "https://h/x?\uff54oken=***"),
        ("https://h/x?pw=T&sid=S&otp=1&dl=1", "https://h/x?pw=***&sid=***&otp=***&dl=1"),
        # review: a list of URLs (HF_ENDPOINT), a URL inside a path; hf://'s '@' still stays
        ("http://u:p1@a,http://u:p2@b/", "http://***@a,http://***@b/"),
        ("https://w.org/web/1/http://u:p@h/x", "https://w.org/web/1/http://***@h/x"),
        ("hf://org/r/x,hf://gpt2@main/y", "hf://org/r/x,hf://gpt2@main/y"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert redact_url(expected) == expected  # idempotent: a record redacted twice is the same


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("token", True), ("access_token", True), ("Refresh-Token", True), ("sig", True),
        ("Signature", True), ("X-Amz-Security-Token", True), ("x-goog-credential", True),
        ("client_secret", True), ("API-KEY", True), ("apikey", True), ("AWSAccessKeyId", True),
        ("key", True), ("auth", True), ("authorization", True), ("password", True),
        ("X-Amz-Expires", False), ("X-Amz-Date", False), ("Expires", False), ("se", False),
        ("sp", False), ("sv", False), ("id", False), ("dl", False), ("format", False),
    ],
)  # fmt: skip
def test_secret_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_redact_text_finds_urls_and_bare_queries_in_messages() -> None:
    text = (
        "all 2 sources of x failed: https://u:pw@h/x.tar?token=T1: HTTP 404; "
        "(http://a:b@h2/y?sig=S2), HTTPConnectionPool(host='h3', port=9): Max retries exceeded "
        "with url: /z?X-Amz-Signature=S3&X-Amz-Expires=60 (Caused by ...); user:pw4@h4/w"
    )
    clean = redact_text(text)
    assert not any(s in clean for s in ("pw", "T1", "S2", "S3", ":b@", "pw4")), clean
    assert clean == (
        "all 2 sources of x failed: https://***@h/x.tar?token=***: HTTP 404; "
        "(http://***@h2/y?sig=***), HTTPConnectionPool(host='h3', port=9): Max retries exceeded "
        "with url: /z?X-Amz-Signature=***&X-Amz-Expires=60 (Caused by ...); ***@h4/w"
    )


def test_records_match_the_full_url_only() -> None:
    url = "https://u:p@h/x?token=A"
    fields = url_fields(url)
    assert fields["url"] == "https://***@h/x?token=***" and "p@" not in json.dumps(fields)
    assert record_matches(fields, url)
    assert not record_matches(fields, "https://u:p@h/x?token=B")  # a token may name the file
    assert record_matches({"url": url}, url)  # a record written before redaction
    assert same_url(fields["url"], url) and same_url(url, url) and not same_url(None, url)


# -- end to end --------------------------------------------------------------------------------


def test_failing_downloads_print_no_secret(tmp_path: Path, auth_server: AuthServer) -> None:
    """404, a refused mirror, a wrong token: error lines, warnings, mirror lists and the
    --debug traceback (requests names the path and query) show only the redacted URLs."""
    missing = auth_server.secret_url(auth_server.url("/missing.tar"))
    refused = f"http://bob:{PASSWORD}@127.0.0.1:9/x.tar?token={TOKEN}&X-Amz-Signature={SIG}"
    manifest = write_manifest(
        tmp_path, "private", [{"url": missing, "mirrors": [refused], "name": "x.tar"}]
    )
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "to"), "--debug")
    assert done.returncode == 4, done.stderr
    assert not _leaks(done.stdout + done.stderr), done.stderr
    assert "Traceback" in done.stderr  # the debug output is there, redacted
    error = done.stderr.splitlines()[-1]
    assert error.startswith("error: all 2 sources of x.tar failed")
    assert _redacted(missing) in error and "http://***@127.0.0.1:9/x.tar" in error
    assert f"{_redacted(missing)}: HTTP 404" in done.stderr  # the "next mirror" warning

    wrong = missing.replace("/missing.tar", "/x.tar").replace(TOKEN, "wrong")
    auth_server.add("/x.tar", b"data")
    done = run_cli("get", wrong, "--to", str(tmp_path / "to"))
    assert done.returncode == 4
    assert not _leaks(done.stderr) and "HTTP 403" in done.stderr and "token=***" in done.stderr


def test_python_api_errors_carry_no_secret_in_their_chain(tmp_path: Path) -> None:
    """A notebook prints the whole chain: requests' own exception names the query."""
    url = f"http://u:{PASSWORD}@127.0.0.1:9/x.tar?token={TOKEN}&sig={SIG}"
    with pytest.raises(datastage.DatastageError) as caught:
        datastage.get(url, to=tmp_path / "to")
    shown = "".join(traceback.format_exception(caught.type, caught.value, caught.tb))
    assert "Max retries exceeded with url: /x.tar?token=***&sig=***" in shown
    assert not _leaks(shown + str(caught.value) + repr(caught.value.args)), shown


def test_successful_get_stores_and_prints_no_secret(
    tmp_path: Path, auth_server: AuthServer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_tar({"a.wav": payload(3000, 1), "b.wav": payload(4000, 2)})
    url = auth_server.secret_url(auth_server.add("/ds.tar", archive))
    drive = tmp_path / "drive"
    monkeypatch.setenv("DATASTAGE_PERSISTENT_CACHE", str(drive))
    to = tmp_path / "to"

    done = run_cli("get", url, "--to", str(to))
    assert done.returncode == 0, done.stderr
    root = Path(done.stdout.strip())
    assert (root / "a.wav").read_bytes() == payload(3000, 1)
    assert not _leaks(done.stdout + done.stderr), done.stderr
    assert not _files_leaking(cache_dir, to, drive)

    # The records keep the redacted URL (for people) and still work as keys.
    shown = _redacted(url)
    assert shown.endswith("/ds.tar" + REDACTED_QUERY) and shown.startswith("http://***@")
    marker = json.loads((to / "ds" / ".datastage.json").read_text())
    assert [s["url"] for s in marker["sources"]] == [shown]
    (pin,) = (cache_dir / "pins").iterdir()
    assert json.loads(pin.read_text())["url"] == shown
    (index,) = (cache_dir / "index" / "url").iterdir()
    assert json.loads(index.read_text())["url"] == shown
    sidecar = json.loads((drive / "ds" / "ds.tar.datastage.json").read_text())
    assert sidecar["url"] == shown

    # info, plain and JSON
    for args in (("info", url), ("info", url, "--json")):
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        assert not _leaks(done.stdout + done.stderr) and shown in done.stdout

    # Keys still work: the cache's index (a staged copy gone) and pin; then a new session
    # (empty cache) finds the persistent copy by its sidecar. No request in either case.
    requests_before = len(auth_server.log)
    done = run_cli("get", url, "--to", str(tmp_path / "to2"))
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("DATASTAGE_CACHE", str(tmp_path / "cache-2"))
    done = run_cli("get", url, "--to", str(tmp_path / "to3"))
    assert done.returncode == 0, done.stderr
    assert "from the persistent tier" in done.stderr
    assert len(auth_server.log) == requests_before
    assert _data(tmp_path / "to3" / "ds") == _data(to / "ds") != {}
    assert not _files_leaking(tmp_path / "cache-2", tmp_path / "to2", tmp_path / "to3", drive)

    # Another token is another file: the sidecar of this one does not vouch for it.
    other = url.replace(TOKEN, TOKEN + "-2")
    monkeypatch.setenv("DATASTAGE_CACHE", str(tmp_path / "cache-3"))
    done = run_cli("get", other, "--to", str(tmp_path / "to4"))
    assert done.returncode == 4 and "HTTP 403" in done.stderr  # it went to the server


def test_an_interrupted_download_keeps_no_secret_and_resumes(
    tmp_path: Path, auth_server: AuthServer, cache_dir: Path
) -> None:
    data = payload(300_000, 3)
    url = auth_server.secret_url(
        auth_server.add("/big.bin", data, drop_after=100_000, drop_times=100)
    )
    to = tmp_path / "to"
    done = run_cli("get", url, "--to", str(to), env={"DATASTAGE_RETRIES": "0"})
    assert done.returncode == 4, done.stderr
    assert not _leaks(done.stderr)
    assert list((cache_dir / "partial").glob("*.json"))  # the resume state is kept ...
    assert not _files_leaking(cache_dir)  # ... without the secrets

    auth_server.faults("/big.bin")  # the server recovers
    done = run_cli("get", url, "--to", str(to))
    assert done.returncode == 0, done.stderr
    assert "resuming big.bin" in done.stderr  # the redacted state still names this URL
    assert auth_server.requests_for("/big.bin")[-1].range == "bytes=100000-"
    assert (Path(done.stdout.strip()) / "big.bin").read_bytes() == data


def test_records_written_before_redaction_still_work(
    tmp_path: Path, auth_server: AuthServer, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache and a persistent tier written by an older datastage hold the full URL."""
    archive = make_tar({"a.wav": payload(3000, 4)})
    url = auth_server.secret_url(auth_server.add("/ds.tar", archive))
    drive = tmp_path / "drive"
    monkeypatch.setenv("DATASTAGE_PERSISTENT_CACHE", str(drive))
    assert run_cli("get", url, "--to", str(tmp_path / "to")).returncode == 0
    records = [*(cache_dir / "pins").iterdir(), drive / "ds" / "ds.tar.datastage.json"]
    for path in records:  # as older versions wrote them
        record = json.loads(path.read_text())
        record.pop("url_sha256", None)
        path.write_text(json.dumps({**record, "url": url}))
    requests_before = len(auth_server.log)

    done = run_cli("get", url, "--to", str(tmp_path / "to2"))  # the pin is found and used
    assert done.returncode == 0 and "pinned on first use" not in done.stderr, done.stderr
    monkeypatch.setenv("DATASTAGE_CACHE", str(tmp_path / "cache-2"))
    done = run_cli("get", url, "--to", str(tmp_path / "to3"))
    assert done.returncode == 0 and "from the persistent tier" in done.stderr, done.stderr
    assert len(auth_server.log) == requests_before
    assert not _files_leaking(tmp_path / "to2", tmp_path / "to3")  # what they write is redacted


def test_env_shows_proxies_without_their_password(tmp_path: Path) -> None:
    proxies = {
        "https_proxy": f"http://u:{PASSWORD}@127.0.0.1:9/",
        "HTTP_PROXY": f"http://u:{TOKEN}@127.0.0.1:9",
        "all_proxy": f"socks5://{SIG}@127.0.0.1:1080",
    }
    for args in (("env",), ("env", "--json")):
        done = run_cli(*args, env=proxies)
        assert done.returncode == 0, done.stderr
        assert not _leaks(done.stdout + done.stderr), done.stdout
        assert "http://***@127.0.0.1:9/" in done.stdout
        assert "socks5://***@127.0.0.1:1080" in done.stdout


def test_registry_listings_show_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"https://u:{PASSWORD}@data.example/priv.tar?token={TOKEN}"
    registry = tmp_path / "registry"
    registry.mkdir()
    write_manifest(
        registry, "priv", [{"url": url}], homepage=f"https://data.example/?api_key={SIG}"
    )
    monkeypatch.setenv("DATASTAGE_REGISTRY", str(registry))
    for args in (("list", "--json"), ("list",), ("search", "priv"), ("info", "priv")):
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
        assert "priv" in done.stdout and not _leaks(done.stdout + done.stderr), done.stdout
    assert "https://***@data.example/priv.tar?token=***" in done.stdout
    assert "api_key=***" in done.stdout


# -- found in review ---------------------------------------------------------------------------


@pytest.mark.parametrize("odd", ['"', "'", " ", "<", "\\"])
def test_a_password_with_a_quote_or_a_space_is_never_printed(tmp_path: Path, odd: str) -> None:
    """Such a password works (requests percent-encodes it) but cut the URL short for the text
    patterns: the error line and the --debug traceback printed it."""
    password = f"pw{odd}{PASSWORD}"
    server = AuthServer("alice", password, {"token": TOKEN})
    try:
        server.add("/x.bin", payload(500, 5))
        url = server.secret_url(server.url("/x.bin")).replace(TOKEN, "wrong")
        manifest = write_manifest(tmp_path, "private", [{"url": url}])
        done = run_cli("get", str(manifest), "--to", str(tmp_path / "to"), "--debug")
    finally:
        server.close()
    assert done.returncode == 4, done.stderr
    assert "Traceback" in done.stderr and "http://***@127.0.0.1:" in done.stderr
    assert not _leaks(done.stdout + done.stderr), done.stderr
    if odd != "\\":  # a backslash is refused by urllib3 before any request
        assert "HTTP 403" in done.stderr

    with pytest.raises(datastage.DatastageError) as caught:  # the Python API, chain included
        datastage.get(str(manifest), to=tmp_path / "to")
    shown = "".join(traceback.format_exception(caught.type, caught.value, caught.tb))
    assert not _leaks(shown), shown


class _LongReasonHandler(BaseHTTPRequestHandler):
    """Answers 404 with a 55 KB reason phrase shaped like a query string."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(404, "?a=b&" * 11_000)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_hostile_reason_phrase_does_not_stall_redaction(tmp_path: Path) -> None:
    """The text patterns took time quadratic in a message's length: two mirrors answering
    with 55 KB reason phrases kept datastage busy for minutes (the run_cli timeout)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _LongReasonHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_port}"
        url, mirror = f"{base}/a.bin?token={TOKEN}", f"{base}/b.bin?sig={SIG}"
        manifest = write_manifest(tmp_path, "slow", [{"url": url, "mirrors": [mirror]}])
        done = run_cli("get", str(manifest), "--to", str(tmp_path / "to"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert done.returncode == 4, done.stderr[-500:]
    assert done.stderr.splitlines()[-1].startswith("error: all 2 sources of a.bin failed")
    assert "a.bin?token=***" in done.stderr and not _leaks(done.stderr)


def test_env_masks_every_url_of_a_list(tmp_path: Path) -> None:
    """HF_ENDPOINT takes a comma-separated list: the second URL's login was shown; and the
    shared cache's URL was shown as configured."""
    endpoints = f"http://u:{PASSWORD}@127.0.0.1:9,http://u:{TOKEN}@127.0.0.1:8"
    shared = f"s3://AKIA:{SIG}@bucket/cache"
    for args in (("env",), ("env", "--json")):
        done = run_cli(*args, env={"HF_ENDPOINT": endpoints, "DATASTAGE_SHARED_CACHE": shared})
        assert done.returncode == 0, done.stderr
        assert "http://***@127.0.0.1:9,http://***@127.0.0.1:8" in done.stdout
        assert "s3://***@bucket/cache" in done.stdout
        assert not _leaks(done.stdout + done.stderr), done.stdout


def test_listing_a_url_without_a_host_shows_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL without a host is refused when its manifest loads; the refusal names it masked."""
    registry = tmp_path / "registry"
    registry.mkdir()
    write_manifest(registry, "priv", [{"url": f"http://u:{PASSWORD}@:80/x.tar"}])
    monkeypatch.setenv("DATASTAGE_REGISTRY", str(registry))
    for args in (("list",), ("search", "priv")):
        done = run_cli(*args)
        assert done.returncode == 3, done.stderr
        assert "http://***@:80/x.tar" in done.stderr
        assert not _leaks(done.stdout + done.stderr), done.stderr


@pytest.mark.parametrize(
    ("url", "files", "name"),
    [
        (f"ftp://user:{PASSWORD}@host/", ["a/x.wav", "b.wav"], "host"),
        (f"ftp://user:{PASSWORD}@host/*.tar", ["a.tar", "b.tar"], "host"),
        (f"ftp://user:{PASSWORD}@host/clips/", ["a.wav", "b.wav"], "clips"),
        ("hf://datasets/org/repo@v1/*.parquet", ["a.parquet", "b.parquet"], "repo"),
    ],
)
def test_a_one_liner_is_never_named_after_its_login(url: str, files: list[str], name: str) -> None:
    """The staged folder, the names/ record and the printed path take this name."""
    assert direct.default_name(url, files) == name
