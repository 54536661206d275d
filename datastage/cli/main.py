"""The ``datastage`` command: parse, call the API, print. Nothing else lives here.

stdout carries results only (``get`` prints the staged root path as its last line); progress,
messages and errors go to stderr. Every failure is one ``error: …`` line (and at most one
``hint: …`` line) with the exit code of its DatastageError class; ``--debug`` or
``DATASTAGE_DEBUG=1`` also prints the traceback.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn, Optional

import click

from .. import api
from ..core.errors import DatasetNotFound, DatastageError, InsufficientSpace, InvalidManifest
from ..core.redact import redact_text, redact_url
from ..core.text import one_line, printable, switch
from ..core.version import __version__
from ..resolve.manifest import Manifest
from ..settings.config import DEBUG_ENV
from . import options
from .listing import table
from .options import size_text

EXIT_INTERRUPTED = 130
EXIT_BAD_PATH = 2  # like a usage error: the user's path, not datastage, is at fault
# click >= 8.2 raises this for a bare `datastage` (older versions print the help themselves)
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())

_quiet = options.quiet
_debug = options.debug
_to = options.to("Folder that receives the dataset (it is staged at DIR/<name>/).", required=True)
_cache = options.cache(
    help="Cache of verified downloads [env DATASTAGE_CACHE; default: per-user cache].",
)


_connections = click.option(
    "-j",
    "--connections",
    type=click.IntRange(min=1),
    default=None,
    help="Connections at once: segments of a big file and files in parallel "
    "[env DATASTAGE_CONNECTIONS; default: 8].",
)
_mirror = click.option(
    "--mirror",
    default=None,
    metavar="auto|listed|TEXT",
    help="Which of a file's URLs to use first: auto = the fastest host, measured by a short "
    "probe of each; listed = the manifest's order; TEXT = the URLs that contain TEXT (e.g. a "
    "host name) [env DATASTAGE_MIRROR; default: auto].",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="datastage")
@_debug
def cli() -> None:
    """Get datasets onto fast local disk, verified and ready to train."""


_sha256 = click.option(
    "--sha256", default=None, metavar="HEX", help="Expected sha256 of a URL/path target's file."
)
_hf_endpoint = click.option(
    "--hf-endpoint",
    default=None,
    metavar="URL[,URL]",
    help="Hugging Face endpoint(s) to try before huggingface.co [env HF_ENDPOINT].",
)
_s3_endpoint = click.option(
    "--s3-endpoint",
    default=None,
    metavar="URL",
    help="S3-compatible endpoint (MinIO, R2, ...) [env AWS_ENDPOINT_URL].",
)


_from = click.option(
    "--from",
    "from_",
    default=None,
    metavar="DIR|URL",
    help="Read the files from your copy instead of downloading them: a folder holding them by "
    "name (how a gated dataset is staged) or a URL prefix (URL/<name>).",
)
_repair = click.option(
    "--repair",
    is_flag=True,
    help="Re-hash the staged files and the cached files they came from; re-stage (and "
    "re-download damaged cached files) only if something differs.",
)


@cli.command()
@click.argument("target")
@options.to(
    "Folder that receives the dataset (DIR/<name>/) [env DATASTAGE_TO; config `to`; "
    "default on Colab/AutoDL/SageMaker: the fast disk, see `datastage env`]."
)
@_cache
@_sha256
@click.option("--name", default=None, help="Name of a URL/path target's dataset folder.")
@click.option(
    "--name-encoding",
    default=None,
    metavar="CODEC",
    help="Encoding of a URL/path archive's member names that are not UTF-8 (e.g. gbk, cp932) "
    "[default: detected, with a warning].",
)
@_hf_endpoint
@_s3_endpoint
@_connections
@_mirror
@_from
@click.option("--force", is_flag=True, help="Stage again even if a current staging is in place.")
@_repair
@_quiet
@_debug
def get(
    target: str,
    to: Optional[str],
    cache: Optional[str],
    sha256: Optional[str],
    name: Optional[str],
    name_encoding: Optional[str],
    hf_endpoint: Optional[str],
    s3_endpoint: Optional[str],
    connections: Optional[int],
    mirror: Optional[str],
    from_: Optional[str],
    force: bool,
    repair: bool,
    quiet: Optional[bool],
) -> None:
    """Download, verify and stage TARGET (a dataset name or a manifest file).

    TARGET may also be a URL or path, without a manifest: https://..., a Google Drive link or
    gdrive://ID, hf://datasets/ORG/REPO[@REV]/PATH, s3://BUCKET/KEY-OR-PREFIX/, gs:// and other
    fsspec URLs, a local file or folder. Prints the path of the staged dataset root on stdout.
    """
    root = api.get(
        target,
        to=to,
        cache=cache,
        quiet=quiet,
        sha256=sha256,
        name=name,
        name_encoding=name_encoding,
        hf_endpoint=hf_endpoint,
        s3_endpoint=s3_endpoint,
        connections=connections,
        mirror=mirror,
        force=force,
        repair=repair,
        from_=from_,
    )
    click.echo(root)


@cli.command()
@click.argument("target")
@_cache
@_sha256
@_hf_endpoint
@_s3_endpoint
@_connections
@_mirror
@_from
@_quiet
@_debug
def fetch(
    target: str,
    cache: Optional[str],
    sha256: Optional[str],
    hf_endpoint: Optional[str],
    s3_endpoint: Optional[str],
    connections: Optional[int],
    mirror: Optional[str],
    from_: Optional[str],
    quiet: Optional[bool],
) -> None:
    """Download and verify TARGET into the cache without staging it; prints the cached files."""
    paths = api.fetch(
        target,
        cache=cache,
        quiet=quiet,
        sha256=sha256,
        hf_endpoint=hf_endpoint,
        s3_endpoint=s3_endpoint,
        connections=connections,
        mirror=mirror,
        from_=from_,
    )
    for path in paths:
        click.echo(path)


@cli.command()
@click.argument("target")
@_to
@click.option("--name", default=None, help="The --name a URL/path target was staged with.")
@_cache
@_repair
@_quiet
@_debug
def verify(
    target: str,
    to: str,
    name: Optional[str],
    cache: Optional[str],
    repair: bool,
    quiet: Optional[bool],
) -> None:
    """Re-hash the staged copy of TARGET and the cached files it was built from.

    Anything changed: exit 5 listing it, and the next `get` stages it again (or use --repair).
    """
    click.echo(api.verify(target, to=to, quiet=quiet, cache=cache, repair=repair, name=name))


@cli.command(name="list")
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="TAG",
    help="Only datasets with this tag, e.g. zh, tts, noise (repeat or zh,tts: all of them).",
)
@click.option("--subsets", is_flag=True, help="Also one line per subset (NAME/SUBSET).")
@options.as_json
@_debug
def list_(tags: tuple[str, ...], subsets: bool, as_json: bool) -> None:
    """The datasets datastage knows: size, license, subsets and tags, one line each."""
    wanted = {t.strip().lower() for given in tags for t in given.split(",") if t.strip()}
    manifests = [m for m in api.list_datasets() if wanted <= set(m.tags)]
    if wanted and not manifests:
        known = sorted({t for m in api.list_datasets() for t in m.tags})
        raise DatasetNotFound(
            f"no dataset has the tag{'s' if len(wanted) > 1 else ''} {', '.join(sorted(wanted))}",
            hint=f"tags: {', '.join(known)}" if known else "see: datastage list",
        )
    if as_json:  # scripts get every subset, as before
        subsets = True
    rows = [
        m
        for top in manifests
        for m in (top, *(top.subsets if subsets else ()))
        if wanted <= set(m.tags)
    ]
    if as_json:
        click.echo(json.dumps([_summary(m) for m in rows], indent=2))
        return
    table(rows)


@cli.command()
@click.argument("word")
@options.as_json
@_debug
def search(word: str, as_json: bool) -> None:
    """Datasets whose name, description, license, homepage or tags mention WORD."""
    hits = api.search(word)
    if not hits:
        raise DatasetNotFound(f"no dataset matches {word!r}", hint="see: datastage list")
    if as_json:
        click.echo(json.dumps([_summary(m) for m in hits], indent=2))
        return
    table(hits)


def _summary(m: Manifest) -> dict[str, Any]:
    return {
        "name": m.address,
        "size": m.total_size,
        "license": m.license,
        "noncommercial": m.noncommercial,
        "tags": list(m.tags),
        "access": m.access,
        "sources": [redact_url(url) for f in m.files for url in f.urls],
        "subsets": [s.address for s in m.subsets],
        "description": m.description,
    }


@cli.command()
@click.argument("target")
@options.to("Also say whether it is staged under this folder.")
@_cache
@options.as_json
@_debug
def info(target: str, to: Optional[str], cache: Optional[str], as_json: bool) -> None:
    """Everything known about TARGET: manifest, cache and staging state."""
    details = api.info(target, to=to, cache=cache)
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    keys = ("name", "description", "homepage", "license", "license_note", "version", "root")
    for key in (*keys, "staged_as", "manifest"):
        if details.get(key) and (key != "staged_as" or details[key] != details["name"]):
            click.echo(f"{key + ':':13}{details[key]}")
    if details["noncommercial"]:
        click.echo(f"{'terms:':13}non-commercial use only")
    if details["access"] == "gated":
        click.echo(f"{'access:':13}gated: register at {details['register']}, then get --from DIR")
        if details["instructions"]:
            click.echo(f"{'download:':13}{details['instructions']}")
    click.echo(f"{'size:':13}{size_text(details['size'])}")
    click.echo(f"{'pinned:':13}{_pinning(details['files'])}")
    if "staged" in details:
        click.echo(f"{'staged:':13}{details['staged'] or 'no'}")
    for sub in details["subsets"]:
        note = "" if sub["whole"] else "  (not part of the whole)"
        click.echo(f"{'subset:':13}{sub['name']}  ({size_text(sub['size'])}){note}")
    for pattern in details["layout"]["paths"]:
        click.echo(f"{'expects:':13}{pattern}")
    for pattern, count in details["layout"]["counts"].items():
        click.echo(f"{'expects:':13}{count} files matching {pattern}")
    for f in details["files"]:
        click.echo(f"file:        {f['name']}  ({size_text(f['size'])})")
        for url in f["urls"]:
            click.echo(f"  url:       {url}")
        for digest in f["digests"]:
            click.echo(f"  digest:    {digest}")
        for part in f["parts"]:
            shown = "  ".join([*part["urls"][:1], *part["digests"]])
            click.echo(
                f"  part:      {part['name']}  ({size_text(part['size'])})  {shown}".rstrip()
            )
        if not f["urls"] and not f["parts"]:
            click.echo("  url:       none (gated: download it yourself, then get --from DIR)")
        if f["pin"]:
            pin = f["pin"]
            click.echo(
                f"  pinned:    on first use {pin['pinned_at']}: "
                f"{pin['size']} bytes, sha256:{pin['sha256']}"
            )
        elif _checked_by(f):
            click.echo(
                f"  pinned:    by the manifest's {_checked_by(f)}; its sha256 is recorded by "
                "the first download"
            )
        elif f["pinned"] != "manifest":
            click.echo("  pinned:    no (unconfirmed; the first download pins it)")
        click.echo(f"  cached:    {f['cached'] or 'no'}")
    for line in details.get("mirrors", {}).get("lines", []):
        click.echo(f"{'mirror:':13}{line}")
    if details.get("citation"):
        click.echo(f"{'citation:':13}{details['citation'].strip()}")


_PINNING = {
    "manifest": "every file, by the manifest's checksums",
    "first use": "every file, on first use (checksums recorded by the first download)",
    "unpinned": "no: checksums unconfirmed; the first download pins them (trust on first use)",
    "mixed": "some files (see below)",
}


def _checked_by(file: dict[str, Any]) -> str:
    """For a file without a known sha256 (``pinned`` is "unpinned"): the manifest's checksums
    it is still checked against on every read ("md5", "md5 of its parts"), "" if none."""
    if file["pinned"] != "unpinned":
        return ""
    if file["digests"]:
        return ", ".join(dict.fromkeys(d.split(":", 1)[0] for d in file["digests"]))
    if file["parts"] and all(p["digests"] for p in file["parts"]):
        names = dict.fromkeys(d.split(":", 1)[0] for p in file["parts"] for d in p["digests"])
        return f"{', '.join(names)} of its parts"
    return ""


def _pinning(files: Sequence[dict[str, Any]]) -> str:
    """The dataset's ``pinned:`` line. A file with a manifest md5 but no sha256 is "unpinned"
    to pins.py (its sha256 is recorded on first use) but not unconfirmed: say what checks it."""
    checked = [_checked_by(f) for f in files]
    if checked and all(checked):
        names = ", ".join(dict.fromkeys(checked))
        return f"every file, by the manifest's {names}; the first download records its sha256"
    states = {f["pinned"] for f in files}
    return _PINNING[states.pop()] if len(states) == 1 and not any(checked) else _PINNING["mixed"]


@cli.command()
@click.argument("target")
@_cache
@_debug
def unpin(target: str, cache: Optional[str]) -> None:
    """Forget the first-use pins of TARGET (after an intended re-release of its files)."""
    names = api.unpin(target, cache=cache)
    click.echo(f"unpinned: {', '.join(names)}" if names else "nothing was pinned on first use")


@cli.command(name="manifest")
@click.argument("targets", nargs=-1, required=True)
@click.option("--name", "name", default=None, help="Dataset name [default: from the first file].")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write the TOML here."
)
@_cache
@_quiet
@_debug
def manifest_(
    targets: tuple[str, ...],
    name: Optional[str],
    output: Optional[str],
    cache: Optional[str],
    quiet: Optional[bool],
) -> None:
    """Write a manifest for TARGETS (URLs or local files): size, sha256, format, root.

    A URL is downloaded once into the cache; `datastage get` of the result reuses it.
    """
    from ..core.fsutil import write_atomic
    from ..core.progress import Reporter
    from ..resolve import authoring
    from ..settings import config

    settings = config.resolve(cache_dir=cache, quiet=quiet)
    reporter = Reporter(settings.quiet)
    out = config.given_path(output, "--output") if output is not None else None
    measured = [authoring.measure(t, settings, reporter) for t in targets]
    text = authoring.render(
        measured, name or authoring.dataset_name(measured), out.parent if out else None
    )
    if out is None:
        click.echo(text, nl=False)
        return
    write_atomic(out, text.encode())
    click.echo(out)


@cli.command(name="hash")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "-a",
    "--algorithm",
    "algorithms",
    multiple=True,
    type=click.Choice(["sha256", "sha512", "sha1", "md5"]),
    help="Digests to print (repeatable) [default: sha256 and md5].",
)
@_debug
def hash_(files: tuple[str, ...], algorithms: tuple[str, ...]) -> None:
    """Print the size and digests of FILES as manifest [[files]] entries."""
    from ..resolve import authoring

    click.echo(authoring.hash_lines(files, algorithms or authoring.DEFAULT_ALGORITHMS), nl=False)


from .machine import register as _register_platform_commands  # noqa: E402

_register_platform_commands(cli)


# -- entry point -----------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or switch(os.environ.get(DEBUG_ENV), default=False)
    try:
        result = cli.main(args=args, prog_name="datastage", standalone_mode=False)
    except _NO_ARGS_IS_HELP as e:  # a bare `datastage`: the help, as with --help
        click.echo(e.format_message())
        sys.exit(0)
    except click.ClickException as e:
        _fail(e.format_message(), "run 'datastage --help' for usage", e.exit_code, debug)
    except (KeyboardInterrupt, click.Abort):
        _fail("interrupted; re-run to resume", None, EXIT_INTERRUPTED, debug)
    except InvalidManifest as e:  # one summary line, then one line per problem
        _fail(e.summary, e.hint, e.exit_code, debug, details=e.problems)
    except DatastageError as e:
        _fail(e.message, e.hint, e.exit_code, debug)
    except BrokenPipeError:
        sys.stderr.close()  # stdout's reader went away (e.g. `| head`): not an error worth a word
        os._exit(0)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            error = InsufficientSpace(e.filename or "the target", None, 0)
            _fail(error.message, error.hint, error.exit_code, debug)
        if e.filename:  # a folder or file the user pointed at cannot be read or written
            _fail(f"{e.strerror or e}: {e.filename}", _path_hint(e), EXIT_BAD_PATH, debug)
        _fail(f"{e.strerror or e}", "re-run with --debug and report the traceback", 1, debug)
    except Exception as e:  # a bug: still one line, with a way to learn more
        _fail(
            f"internal error: {type(e).__name__}: {e}",
            "re-run with --debug and report the traceback",
            1,
            debug,
        )
    sys.exit(result if isinstance(result, int) else 0)


def _path_hint(e: OSError) -> str:
    """What to check for a path that failed: permissions only when they are the cause."""
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "check the path and its permissions, or choose another --to / --cache"
    if e.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a folder: check the path"
    return "check the path, or choose another --to / --cache"


MAX_DETAILS = 20  # problem lines under one error; a fuzzed manifest can have thousands


def _fail(
    message: str, hint: Optional[str], code: int, debug: bool, details: Sequence[str] = ()
) -> NoReturn:
    if debug:  # the chain names URLs (requests: "with url: /x?token=..."): redacted too
        print(redact_text(traceback.format_exc()), end="", file=sys.stderr)
    print(f"error: {_shown(message)}", file=sys.stderr)
    if len(details) > 1:
        for line in details[:MAX_DETAILS]:
            print(f"  {_shown(line)}", file=sys.stderr)
        if len(details) > MAX_DETAILS:
            print(f"  ... and {len(details) - MAX_DETAILS} more", file=sys.stderr)
    if hint:
        print(f"hint: {_shown(hint)}", file=sys.stderr)
    sys.exit(code)


def _shown(text: str) -> str:
    """One printed line of an error: folded to one line, secrets masked, then control characters
    escaped (a file name cannot carry a terminal escape onto the screen)."""
    return printable(redact_text(one_line(text)))
