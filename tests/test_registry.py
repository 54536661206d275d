"""The shipped registry: every manifest valid, facts matching the research fixture, subset
addressing, "did you mean", name clashes between registry folders and paths, list/info/search."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

import datastage
from datastage.core.errors import DatasetNotFound, ManifestError
from datastage.resolve import registry
from datastage.resolve.manifest import from_dict, load
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
    "aishell", "thchs30", "primewords", "stcmds", "magicdata", "aidatatang_200zh", "musan",
    "rirs_noises", "yesno", "speech_commands", "cmu_arctic", "tedlium1", "tedlium2", "tedlium3",
    "librilight", "librilight-limited", "mls", "thorsten", "m-ailabs",
}  # fmt: skip
NONCOMMERCIAL = {
    "aishell3", "ryanspeech", "jsut", "bznsyp", "primewords", "stcmds", "magicdata",
    "aidatatang_200zh", "tedlium1", "tedlium2", "tedlium3", "kss",
}  # fmt: skip
MANDARIN = {
    "aishell", "aishell3", "bznsyp", "thchs30", "primewords", "stcmds", "magicdata",
    "aidatatang_200zh",
}  # fmt: skip
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
        assert manifest.tags, f"{manifest.name}: no tags"


def test_the_registry_lists_at_least_30_datasets_each_with_its_own_tags(datastage_cli):
    """Tags are declared at the top of every manifest, not only borrowed from subsets."""
    assert len(SHIPPED) >= 30
    for name in SHIPPED:
        raw = tomllib.loads((registry.builtin_dir() / f"{name}.toml").read_text())
        assert raw.get("tags"), name
    listed = datastage_cli("list").stdout.splitlines()[1:]
    assert [line.split()[0] for line in listed] == SHIPPED  # one line per dataset


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
    # 7 LibriSpeech x 3, 7 LibriTTS x 2, 7 LibriTTS-R md5, LJ 2, VCTK 2, and from the research
    # of 2026-11-28: AISHELL-1 2, THCHS-30 3, Primewords 1, aidatatang 1, MUSAN 1, RIRS 1,
    # yesno 3, Speech Commands 5, CMU ARCTIC 18, TED-LIUM 6, LibriLight 1, VCTK CREST 1, MLS 14;
    # VoxCeleb1 6, VoxCeleb2 10 (gated)
    assert checked == 46 + 57 + 16


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
        ({"files": [GOOD_FILE], "tags": "asr"}, "tags: must be a list of strings"),
        ({"files": [GOOD_FILE], "tags": ["asr", 3]}, "tags: must be a list of strings"),
        ({"files": [GOOD_FILE], "tags": ["ASR"]}, "tags: 'ASR' is not a tag"),
        ({"files": [GOOD_FILE], "tags": ["text to speech"]}, "tags: 'text to speech' is not"),
        ({"files": [GOOD_FILE], "tags": ["x" * 25]}, "tags: 'xxxxxxxxxxxxxxxxxxxxxxxxx' is not"),
        ({"subsets": {"a": {"files": [GOOD_FILE], "tags": ["-x"]}}}, "subsets.a.tags: '-x' is"),
        ({"files": [GOOD_FILE], "tag": ["asr"]}, "tag: unknown key (did you mean 'tags'?)"),
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


def test_tags_of_datasets_and_subsets():
    manifest = from_dict(
        {
            "name": "x",
            "tags": ["asr", "en", "asr"],
            "subsets": {
                "de": {"files": [{**GOOD_FILE, "url": "https://e.org/de.tgz"}], "tags": ["de"]},
                "en": {"files": [{**GOOD_FILE, "url": "https://e.org/en.tgz"}]},
                "both": {"includes": ["de", "en"]},
            },
        }
    )
    assert manifest.tags == ("asr", "en", "de")  # its own, then its subsets', each once
    tags = {s.subset: s.tags for s in manifest.subsets}
    assert tags == {"de": ("asr", "en", "de"), "en": ("asr", "en"), "both": ("asr", "en", "de")}


def test_a_bad_tag_is_a_manifest_error_on_the_command_line(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(
        'name = "t"\ntags = ["Mandarin Chinese"]\n'
        '[[files]]\nurl = "https://e.org/a.tgz"\npinned = false\n'
    )
    for args in (["get", str(path), "--to", str(tmp_path / "d")], ["info", str(path)]):
        result = run_cli(*args)
        assert result.returncode == 3 and result.stdout == ""
        assert result.stderr.splitlines()[0] == (
            f"error: manifest {path}: tags: 'Mandarin Chinese' is not a tag "
            '(1-24 lowercase letters, digits, \'-\' or \'+\', e.g. "asr", "zh", "pt-br")'
        )
    assert not (tmp_path / "d").exists()
    listed = run_cli("list", env={"DATASTAGE_REGISTRY": str(tmp_path)})
    assert listed.returncode == 3 and "tags: 'Mandarin Chinese' is not a tag" in listed.stderr


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
def _rows(result) -> dict[str, str]:
    """A table's lines by their first cell (the dataset's address)."""
    assert result.returncode == 0, result.stderr
    return {line.split()[0]: line for line in result.stdout.splitlines()[1:]}


def test_list_is_one_line_per_dataset_with_size_license_subsets_and_tags(datastage_cli):
    result = datastage_cli("list")
    header = result.stdout.splitlines()[0].split()
    assert header == ["NAME", "SIZE", "LICENSE", "SUBSETS", "TAGS", "DESCRIPTION"]
    rows = _rows(result)
    assert list(rows) == SHIPPED  # subsets are a count, not lines of their own
    assert rows["librispeech"].split()[:7] == ["librispeech", "61.4", "GB", "CC", "BY", "4.0", "8"]
    assert " asr,en " in rows["librispeech"]
    assert "CC BY-NC 4.0 [NC]" in rows["ryanspeech"] and " ? " in rows["ryanspeech"]
    # a license's notes are cut (info shows them), the non-commercial flag never is
    assert "Apache-2.0... [NC]" in rows["aishell3"] and "disputed" not in rows["aishell3"]
    # eight languages stay one short cell: the first tags, then how many more
    assert " asr,multilingual,pl,+7 " in rows["mls"]
    widths = {len(line) for line in result.stdout.splitlines()}
    assert max(widths) < 200, "a description or cell made the table unreadable"


def test_list_subsets_on_request(datastage_cli):
    rows = _rows(datastage_cli("list", "--subsets"))
    assert "6.4 GB" in rows["librispeech/train-clean-100"]
    assert "librispeech" in rows and "speech_commands/v0.01" in rows
    assert sum(name.startswith("cmu_arctic/") for name in rows) == 18


def test_list_tag_filters_datasets(datastage_cli):
    zh = _rows(datastage_cli("list", "--tag", "zh"))
    assert set(zh) == MANDARIN | {"css10"} and "ljspeech" not in zh  # css10/chinese
    assert set(_rows(datastage_cli("list", "--tag", "ZH", "--tag", "tts"))) == {
        "aishell3",
        "bznsyp",
        "css10",
    }
    assert list(_rows(datastage_cli("list", "--tag", "kws"))) == ["speech_commands"]
    # a language of one subset finds its dataset; with --subsets, only the matching subsets
    assert set(_rows(datastage_cli("list", "--tag", "de"))) == {
        "mls",
        "m-ailabs",
        "thorsten",
        "css10",
    }
    de = _rows(datastage_cli("list", "--tag", "de", "--subsets"))
    assert set(de) == {
        "mls",
        "mls/german",
        "m-ailabs",
        "m-ailabs/de-de",
        "thorsten",
        "css10",
        "css10/german",
    }
    as_json = json.loads(datastage_cli("list", "--tag", "noise", "--json").stdout)
    assert [r["name"] for r in as_json] == ["musan", "rirs_noises"]
    assert as_json[0]["tags"] == ["noise", "music", "augmentation"]


def test_list_tag_that_no_dataset_has(datastage_cli):
    result = datastage_cli("list", "--tag", "klingon")
    assert result.returncode == 3 and result.stdout == ""
    error, hint = result.stderr.splitlines()
    assert error == "error: no dataset has the tag klingon"
    assert hint.startswith("hint: tags: ") and " zh" in hint and " asr," in hint


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
    assert result.returncode == 0 and names == sorted(MANDARIN)
    names = [r["name"] for r in json.loads(run_cli("search", "CLEAN-360", "--json").stdout)]
    assert names == ["librispeech/train-clean-360", "librispeech/train-960",
                     "libritts/train-clean-360", "libritts-r/train-clean-360"]  # fmt: skip
    missing = run_cli("search", "klingon")
    assert missing.returncode == 3 and missing.stderr.startswith("error: no dataset matches")


def test_search_matches_tags(datastage_cli):
    # "kws" and "unlabeled" are in no name, description, license or homepage: only in tags
    assert list(_rows(datastage_cli("search", "KWS"))) == ["speech_commands"]
    hits = json.loads(datastage_cli("search", "unlabeled", "--json").stdout)
    assert [(h["name"], h["tags"]) for h in hits] == [("librilight", ["asr", "en", "unlabeled"])]


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


# -- shipped manifests against archives of their documented shape -------------------------------
def _local_copy(name: str, folder: Path, archives: dict[str, bytes]) -> Path:
    """The registry's manifest with the entries of ``archives`` pointing at local files of the
    same names (their md5 instead of the real archives' size and digests, no mirrors), so its
    root, subsets, nesting, dest and layout are exercised without a network."""
    lines: list[str] = []
    local = None  # the archive whose [[files]] entry is being rewritten
    skip = False  # inside its mirrors = [...] list
    for line in (registry.builtin_dir() / f"{name}.toml").read_text().splitlines():
        url = re.fullmatch(r'url = "[a-z]+://.*/([^/"]+)"', line)
        if url and url.group(1) in archives:
            local = url.group(1)
            (folder / local).write_bytes(archives[local])
            lines += [f'url = "{local}"', f'md5 = "{hashlib.md5(archives[local]).hexdigest()}"']
            continue
        if local and (not line.strip() or line.startswith("[")):
            local = None
        if local and line.startswith("mirrors = ["):
            skip = True
        if not (skip or (local and re.match(r"(size|sha256|md5|pinned) = ", line))):
            lines.append(line)
        skip = skip and not line.rstrip().endswith("]")
    assert all(f'url = "{a}"' in lines for a in archives), "an archive is not in the manifest"
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_aishell_unpacks_its_per_speaker_archives_under_its_root(tmp_path, datastage_cli):
    from tests.archives import make_tar

    wav = b"RIFF" + bytes(64)
    data = {
        "data_aishell/transcript/aishell_transcript_v0.8.txt": b"BAC009S0002W0122 ni hao\n",
        "data_aishell/wav/S0002.tar.gz": make_tar({"train/S0002/BAC009S0002W0122.wav": wav}, "gz"),
        "data_aishell/wav/S0916.tar.gz": make_tar({"test/S0916/BAC009S0916W0121.wav": wav}, "gz"),
    }
    resource = {"resource_aishell/lexicon.txt": b"ni3 n i3\n"}
    manifest = _local_copy(
        "aishell",
        tmp_path,
        {
            "data_aishell.tgz": make_tar(data, "gz"),
            "resource_aishell.tgz": make_tar(resource, "gz"),
        },
    )
    to = tmp_path / "to"
    result = datastage_cli("get", f"{manifest}/data", "--to", str(to), "-q")
    assert result.returncode == 0, result.stderr
    root = to / "aishell-data" / "data_aishell"
    assert result.stdout.splitlines()[-1] == str(root)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "transcript/aishell_transcript_v0.8.txt",
        "wav/test/S0916/BAC009S0916W0121.wav",
        "wav/train/S0002/BAC009S0002W0122.wav",
    ]
    assert "does not look as its manifest expects" not in result.stderr
    whole = datastage_cli("get", str(manifest), "--to", str(to), "-q")
    assert whole.returncode == 0, whole.stderr
    assert sorted(p.name for p in (to / "aishell").iterdir() if not p.name.startswith(".")) == [
        "data_aishell", "resource_aishell"
    ]  # fmt: skip


def test_speech_commands_keeps_the_test_set_apart(tmp_path, datastage_cli):
    """Both archives hold yes/... at their top: the test set lands in test/, nothing clashes."""
    from tests.archives import make_tar

    train = {"yes/0a7c2a8d_nohash_0.wav": b"a", "validation_list.txt": b"", "testing_list.txt": b"",
             "_background_noise_/white_noise.wav": b"n"}  # fmt: skip
    test = {"yes/0a7c2a8d_nohash_0.wav": b"b"}
    manifest = _local_copy(
        "speech_commands",
        tmp_path,
        {
            "speech_commands_v0.02.tar.gz": make_tar(train, "gz"),
            "speech_commands_test_set_v0.02.tar.gz": make_tar(test, "gz"),
        },
    )
    to = tmp_path / "to"
    result = datastage_cli("get", str(manifest), "--to", str(to), "-q")
    assert result.returncode == 0, result.stderr
    root = to / "speech_commands"
    assert (root / "yes/0a7c2a8d_nohash_0.wav").read_bytes() == b"a"
    assert (root / "test/yes/0a7c2a8d_nohash_0.wav").read_bytes() == b"b"
    assert "does not look as its manifest expects" not in result.stderr
