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

from . import __version__, api
from .config import DEBUG_ENV
from .errors import DatastageError, InsufficientSpace
from .units import human_bytes

EXIT_INTERRUPTED = 130

_quiet = click.option(
    "-q", "--quiet", is_flag=True, default=None, help="No progress bars or messages."
)
_debug = click.option(
    "--debug", is_flag=True, help="Show tracebacks of errors.", expose_value=False
)
_to = click.option(
    "--to",
    "to",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder that receives the dataset (it is staged at DIR/<name>/).",
)
_cache = click.option(
    "--cache",
    type=click.Path(file_okay=False),
    default=None,
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
    metavar="TEXT",
    help="Prefer the URLs that contain TEXT (e.g. a host name) [env DATASTAGE_MIRROR].",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="datastage")
@_debug
def cli() -> None:
    """Get datasets onto fast local disk, verified and ready to train."""


@cli.command()
@click.argument("target")
@_to
@_cache
@_connections
@_mirror
@_quiet
@_debug
def get(
    target: str,
    to: str,
    cache: Optional[str],
    connections: Optional[int],
    mirror: Optional[str],
    quiet: Optional[bool],
) -> None:
    """Download, verify and stage TARGET (a dataset name or a manifest file).

    Prints the path of the staged dataset root on stdout.
    """
    click.echo(
        api.get(target, to=to, cache=cache, quiet=quiet, connections=connections, mirror=mirror)
    )


@cli.command()
@click.argument("target")
@_cache
@_connections
@_mirror
@_quiet
@_debug
def fetch(
    target: str,
    cache: Optional[str],
    connections: Optional[int],
    mirror: Optional[str],
    quiet: Optional[bool],
) -> None:
    """Download and verify TARGET into the cache without staging it; prints the cached files."""
    for path in api.fetch(target, cache=cache, quiet=quiet, connections=connections, mirror=mirror):
        click.echo(path)


@cli.command()
@click.argument("target")
@_to
@_quiet
@_debug
def verify(target: str, to: str, quiet: Optional[bool]) -> None:
    """Re-hash the staged copy of TARGET against what was recorded when it was staged."""
    click.echo(api.verify(target, to=to, quiet=quiet))


@cli.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_debug
def list_(as_json: bool) -> None:
    """The datasets datastage knows."""
    manifests = api.list_datasets()
    if as_json:
        rows = [
            {
                "name": m.name,
                "size": m.total_size,
                "license": m.license,
                "description": m.description,
            }
            for m in manifests
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    table = [(m.name, _size(m.total_size), m.license or "-", m.description) for m in manifests]
    widths = [
        max(len(row[i]) for row in [("NAME", "SIZE", "LICENSE", ""), *table]) for i in range(3)
    ]
    for row in [("NAME", "SIZE", "LICENSE", "DESCRIPTION"), *table]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])


@cli.command()
@click.argument("target")
@click.option(
    "--to",
    "to",
    type=click.Path(file_okay=False),
    default=None,
    help="Also say whether it is staged under this folder.",
)
@_cache
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_debug
def info(target: str, to: Optional[str], cache: Optional[str], as_json: bool) -> None:
    """Everything known about TARGET: manifest, cache and staging state."""
    details = api.info(target, to=to, cache=cache)
    if as_json:
        click.echo(json.dumps(details, indent=2))
        return
    for key in ("name", "description", "homepage", "license", "version", "root", "manifest"):
        if details.get(key):
            click.echo(f"{key + ':':13}{details[key]}")
    click.echo(f"{'size:':13}{_size(details['size'])}")
    if "staged" in details:
        click.echo(f"{'staged:':13}{details['staged'] or 'no'}")
    for f in details["files"]:
        click.echo(f"file:        {f['name']}  ({_size(f['size'])})")
        for url in f["urls"]:
            click.echo(f"  url:       {url}")
        for digest in f["digests"] or ["(not pinned)"]:
            click.echo(f"  digest:    {digest}")
        click.echo(f"  cached:    {f['cached'] or 'no'}")
    if details.get("citation"):
        click.echo(f"{'citation:':13}{details['citation'].strip()}")


def _size(n: Optional[int]) -> str:
    return human_bytes(n) if n is not None else "?"


# -- entry point -----------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        result = cli.main(args=args, prog_name="datastage", standalone_mode=False)
    except click.ClickException as e:
        _fail(e.format_message(), "run 'datastage --help' for usage", e.exit_code, debug)
    except (KeyboardInterrupt, click.Abort):
        _fail("interrupted; re-run to resume", None, EXIT_INTERRUPTED, debug)
    except DatastageError as e:
        _fail(e.message, e.hint, e.exit_code, debug)
    except BrokenPipeError:
        sys.stderr.close()  # stdout's reader went away (e.g. `| head`): not an error worth a word
        os._exit(0)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            error = InsufficientSpace(e.filename or "the target", None, 0)
            _fail(error.message, error.hint, error.exit_code, debug)
        where = f": {e.filename}" if e.filename else ""
        _fail(f"{e.strerror or e}{where}", None, 1, debug)
    except Exception as e:  # a bug: still one line, with a way to learn more
        _fail(
            f"internal error: {type(e).__name__}: {e}",
            "re-run with --debug and report the traceback",
            1,
            debug,
        )
    sys.exit(result if isinstance(result, int) else 0)


def _fail(message: str, hint: Optional[str], code: int, debug: bool) -> NoReturn:
    if debug:
        traceback.print_exc()
    print(f"error: {_one_line(message)}", file=sys.stderr)
    if hint:
        print(f"hint: {_one_line(hint)}", file=sys.stderr)
    sys.exit(code)


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())
