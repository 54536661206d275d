"""One failed file of a multi-file get stops the others (their .part stays for a rerun)."""

from __future__ import annotations

from tests.conftest import payload, run_cli, sha256, write_manifest


def test_a_failed_file_stops_the_other_downloads(tmp_path, server, cache_dir):
    big = payload(4 * 1024 * 1024)
    slow = server.add("/slow.bin", big, rate=256 * 1024)  # 16 s to send it all
    missing = f"{server.base}/missing.bin"
    files = [
        {"url": slow, "sha256": sha256(big), "extract": False},
        {"url": missing, "sha256": sha256(b"x"), "extract": False},
    ]
    manifest = write_manifest(tmp_path, "two", files)
    done = run_cli("get", str(manifest), "--to", str(tmp_path / "out"), timeout=12)
    assert done.returncode == 4, done.stderr
    assert "404" in done.stderr and "missing.bin" in done.stderr
    assert "stopped" not in done.stderr, "the real failure is reported, not the cancellation"
    assert not (tmp_path / "out" / "two").exists()
    sent = sum(r.sent for r in server.requests_for("/slow.bin"))
    assert sent < len(big), "the slow file was not downloaded to the end"
    assert list((cache_dir / "partial").glob("*.part")), "its partial file is kept for a rerun"
