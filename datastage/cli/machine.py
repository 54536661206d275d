"""Commands for working on Colab, AutoDL and SageMaker: env, config, stage, pack, cache.

Kept out of cli.py so that module stays a short list of the core commands; same rules: parse,
call one function, print (results on stdout, messages on stderr).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Optional

import click

from ..core.errors import NoDefaultFolder, UsageError
from ..core.progress import Reporter
from ..core.redact import redact_url
from . import options
from .options import size_text

_debug = options.debug
_quiet = options.quiet
_json = options.as_json


def register(cli: click.Group) -> None:
    for command in (env, config, stage, pack, cache, push):
        cli.add_command(command)


# -- env -------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """What `datastage env` shows: the platform, its stores, network settings, the defaults."""
    from ..settings import config
    from ..settings.machine import detect

    found = detect()
    settings = config.resolve()
    try:
        to: Optional[str] = str(config.resolve_to())
    except NoDefaultFolder:  # no default on a plain machine: shown as such
        to = None
    return {
        "platform": found.name,
        "stores": [
            {
                "role": s.role,
                "label": s.label,
                "path": str(s.path),
                "available": s.available,
                "free": s.free,
            }
            for s in found.stores
        ],
        "network": {key: redact_url(value) for key, value in found.network},  # proxy passwords
        "defaults": {
            "to": to,
            "cache_dir": str(settings.cache_dir),
            "persistent_cache": str(settings.persistent_cache)
            if settings.persistent_cache
            else None,
            "sources": [str(p) for p in settings.sources],
            "shared_cache": settings.shared_cache and redact_url(settings.shared_cache),
        },
        "suggested_persistent_cache": str(found.suggested_persistent)
        if found.suggested_persistent and any(s.available for s in found.of_role("persistent"))
        else None,
        "hints": list(found.hints),
    }


@click.command()
@_json
@_debug
def env(as_json: bool) -> None:
    """The detected platform, its disks and stores, network settings and resulting defaults."""
    info = environment()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"platform:          {info['platform']}")
    for s in info["stores"]:
        state = f"{size_text(s['free'])} free" if s["available"] else "not mounted / missing"
        click.echo(f"{s['role'] + ' disk:' if s['role'] == 'fast' else s['role'] + ':':19}"
                   f"{s['path']}  ({s['label']}; {state})")  # fmt: skip
    for key, value in info["network"].items() or [("network", "no proxy or HF_ENDPOINT set")]:
        click.echo(f"{key + ':':19}{value}")
    d = info["defaults"]
    click.echo(f"{'--to default:':19}{d['to'] or '(none: pass --to)'}")
    click.echo(f"{'cache:':19}{d['cache_dir']}")
    click.echo(f"{'persistent cache:':19}{d['persistent_cache'] or '(none)'}")
    click.echo(f"{'source folders:':19}{', '.join(d['sources']) or '(none)'}")
    click.echo(f"{'shared cache:':19}{d['shared_cache'] or '(none)'}")
    if not d["persistent_cache"] and info["suggested_persistent_cache"]:
        click.echo(
            f"hint: keep downloads across sessions: datastage config set persistent_cache "
            f"{info['suggested_persistent_cache']}"
        )
    for hint in info["hints"]:
        click.echo(f"hint: {hint}")


# -- config ----------------------------------------------------------------------------------


@click.group()
def config() -> None:
    """Read and change the config file (flag > environment > config file > platform default)."""


@config.command(name="get")
@click.argument("key")
@_debug
def config_get(key: str) -> None:
    """Print the configured value of KEY (exit 1 when it is not set)."""
    from ..settings import configfile

    if key not in configfile.KEYS:
        raise UsageError(
            f"unknown config key {key!r}", hint=f"known keys: {', '.join(configfile.KEYS)}"
        )
    values = configfile.load()
    if key not in values:
        raise click.exceptions.Exit(1)
    click.echo(configfile.render(values[key]))


@config.command(name="set")
@click.argument("key")
@click.argument("value")
@_debug
def config_set(key: str, value: str) -> None:
    """Set KEY to VALUE (a list takes paths separated by ':')."""
    from ..settings import config, configfile

    saved = configfile.set_value(key, value)
    if key == "persistent_cache":  # say now, not at the next get, that it cannot be used yet
        config.on_a_mounted_store(config.given_path(saved, "persistent_cache"))


@config.command(name="unset")
@click.argument("key")
@_debug
def config_unset(key: str) -> None:
    """Remove KEY from the config file."""
    from ..settings import configfile

    configfile.unset(key)


@config.command(name="list")
@_debug
def config_list() -> None:
    """Every key in the config file, and where the file is."""
    from ..settings import configfile

    click.echo(f"# {configfile.path()}")
    for key, value in configfile.load().items():
        click.echo(f"{key} = {configfile.render(value)}")


# -- stage / pack ----------------------------------------------------------------------------


@click.command()
@click.argument("src")
@options.to("Fast folder that receives DIR/<name> [default: as for get, see `datastage env`].")
@click.option("--name", default=None, help="Folder name under --to [default: from SRC].")
@click.option("--workers", default=None, type=click.IntRange(1, 256), help="Parallel copies.")
@click.option("--force", is_flag=True, help="Copy every file again, even if the copy is current.")
@_quiet
@_debug
def stage(
    src: str,
    to: Optional[str],
    name: Optional[str],
    workers: Optional[int],
    force: bool,
    quiet: Optional[bool],
) -> None:
    """Copy a folder (or extract an archive) from slow storage to fast disk, verified.

    Many files are copied at once; an interrupted run resumes; a re-run copies what changed in
    SRC since (symlinks stay links inside SRC; FIFOs and devices are skipped). Prints the folder.
    """
    from ..api import get_manifest
    from ..settings import config
    from ..stage import folder

    dest = config.resolve_to(to)
    source = config.given_path(src, "SRC")
    workers = workers or folder.DEFAULT_WORKERS
    staged = folder.stage(
        source, dest, name, workers, bool(quiet), force=force, get_manifest=get_manifest
    )
    click.echo(staged)


@click.command()
@click.argument("src")
@options.to("Folder (e.g. on Drive) that receives <name>.tar and <name>.toml.", required=True)
@click.option("--name", default=None, help="Dataset name [default: from SRC].")
@_quiet
@_debug
def pack(src: str, to: str, name: Optional[str], quiet: Optional[bool]) -> None:
    """Pack a folder of many small files into one archive + manifest; prints the manifest.

    Later sessions stage it in one sequential read: datastage get PATH/<name>.toml
    """
    from ..settings import config
    from ..stage.pack import pack as pack_folder

    source, dest = config.given_path(src, "SRC"), config.given_path(to, "--to")
    click.echo(pack_folder(source, dest, name, bool(quiet)))


@click.command()
@click.argument("target")
@click.argument("url")
@_quiet
@_debug
def push(target: str, url: str, quiet: Optional[bool]) -> None:
    """Upload the verified files of TARGET to URL (s3://bucket/prefix) for other machines.

    Point them at it with: datastage config set shared_cache s3://bucket/prefix
    """
    for pushed in _push(target, url, quiet):
        click.echo(pushed)


def _push(target: str, url: str, quiet: Optional[bool]) -> list[str]:
    """Every file of ``target`` verified in the cache (fetched if need be), then uploaded.

    Here rather than in obtain/shared.py: the shared cache is one rung of the ladder that
    obtains a file (persistent.obtain), so it cannot also climb that ladder."""
    from ..obtain import localcopy, persistent, shared
    from ..obtain.cache import Cache
    from ..resolve import registry
    from ..settings import config

    shared.split(url)  # a bad URL fails before any download
    manifest = registry.resolve(target)
    settings = config.resolve(quiet=quiet)
    reporter = Reporter(settings.quiet)
    store = Cache(settings.cache_dir)
    localcopy.refuse_unfetchable(manifest, store, settings)  # before any download
    blobs = []
    for entry in manifest.files:  # fetcher: parts are joined; a gated file must be cached
        fetch_one = localcopy.fetcher(manifest, entry)
        blobs.append(
            (entry, persistent.obtain(entry, manifest, store, settings, reporter, fetch_one))
        )
    return shared.push(manifest, blobs, url, reporter)


# -- cache -----------------------------------------------------------------------------------


@click.group()
def cache() -> None:
    """Inspect and trim the cache of verified downloads."""


def _store(cache_dir: Optional[str]) -> Any:
    from ..obtain.cache import Cache
    from ..settings import config

    return Cache(config.resolve(cache_dir=cache_dir).cache_dir)


_cache_opt = options.cache("cache_dir")


@cache.command(name="dir")
@_cache_opt
@_debug
def cache_dir(cache_dir: Optional[str]) -> None:
    """Print the cache folder."""
    click.echo(_store(cache_dir).root)


@cache.command(name="ls")
@_cache_opt
@_json
@_debug
def cache_ls(cache_dir: Optional[str], as_json: bool) -> None:
    """What the cache holds, how big, where."""
    from ..obtain import usage

    store = _store(cache_dir)
    rows = usage.ls(store)
    total = usage.total_size(rows)
    if as_json:
        out = [
            {
                "name": r.name,
                "size": r.size,
                "shared": r.shared,
                "files": r.files,
                "last_used": r.last_used,
                "paths": [str(p) for p in r.paths],
            }
            for r in rows
        ]
        click.echo(json.dumps({"cache": str(store.root), "total": total, "entries": out}, indent=2))
        return
    click.echo(f"# {store.root}")
    for r in rows:
        where = os.path.commonpath([str(p) for p in r.paths]) if len(r.paths) > 1 else r.paths[0]
        shared = f"  ({size_text(r.shared)} shared with other datasets)" if r.shared else ""
        click.echo(f"{r.name:24} {size_text(r.size):>10}  {r.files:4} file(s)  {where}{shared}")
    shared_note = "  (files shared by several datasets counted once)"
    note = shared_note if any(r.shared for r in rows) else ""
    click.echo(f"{'total':24} {size_text(total):>10}{note}")


@cache.command(name="rm")
@click.argument("name")
@_cache_opt
@_debug
def cache_rm(name: str, cache_dir: Optional[str]) -> None:
    """Delete the cached files of dataset NAME (staged copies are not touched)."""
    from ..obtain import usage

    freed = usage.rm(_store(cache_dir), name)
    click.echo(f"removed {name}: {size_text(freed)} freed", err=True)


@cache.command(name="prune")
@click.option("--max-size", default=None, help="Shrink the cache to this size (e.g. 20G), LRU.")
@click.option(
    "--partial-age", default=24.0, type=float, show_default=True,
    help="Hours after which an unlocked partial download counts as stale.",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@_cache_opt
@_debug
def cache_prune(
    max_size: Optional[str], partial_age: float, dry_run: bool, cache_dir: Optional[str]
) -> None:
    """Remove stale partial downloads, then least recently used datasets down to --max-size.

    Sizes are decimal (500M = 500,000,000 bytes; 500MiB = 500 x 1024^2), as `cache ls` shows.
    """
    from ..obtain import usage

    limit = _parse_size(max_size) if max_size is not None else None
    if math.isnan(partial_age) or partial_age < 0:  # -1 would sweep every partial file (inf: none)
        raise UsageError(f"--partial-age: {partial_age!r} is not a number of hours, 0 or more")
    store = _store(cache_dir)
    removed = usage.prune(store, limit, partial_age * 3600, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for what, size in removed:
        click.echo(f"{verb} {what} ({size_text(size)})")
    if limit is not None:
        left = usage.verified_size(store)
        if dry_run:
            left -= sum(size for what, size in removed if not os.path.isabs(what))
        click.echo(
            f"{'would leave' if dry_run else 'left'}: {size_text(left)} of verified downloads"
        )


def _parse_size(text: str) -> int:
    from ..core.units import parse_size

    try:
        return parse_size(text)
    except ValueError:
        raise UsageError(
            f"--max-size: {text!r} is not a size (e.g. 500M, 20G; 1M = 1,000,000 bytes, "
            "1MiB = 1,048,576)"
        ) from None
