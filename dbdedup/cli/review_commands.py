"""`dbdedup verdicts` (list, export, import, add, remove) and `dbdedup review` (the review page)."""

from __future__ import annotations

import getpass
import os
import sys
import tempfile

import click

from ..errors import DbdedupError
from ..terminal import printable
from .clustering import clustering_options, use_clustering
from .context import PathParam, note, open_db, settings_of
from .output import emit_rows, format_option


def register(cli: click.Group) -> None:
    cli.add_command(verdicts)
    cli.add_command(review)


def _user() -> str:
    """Who decides: the login name ($USER, $LOGNAME, ...)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _reclustered(ctx, conn) -> None:
    from .. import verdicts as vd

    result = vd.recluster(conn)
    if result is not None:
        note(ctx, f"clusters rebuilt with the verdicts: {result.clusters:,} clusters ({result.settings.describe()})")


@click.group()
def verdicts():
    """Reviewers' decisions, kept in the database and honoured by clustering.

    A verdict names images by content (SHA-256), so it survives moves, renames and
    reloads. Kinds: not_duplicate (two images never link), not_in_cluster (an image
    links only by duplicate verdicts), keeper (an image is kept in its cluster),
    duplicate (two images link whatever their distance). `dbdedup review` writes them
    from a web page; these commands list, share and edit them.

    \b
    Example:
      dbdedup verdicts add not_duplicate ~/Pictures/a.jpg ~/Pictures/b.jpg
      dbdedup verdicts list --format csv
      dbdedup verdicts export team.json && dbdedup verdicts import team.json
    """


_COLUMNS = ("id", "kind", "paths_a", "paths_b", "stale", "cluster_id_a", "cluster_id_b", "decided_by", "decided_at",
            "note", "sha256_a", "sha256_b", "given_on")
_TABLE_COLUMNS = ("id", "kind", "images", "stale", "decided_by", "decided_at", "note")


@verdicts.command("list")
@click.option("--stale/--current", "stale", default=None,
              help="Only the stale verdicts (an image they name is not loaded), or only the current ones "
                   "[default: all].")
@format_option(choices=("table", "json", "csv"))
@click.pass_context
def list_command(ctx, stale, fmt):
    """List the verdicts with the images they name now (stale = an image is not loaded).

    \b
    Example:
      dbdedup verdicts list
      dbdedup verdicts list --stale --format json
    """
    from .. import verdicts as vd

    with open_db(ctx) as conn:
        found = vd.list_verdicts(conn, stale=stale)
    rows = []
    for v in found:
        sides = [list(p) for p in v.paths] + [[]] * (2 - len(v.paths))
        shas = [s.hex() for s in v.sha256] + [None] * (2 - len(v.sha256))
        clusters = list(v.cluster_ids) + [None] * (2 - len(v.cluster_ids))
        row = {"id": v.id, "kind": v.kind, "stale": v.stale, "decided_by": v.decided_by, "decided_at": v.decided_at,
               "note": v.note, "sha256_a": shas[0], "sha256_b": shas[1], "cluster_id_a": clusters[0],
               "cluster_id_b": clusters[1]}
        for key, paths in (("paths_a", sides[0]), ("paths_b", sides[1])):
            row[key] = paths if fmt == "json" else "; ".join(paths)
        given_on = None if v.given_on is None else [s.hex() for s in v.given_on]
        row["given_on"] = given_on if fmt == "json" or given_on is None else "; ".join(given_on)
        row["images"] = "  /  ".join("; ".join(p) or "(not loaded)" for p in sides[:len(v.sha256)])
        row["decided_at"] = v.decided_at if fmt != "table" else v.decided_at.strftime("%Y-%m-%d %H:%M")
        rows.append(row)
    emit_rows(rows, _TABLE_COLUMNS if fmt == "table" else _COLUMNS, fmt, title="verdicts")
    n_stale = sum(1 for v in found if v.stale)
    if n_stale:
        note(ctx, f"{n_stale:,} stale verdict{'s' if n_stale != 1 else ''}: an image named is not loaded now "
                  "(kept; applied again when it is)")


@verdicts.command("export")
@click.argument("file", type=PathParam(dir_okay=False, allow_dash=True))
@click.pass_context
def export_command(ctx, file):
    """Write every verdict to FILE as JSON ('-' for stdout), to share or keep.

    \b
    Example:
      dbdedup verdicts export verdicts.json
    """
    from .. import verdicts as vd

    with open_db(ctx) as conn:
        if file == "-":
            n = vd.export_json(conn, sys.stdout)
        else:
            with open(file, "w", encoding="utf-8") as out:
                n = vd.export_json(conn, out)
    note(ctx, f"wrote {n:,} verdicts" + ("" if file == "-" else f" to {file}"))


@verdicts.command("import")
@click.argument("file", type=PathParam(dir_okay=False))
@click.pass_context
def import_command(ctx, file):
    """Import verdicts from a JSON file written by `dbdedup verdicts export`.

    The whole file is checked first: a malformed file imports nothing. A verdict on an
    image or pair that already has one replaces it only when it is newer.

    \b
    Example:
      dbdedup verdicts import team.json
    """
    from .. import verdicts as vd

    parsed = vd.parse_file(file, default_by=_user())
    with open_db(ctx) as conn:
        result = vd.import_verdicts(conn, parsed)
        click.echo(f"imported {len(parsed):,} verdicts: {result.added:,} new, {result.replaced:,} replaced by newer, "
                   f"{result.kept:,} kept (the stored one is as new or newer)")
        _reclustered(ctx, conn)


@verdicts.command("add")
@click.argument("kind", type=click.Choice(("not_duplicate", "not_in_cluster", "keeper", "duplicate")))
@click.argument("images", nargs=-1, required=True, metavar="IMAGE [IMAGE]", type=PathParam())
@click.option("--note", "note_text", metavar="TEXT", help="A note kept with the verdict.")
@click.pass_context
def add_command(ctx, kind, images, note_text):
    """Record a verdict on one image (not_in_cluster, keeper) or two (not_duplicate, duplicate).

    IMAGE is a path as loaded, or sha256:<hex>. A verdict replaces any earlier one on the
    same image or pair; the clusters are rebuilt to honour it.

    \b
    Example:
      dbdedup verdicts add not_duplicate ~/Pictures/flag_fr.png ~/Pictures/flag_it.png
      dbdedup verdicts add keeper ~/Pictures/best.jpg --note "sharpest"
    """
    from .. import verdicts as vd

    if len(images) > 2:
        raise DbdedupError("a verdict names one or two images", hint=f"dbdedup verdicts add {kind} IMAGE [IMAGE]")
    with open_db(ctx) as conn:
        named = [vd.resolve_image(conn, ref) for ref in images]
        if kind == "keeper" and named[0].id:
            verdict_id = vd.choose_keeper(conn, named[0], by=_user(), note=note_text)
        else:
            verdict_id = vd.add(conn, kind, *(i.sha256 for i in named), by=_user(), note=note_text)
        click.echo(printable(f"verdict {verdict_id}: {kind} " + " / ".join(i.path for i in named)))
        _reclustered(ctx, conn)


@verdicts.command("remove")
@click.argument("ids", nargs=-1, type=int)
@click.option("--image", "image_ref", metavar="IMAGE", help="Remove every verdict naming this image instead.")
@click.pass_context
def remove_command(ctx, ids, image_ref):
    """Forget verdicts by id (see `dbdedup verdicts list`), or every verdict naming an image.

    \b
    Example:
      dbdedup verdicts remove 12 13
      dbdedup verdicts remove --image ~/Pictures/a.jpg
    """
    from .. import verdicts as vd

    if bool(ids) == bool(image_ref):
        raise DbdedupError("name verdict ids or --image, one of the two", hint="dbdedup verdicts list shows the ids")
    with open_db(ctx) as conn:
        if image_ref:
            removed = vd.remove_naming(conn, vd.resolve_image(conn, image_ref).sha256)
        else:
            removed = vd.remove(conn, ids)
            missing = sorted(set(ids) - set(removed))
            if missing:
                note(ctx, "no verdict with id " + ", ".join(map(str, missing)))
        click.echo(f"removed {len(removed):,} verdicts")
        if removed:
            _reclustered(ctx, conn)


def _open_in_browser(url: str) -> str | None:
    """Open ``url`` through a private redirect file, so the token never shows in the browser's
    command line (which other users can list); returns the file to remove afterwards."""
    import html
    import webbrowser

    fd, path = tempfile.mkstemp(prefix="dbdedup-review-", suffix=".html")  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f'<!DOCTYPE html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={html.escape(url)}">'
                f'<a href="{html.escape(url)}">dbdedup review</a>')
    if not webbrowser.open("file://" + path):
        os.unlink(path)
        return None
    return path


def _reconnector(ctx):
    """A function that connects again to the database the global options name, for the review page to
    replace a connection that broke. It does not start the embedded server: one the user stopped
    stays stopped until they start it."""
    from ..db import embedded_uri, open_connection, register_vector_if_present, resolve_target

    settings = settings_of(ctx)
    target = resolve_target(settings.db, settings.data_dir)

    def reconnect():
        if target.embedded:
            dsn = embedded_uri(target.data_dir)
            if dsn is None:
                raise DbdedupError(f"the embedded server in {target.data_dir} is not running")
        else:
            dsn = target.dsn or ""
        conn = open_connection(dsn)
        try:
            register_vector_if_present(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    return reconnect


@click.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Port on 127.0.0.1 [default: a free one].")
@click.option("--move-to", type=PathParam(file_okay=False), metavar="DIR",
              help="Where 'apply what I reviewed' moves the duplicates (as `apply --move-to`; `dbdedup undo` "
                   "puts them back). Without it the page records verdicts only.")
@click.option("--no-browser", is_flag=True, help="Print the URL only; do not open a browser.")
@clustering_options
@click.pass_context
def review(ctx, port, move_to, no_browser, **options):
    """Review the clusters in your browser and record verdicts.

    Serves a page on 127.0.0.1 and opens it; the URL carries a random token and any
    request without it is refused, so only you can use it. One cluster at a time
    (thumbnails side by side, how each member matched its keeper); buttons and keys
    record verdicts (j/k next/previous cluster, n not a duplicate, x not in cluster,
    K keep this, u forget, c compare large, a apply, ? all keys), and the clusters are
    rebuilt at once. With --move-to, "apply what I reviewed" moves the duplicates of the
    clusters you gave a verdict, after a dry run, through apply's checks and manifest.
    Ctrl-C stops it.

    \b
    Example:
      dbdedup review
      dbdedup review --move-to ~/dbdedup-removed --port 8765 --no-browser
    """
    from .. import review as rv

    opened: list[str] = []

    def ready(url: str) -> None:
        click.echo(url)
        sys.stdout.flush()
        note(ctx, "review page on 127.0.0.1 (only with the token above); Ctrl-C stops it")
        if not no_browser:
            redirect = _open_in_browser(url)
            if redirect:
                opened.append(redirect)
            else:
                note(ctx, "no browser could be opened: open the URL above")

    with open_db(ctx) as conn:
        use_clustering(ctx, conn, options)
        try:
            rv.serve(conn, port=port, move_to=move_to, user=_user(), on_ready=ready, reconnect=_reconnector(ctx))
        except KeyboardInterrupt:
            note(ctx, "review stopped")
        finally:
            for path in opened:
                try:
                    os.unlink(path)
                except OSError:
                    pass
