"""The shipped registry: every manifest valid, facts matching the research fixture, subset
addressing, "did you mean", name clashes between registry folders and paths, list/info/search."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import datastage
from datastage import registry
from datastage.errors import DatasetNotFound, ManifestError
from datastage.manifest import from_dict, load
from tests.conftest import dedent, run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FACTS = json.loads((Path(__file__).parent / "fixtures" / "registry_facts.json").read_text())[
    "confirmed"
]
SHIPPED = sorted(p.stem for p in registry.builtin_dir().glob("*.toml"))
EXPECTED = {
    "ljspeech", "vctk", "hifitts", "libritts", "libritts-r", "librispeech",
    "aishell3", "ryanspeech", "jsut", "bznsyp",
}  # fmt: skip
NONCOMMERCIAL = {"aishell3", "ryanspeech", "jsut", "bznsyp", "kss"}
SUBSETS7 = [
    "dev-clean", "dev-other", "test-clean", "test-other",
    "train-clean-100", "train-clean-360", "train-other-500",
]  # fmt: skip


def _fact_key(dataset: str, raw: dict) -> str:
    """Facts are keyed by URL; a gated file or part (no URL) by "<dataset>/<file name>"."""
    return raw.get("url") or f"{dataset}/{raw['name']}"


def _raw_files(path: Path) -> list[dict]:
    """Every [[files]] table of a manifest, top level and subsets, as written."""
    data = tomllib.loads(path.read_text())
    tables = list(data.get("files", []))
    for sub in data.get("subsets", {}).values():
        tables += sub.get("files", [])
    return tables


def test_every_shipped_manifest_loads_and_is_complete():
    assert set(SHIPPED) >= EXPECTED
    for manifest in datastage.list_datasets():
        assert manifest.path is not None and manifest.path.parent == registry.builtin_dir()
        for field in ("description", "license"):
            assert getattr(manifest, field), f"{manifest.name}: {field} missing"
        if manifest.name != "demo":
            assert manifest.homepage.startswith("https://"), manifest.name
            assert manifest.citation.strip(), manifest.name
        assert manifest.noncommercial == (manifest.name in NONCOMMERCIAL), manifest.name


def test_names_and_addresses_are_unique():
    manifests = datastage.list_datasets()
    addresses = [m.address for top in manifests for m in (top, *top.subsets)]
    staged = [m.name for top in manifests for m in (top, *top.subsets)]
    assert len(addresses) == len(set(addresses))
    assert len(staged) == len(set(staged)), "a subset's folder name must not clash"
    assert [m.name for m in manifests] == SHIPPED
    aliases = [a for m in manifests for a in m.aliases]
    assert len(aliases) == len(set(aliases)) and not set(aliases) & set(staged)


def test_aliases_find_the_dataset_and_get_did_you_mean():
    for alias in ("baker", "csmsc", "databaker"):
        assert registry.resolve(alias).name == "bznsyp"
    with pytest.raises(DatasetNotFound) as e:
        registry.resolve("bakr")
    assert e.value.hint == "did you mean 'baker'?"


def test_every_file_is_pinned_or_says_it_is_not():
    """No silent gaps: an entry without a digest must declare pinned = false."""
    for name in SHIPPED:
        for raw in _raw_files(registry.builtin_dir() / f"{name}.toml"):
            has_digest = any(k in raw for k in ("sha256", "md5", "sha1", "sha512"))
            assert has_digest or raw.get("pinned") is False, f"{name}: {raw['url']}"


def test_every_size_and_digest_in_the_registry_is_a_confirmed_fact():
    checked = 0
    for name in SHIPPED:
        if name == "demo":
            continue
        files = _raw_files(registry.builtin_dir() / f"{name}.toml")
        for raw in files + [part for f in files for part in f.get("parts", [])]:
            where = _fact_key(name, raw)
            for key in ("size", "sha256", "md5", "sha1", "sha512"):
                if key in raw:
                    assert where in FACTS, f"{name}: {where} has {key} but no facts"
                    assert FACTS[where].get(key) == raw[key], f"{name} {where} {key}"
                    checked += 1
            for mirror in raw.get("mirrors", []):
                assert Path(mirror).name == Path(raw["url"]).name, mirror
    # 7 LibriSpeech x 3, 7 LibriTTS x 2, 7 LibriTTS-R md5, LJ 2, VCTK 2; VoxCeleb1 6, VoxCeleb2 10
    assert checked == 62


def test_every_confirmed_fact_is_in_the_registry():
    entries = {
        f.url if f.has_url else f"{m.name}/{f.name}": f
        for m in datastage.list_datasets()
        for s in (m, *m.subsets)
        for f in (g for e in s.files for g in (e, *e.parts))
    }
    for url, fact in FACTS.items():
        entry = entries[url]
        for key in ("sha256", "md5"):
            if key in fact:
                assert str(entry.digest(key)) == f"{key}:{fact[key]}", url
        if "size" in fact:
            assert entry.size == fact["size"], url


def test_librispeech_layout_counts_match_the_facts():
    manifest = registry.resolve("librispeech")
    counts = dict(manifest.layout.counts)
    for sub in SUBSETS7:
        fact = FACTS[f"https://www.openslr.org/resources/12/{sub}.tar.gz"]
        assert counts[f"{sub}/*/*/*.flac"] == fact["count"]
    assert dict(registry.resolve("ljspeech").layout.counts) == {"wavs/*.wav": 13100}


@pytest.mark.parametrize("dataset", ["librispeech", "libritts", "libritts-r"])
def test_every_subset_is_addressable_and_the_whole_is_their_union(dataset):
    whole = registry.resolve(dataset)
    for sub in SUBSETS7:
        part = registry.resolve(f"{dataset}/{sub}")
        assert part.address == f"{dataset}/{sub}" and part.name == f"{dataset}-{sub}"
        assert part.root == whole.root
        assert len(part.files) == 1 and part.files[0] in whole.files
    assert len(whole.files) == len({f.url for s in whole.subsets if s.whole for f in s.files})


def test_subset_spelling_variants_users_guess():
    assert (
        registry.resolve("libritts-r/train_clean_100")
        .files[0]
        .url.endswith("/141/train_clean_100.tar.gz")
    )
    assert registry.resolve("librispeech/Train-Clean-100").subset == "train-clean-100"


def test_groups_and_variants_outside_the_whole():
    train = registry.resolve("librispeech/train-960")
    assert [f.name for f in train.files] == [
        "train-clean-100.tar.gz", "train-clean-360.tar.gz", "train-other-500.tar.gz"
    ]  # fmt: skip
    librispeech = registry.resolve("librispeech")
    assert librispeech.total_size == sum(
        FACTS[f"https://www.openslr.org/resources/12/{s}.tar.gz"]["size"] for s in SUBSETS7
    )
    vctk = registry.resolve("vctk")
    assert [f.name for f in vctk.files] == ["VCTK-Corpus-0.92.zip"]
    bundle = registry.resolve("vctk/bundle")
    assert bundle.files[0].name == "DS_10283_3443.zip" and not bundle.whole


def test_did_you_mean_for_names_and_subsets():
    with pytest.raises(DatasetNotFound) as e:
        registry.resolve("librispeech/train-clean-10")
    assert e.value.hint == (
        "did you mean 'librispeech/train-clean-100' or 'librispeech/train-clean-360'?"
    )
    with pytest.raises(DatasetNotFound) as e:
        registry.resolve("librspeech/dev-clean")
    assert e.value.hint == "did you mean 'librispeech/dev-clean'?"
    with pytest.raises(DatasetNotFound) as e:
        registry.resolve("ljspeech/train")
    assert "no subsets" in str(e.value)
    with pytest.raises(DatasetNotFound) as e:
        registry.resolve("librispeech/zzzz")
    assert "subsets: librispeech/dev-clean" in (e.value.hint or "")


def test_did_you_mean_on_the_command_line(tmp_path):
    result = run_cli("get", "libritts/test-clen", "--to", str(tmp_path / "d"))
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: libritts has no subset 'test-clen'",
        "hint: did you mean 'libritts/test-clean'?",
    ]
    assert not (tmp_path / "d").exists()


# -- validation ------------------------------------------------------------------------------
GOOD_FILE = {"url": "https://example.org/a.tar.gz", "pinned": False}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"subsets": {"a": {"fils": [GOOD_FILE]}}}, "subsets.a.fils: unknown key (did you mean"),
        ({"subsets": {"a": {"files": [GOOD_FILE], "includes": ["b"]}}}, "subsets.a.files"),
        ({"subsets": {"a": {"includes": ["nope"]}}}, "subsets.a.includes: 'nope' is not"),
        ({"subsets": {"A b": {"files": [GOOD_FILE]}}}, "subsets.A b: not a valid subset name"),
        ({"subsets": {}}, "subsets: must be a table"),
        ({"subsets": {"a": {"files": [GOOD_FILE], "whole": False}}}, "would be empty"),
        ({"files": [{**GOOD_FILE, "md5": "0" * 32}]}, "files[0].pinned: is false but"),
        ({"files": [{"url": "https://e.org/a", "pinned": True}]}, "files[0].pinned: is true"),
        ({"files": [{**GOOD_FILE, "extract_nested": "yes"}]}, "files[0].extract_nested: must be"),
        ({"files": [GOOD_FILE], "layout": {"counts": {"*.wav": "3"}}}, "layout.counts.*.wav"),
        ({"files": [GOOD_FILE], "layout": {"path": ["x"]}}, "layout.path: unknown key"),
        ({"files": [GOOD_FILE], "layout": {"paths": ["../x"]}}, "relative to the root"),
        ({"files": [GOOD_FILE], "noncommercial": "yes"}, "noncommercial: must be true or false"),
    ],
)
def test_strict_validation_names_file_and_key(data, message):
    with pytest.raises(ManifestError) as e:
        from_dict({"name": "x", **data}, source=Path("/m/x.toml"))
    assert str(e.value).startswith("manifest /m/x.toml: ")
    assert message in str(e.value)


def test_extract_nested_and_pinned_are_accepted(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text(
        dedent("""
        name = "n"
        [[files]]
        url = "https://example.org/outer.zip"
        extract_nested = true
        pinned = false
        """)
    )
    assert load(path).files[0].url == "https://example.org/outer.zip"


# -- which manifest wins -----------------------------------------------------------------------
def _override(folder: Path, description: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "ljspeech.toml"
    path.write_text(
        f'name = "ljspeech"\ndescription = "{description}"\n'
        '[[files]]\nurl = "https://example.org/lj.tar.bz2"\npinned = false\n'
    )
    return path


def test_registry_folders_win_over_the_builtin_registry_in_order(tmp_path, monkeypatch):
    first, second = _override(tmp_path / "a", "first"), _override(tmp_path / "b", "second")
    monkeypatch.setenv("DATASTAGE_REGISTRY", f"{first.parent}:{second.parent}")
    assert registry.resolve("ljspeech").description == "first"
    monkeypatch.setenv("DATASTAGE_REGISTRY", f"{second.parent}:{first.parent}")
    assert registry.resolve("ljspeech").description == "second"
    monkeypatch.delenv("DATASTAGE_REGISTRY")
    assert registry.resolve("ljspeech").path == registry.builtin_dir() / "ljspeech.toml"


def test_a_subset_of_a_manifest_file(tmp_path, monkeypatch):
    path = tmp_path / "mine.toml"
    path.write_text(
        dedent("""
        name = "mine"
        [subsets.part-a]
        [[subsets.part-a.files]]
        url = "https://example.org/a.tar.gz"
        pinned = false
        """)
    )
    assert registry.resolve(f"{path}/part-a").address == "mine/part-a"
    monkeypatch.chdir(tmp_path)
    assert registry.resolve("mine.toml/part_a").name == "mine-part-a"
    with pytest.raises(DatasetNotFound) as e:
        registry.resolve("mine.toml/part-b")
    assert e.value.hint == "did you mean 'mine.toml/part-a'?"


def test_a_path_always_means_that_file(tmp_path, monkeypatch):
    mine = _override(tmp_path / "here", "mine")
    monkeypatch.setenv("DATASTAGE_REGISTRY", str(_override(tmp_path / "reg", "registry").parent))
    monkeypatch.chdir(mine.parent)
    assert registry.resolve("ljspeech").description == "registry"
    assert registry.resolve("./ljspeech.toml").description == "mine"
    assert registry.resolve("ljspeech.toml").description == "mine"
    assert datastage.info(str(mine))["manifest"] == str(mine)


# -- list / info / search --------------------------------------------------------------------
def test_list_is_a_table_with_sizes_licenses_and_sources():
    result = run_cli("list")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "SIZE", "LICENSE", "SOURCES"]
    row = next(line for line in lines if line.startswith("librispeech/train-clean-100 "))
    assert "6.4 GB" in row and "CC BY 4.0" in row and "www.openslr.org +4 mirrors" in row
    ryan = next(line for line in lines if line.startswith("ryanspeech "))
    assert "CC BY-NC 4.0 [NC]" in ryan and " ? " in ryan


def test_list_json_for_scripts():
    rows = json.loads(run_cli("list", "--json").stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["ljspeech"]["size"] == 2748572632
    assert by_name["librispeech"]["subsets"][0] == "librispeech/dev-clean"
    assert by_name["bznsyp"]["noncommercial"] is True
    assert (
        "https://us.openslr.org/resources/12/dev-clean.tar.gz"
        in (by_name["librispeech/dev-clean"]["sources"])
    )


def test_search_finds_datasets_and_subsets():
    result = run_cli("search", "mandarin")
    names = [line.split()[0] for line in result.stdout.splitlines()[1:]]
    assert result.returncode == 0 and names == ["aishell3", "bznsyp"]
    names = [r["name"] for r in json.loads(run_cli("search", "CLEAN-360", "--json").stdout)]
    assert names == ["librispeech/train-clean-360", "librispeech/train-960",
                     "libritts/train-clean-360", "libritts-r/train-clean-360"]  # fmt: skip
    missing = run_cli("search", "klingon")
    assert missing.returncode == 3 and missing.stderr.startswith("error: no dataset matches")


def test_info_shows_terms_pinning_layout_and_subsets(tmp_path):
    result = run_cli("info", "jsut")
    assert result.returncode == 0
    out = result.stdout
    assert "terms:       non-commercial use only" in out
    assert "pinned:      no: checksums unconfirmed" in out
    assert "expects:     5000 files matching basic5000/wav/*.wav" in out
    assert "pinned:    no (unconfirmed; the first download pins it)" in out
    sub = run_cli("info", "librispeech/dev-clean", "--to", str(tmp_path)).stdout
    assert "name:        librispeech/dev-clean" in sub
    assert "staged_as:   librispeech-dev-clean" in sub and "staged:      no" in sub
    assert "digest:    md5:42e2234ba48799c1f50f24a7926300a1" in sub
    whole = json.loads(run_cli("info", "librispeech", "--json").stdout)
    assert whole["pinned"] == "manifest"
    assert [s["name"] for s in whole["subsets"]][-1] == "librispeech/train-960"
