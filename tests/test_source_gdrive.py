"""Google Drive: page recognition on saved pages, transfers against a loopback Drive stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import payload, run_cli, sha256
from tests.servers.gdrive_server import DriveServer, page

pytest.importorskip("gdown")

FILE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"  # Drive ids are 33 characters
BIG_ID = "1BigFileForTheVirusScanInterstit0"
SUB_ID = "1SubFolderOfTheSpeechFolderXYZ012"
FOLDER_ID = "1SpeechFolderIdForTestsAbCdEfGh01"
DATA = payload(150_000, seed=21)
BIG = payload(400_000, seed=22)


@pytest.fixture
def drive(monkeypatch: pytest.MonkeyPatch) -> Iterator[DriveServer]:
    server = DriveServer()
    monkeypatch.setenv("DATASTAGE_GDRIVE_ENDPOINT", server.base)
    yield server
    server.close()


def _root(stdout: str) -> Path:
    return Path(stdout.strip().splitlines()[-1])


# -- page recognition on the saved pages ------------------------------------------------------


def test_virus_scan_form_yields_the_download_url() -> None:
    from datastage.sources.gdrive import recognise

    url = recognise(page("virus_scan", id=FILE_ID, name="a.zip", size_text="2G").decode(), "u")
    assert url is not None
    assert url.startswith("https://drive.usercontent.google.com/download?")
    assert f"id={FILE_ID}" in url and "confirm=t" in url and "uuid=" in url


def test_old_confirm_link_yields_the_download_url() -> None:
    from datastage.sources.gdrive import recognise

    url = recognise(page("old_confirm", id=FILE_ID, name="a.zip", size_text="2G").decode(), "u")
    assert url == f"https://docs.google.com/uc?export=download&confirm=Xk3z&id={FILE_ID}"


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("quota", "QuotaExceeded", "quota exceeded"),
        ("signin", "AccessDenied", "asks to sign in"),
        ("permission", "AccessDenied", "denies access"),
        ("notfound", "RemoteNotFound", "has no file"),
    ],
)
def test_refusal_pages_are_recognised(name: str, error: str, words: str) -> None:
    from datastage.core import errors
    from datastage.sources.gdrive import recognise

    with pytest.raises(getattr(errors, error)) as caught:
        recognise(page(name, id=FILE_ID).decode(), "gdrive://x")
    assert words in str(caught.value)
    assert name == "notfound" or caught.value.hint


def test_an_unknown_page_is_unexpected_html() -> None:
    from datastage.core.errors import UnexpectedHTML
    from datastage.sources.gdrive import recognise

    with pytest.raises(UnexpectedHTML):
        recognise("<!DOCTYPE html><html><body><p>Something new</p></body></html>", "u")


def test_links_and_ids() -> None:
    from datastage.sources.gdrive import file_id_of

    assert file_id_of(f"https://drive.google.com/file/d/{FILE_ID}/view?usp=sharing") == (
        FILE_ID,
        False,
    )
    assert file_id_of(f"https://drive.google.com/uc?id={FILE_ID}&export=download")[0] == FILE_ID
    assert file_id_of(f"https://drive.google.com/drive/folders/{FOLDER_ID}?usp=sharing") == (
        FOLDER_ID,
        True,
    )
    assert file_id_of(f"gdrive://{FILE_ID}") == (FILE_ID, None)


# -- transfers against the loopback stand-in ------------------------------------------------


def test_share_link_one_liner(drive: DriveServer, tmp_path: Path) -> None:
    drive.add_file(FILE_ID, "clips.bin", DATA)
    link = f"https://drive.google.com/file/d/{FILE_ID}/view?usp=sharing"
    result = run_cli("get", link, "--to", str(tmp_path), "--sha256", sha256(DATA), "-q")
    assert result.returncode == 0, result.stderr
    root = _root(result.stdout)
    assert root.name == "clips" and (root / "clips.bin").read_bytes() == DATA


def test_virus_scan_interstitial_is_passed_and_ranges_work(drive: DriveServer) -> None:
    from datastage.settings import config
    from datastage.sources import for_url

    drive.add_file(BIG_ID, "big.bin", BIG, mode="confirm")
    source = for_url(f"gdrive://{BIG_ID}", config.resolve())
    [f] = source.list(f"gdrive://{BIG_ID}")
    assert (f.name, f.size) == ("big.bin", len(BIG)) and f.etag
    body = source.open_range(f, 123_456)
    assert body.offset == 123_456 and body.remote.url == f"gdrive://{BIG_ID}"
    assert b"".join(body) == BIG[123_456:]
    assert any(line.startswith("/download ") for line in drive.log)


def test_old_confirm_link_is_followed(drive: DriveServer, tmp_path: Path) -> None:
    drive.add_file(BIG_ID, "big.bin", BIG, mode="old_confirm")
    result = run_cli("get", f"gdrive://{BIG_ID}", "--to", str(tmp_path), "-q")
    assert result.returncode == 0, result.stderr
    assert (_root(result.stdout) / "big.bin").read_bytes() == BIG


@pytest.mark.parametrize(
    ("mode", "words", "hint"),
    [
        ("quota", "error: Google Drive quota exceeded", "Make a copy"),
        ("signin", "error: Google Drive asks to sign in", "Anyone with the link"),
        ("permission", "error: Google Drive denies access", "Anyone with the link"),
    ],
)
def test_refusals_are_one_line_errors_and_never_saved(
    drive: DriveServer, tmp_path: Path, cache_dir: Path, mode: str, words: str, hint: str
) -> None:
    drive.add_file(FILE_ID, "clips.bin", DATA, mode=mode)
    result = run_cli("get", f"https://drive.google.com/uc?id={FILE_ID}", "--to", str(tmp_path))
    assert result.returncode == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(words) and lines[1].startswith("hint: ") and hint in lines[1]
    saved = [p for p in cache_dir.rglob("*") if p.is_file() and p.stat().st_size > 0]
    assert not any(b"<html" in p.read_bytes().lower() for p in saved)


def test_quota_reached_half_way_is_recognised(drive: DriveServer) -> None:
    from datastage.core.errors import QuotaExceeded
    from datastage.settings import config
    from datastage.sources import for_url

    drive.add_file(BIG_ID, "big.bin", BIG, mode="confirm")
    source = for_url(f"gdrive://{BIG_ID}", config.resolve())
    [f] = source.list(f"gdrive://{BIG_ID}")
    drive.quota_now = True
    with pytest.raises(QuotaExceeded):
        source.open_range(f, 200_000)


def test_folder_with_subfolder_and_more_than_fifty_files(
    drive: DriveServer, tmp_path: Path
) -> None:
    children: list[tuple[str, str, bool]] = []
    for i in range(55):
        ident = f"1FileNumber{i:03d}OfTheSpeechFolderX"
        drive.add_file(ident, f"f{i:03d}.txt", f"file {i}\n".encode())
        children.append((ident, f"f{i:03d}.txt", False))
    drive.add_file(FILE_ID, "deep.bin", DATA)
    drive.add_folder(SUB_ID, "sub", [(FILE_ID, "deep.bin", False)])
    drive.add_folder(FOLDER_ID, "Speech", [*children, (SUB_ID, "sub", True)])
    link = f"https://drive.google.com/drive/folders/{FOLDER_ID}?usp=sharing"
    result = run_cli("get", link, "--to", str(tmp_path), "--name", "speech", "-q")
    assert result.returncode == 0, result.stderr
    root = _root(result.stdout)
    assert (root / "sub" / "deep.bin").read_bytes() == DATA
    texts = sorted(p.name for p in root.glob("f*.txt"))
    assert len(texts) == 55 and (root / "f054.txt").read_text() == "file 54\n"


def test_unknown_file_is_not_found(drive: DriveServer, tmp_path: Path) -> None:
    result = run_cli("get", f"gdrive://{FILE_ID}", "--to", str(tmp_path))
    assert result.returncode == 4
    assert result.stderr.startswith("error: Google Drive has no file at"), result.stderr


def test_broken_transfer_resumes_with_a_range(drive: DriveServer, tmp_path: Path) -> None:
    drive.add_file(BIG_ID, "big.bin", BIG, mode="confirm")
    drive.drop_after = 150_000
    from datastage import api

    root = api.get(f"gdrive://{BIG_ID}", to=tmp_path, quiet=True, sha256=sha256(BIG))
    assert (root / "big.bin").read_bytes() == BIG
    ranges = [line for line in drive.log if line.startswith("/download ")]
    assert any(line.endswith("bytes=150000-") for line in ranges), ranges
