"""`dbdedup report`, `pairs`, `export`, `apply`, `undo`, `calibrate`: seeing and acting on the clusters."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

import click

from ..errors import DbdedupError
from ..matching import HASH_KINDS
from ..results import SORT_ORDERS
from ..terminal import printable
from .clustering import clustering_options, threshold_option, use_clustering
from .context import PathParam, note, open_db, settings_of


def register(cli: click.Group) -> None:
    for command in (report, pairs, export, apply, undo, calibrate):
        cli.add_command(command)


def _output_file(path: str) -> Path:
    """An output FILE given with -o or --png, its missing folders made (with the user's umask) before any work:
    every command that writes a file treats a folder that is not there yet alike."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        return
    with open(_output_file(path), "w", encoding="utf-8", newline="") as out:
        yield out


format_choice = click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv", "ndjson"]), default="table", show_default=True,
    help="table for people; json (the documented report), csv (one row per member) or ndjson for tools.",
)
output_option = click.option("--output", "-o", "output", type=PathParam(dir_okay=False), metavar="FILE",
                             help="Write to FILE instead of stdout.")


@click.command()
@clustering_options
@click.option("--sort", type=click.Choice(SORT_ORDERS), default="members",
              show_default=True, help="Cluster order: most members, most bytes reclaimable, loosest match, "
                                      "or keeper path.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Show at most this many clusters [default: 20 in the table, all for json/csv/ndjson].")
@format_choice
@output_option
@click.pass_context
def report(ctx, sort, limit, fmt, output, **options):
    """Summarise the duplicates and list the clusters, keeper first.

    Uses the stored clustering settings (those of the last match, report, export or apply
    that set any); options given here change them. Runs matching first when the pairs are
    not current, so it works right after `dbdedup load`. The JSON format is a stable
    contract: {"parameters", "summary", "clusters": [{"id", "keeper",
    "members": [{"path", "distance", "width", "height", "bytes", ...}]}]}.

    \b
    Example:
      dbdedup load ~/Pictures
      dbdedup report --limit 5
      dbdedup report --threshold 6 --format json -o clusters.json
      dbdedup report --reference ~/Pictures/originals --format csv > clusters.csv
    """
    from .. import report as rep
    from .. import results, verdicts

    if limit is None and fmt == "table":
        limit = 20
    with open_db(ctx) as conn:
        clustering = use_clustering(ctx, conn, options)
        settings = clustering.settings
        summary = results.collect_summary(conn, hash_kind=settings.hash_kind)
        clusters = results.iter_clusters(conn, sort=sort, limit=limit)
        with _output(output) as out:
            if fmt == "json":
                rep.write_json(settings, summary, clusters, out, sort=sort, limit=limit,
                               verdicts=verdicts.all_by_image(conn))
            elif fmt == "ndjson":
                rep.write_ndjson(clusters, out, verdicts=verdicts.all_by_image(conn))
            elif fmt == "csv":
                rep.write_csv(clusters, out)
            else:
                histogram = results.neighbour_histogram(conn, hash_kind=settings.hash_kind)
                rep.render_terminal(settings, summary, clusters, histogram, out, limit=limit,
                                    rule_note=clustering.rule_note, color=False if output else None)
    if output:
        note(ctx, f"wrote {output}")


@click.command()
@threshold_option(aliases=("--max-distance",))  # the name issue 11 gives it
@click.option("--hash", "hash_kind", type=click.Choice(HASH_KINDS), default=None,
              help="Which perceptual hash to compare [default: the kept setting, phash].")
@format_choice
@output_option
@click.pass_context
def pairs(ctx, threshold, hash_kind, fmt, output):
    """List every pair the clustering considers, with how it matched and its verdict.

    The review list people make by hand: each row is two paths, what matched
    them (pHash distance, a flipped/rotated/trimmed variant, the embedding
    similarity, or the same bytes) and the verification's verdict (verified and
    how, rejected and why, or pending). Verified pairs first, most similar
    first. --threshold is the clustering's, applied to every kind of pair as
    the clustering applies it: a pair found by its pHash is listed when within
    it; one found by a variant, the embedding or a crop window by that signal's
    own bound (its distance column still shows how far apart the pHashes are).
    Runs matching and verification first when needed.

    \b
    Example:
      dbdedup pairs --threshold 4
      dbdedup pairs --format csv -o pairs.csv
    """
    from .. import report as rep
    from .. import results
    from ..clusters import current_settings, ensure_verified_pairs
    from .verify_commands import verify_progress

    with open_db(ctx) as conn:
        settings = current_settings(conn).changed(threshold=threshold, hash_kind=hash_kind)
        with verify_progress(ctx) as progress:
            settings = ensure_verified_pairs(conn, settings, lock_wait=settings_of(ctx).lock_wait,
                                             on_wait=lambda message: note(ctx, message),
                                             verify_progress=progress).settings
        rows = results.iter_pairs(conn, settings)
        with _output(output) as out:
            if fmt == "table":
                shown = rep.render_pairs_terminal(rows, out, settings=settings)
                note(ctx, f"{shown:,} pairs")
            else:
                rep.write_pairs(rows, fmt, out)
    if output:
        note(ctx, f"wrote {output}")


@click.command()
@click.argument("target", type=PathParam())
@click.option("--layout", type=click.Choice(["folders", "html"]), default=None,
              help="folders: one folder per cluster; html: a contact sheet "
                   "[default: html when TARGET ends in .html, else folders].")
@click.option("--mode", type=click.Choice(["copy", "hardlink", "symlink"]), default="copy", show_default=True,
              help="For --layout folders: how files get into the folders.")
@clustering_options
@click.option("--sort", type=click.Choice(SORT_ORDERS), default="members", show_default=True, help="Cluster order.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Export at most this many clusters.")
@click.option("--thumbnail-size", type=click.IntRange(32, 1024), default=200, show_default=True,
              help="For html: thumbnail size in pixels.")
@click.pass_context
def export(ctx, target, layout, mode, sort, limit, thumbnail_size, **options):
    """Export the clusters as folders or as an HTML contact sheet.

    Folders: TARGET/<keeper name>/ holds the keeper and its near-duplicates
    (TARGET must be new or empty). HTML: one self-contained file with
    thumbnails side by side per cluster, keeper marked; open it in any browser.

    \b
    Example:
      dbdedup export review.html
      dbdedup export ~/dupes --layout folders --mode symlink
    """
    from .. import export as exp
    from .. import results, verdicts

    if layout is None:
        layout = "html" if target.lower().endswith((".html", ".htm")) else "folders"
    with open_db(ctx) as conn:
        settings = use_clustering(ctx, conn, options).settings
        summary = results.collect_summary(conn, hash_kind=settings.hash_kind)
        clusters = results.iter_clusters(conn, sort=sort, limit=limit)
        if layout == "html":
            shown = summary.near_duplicate_clusters if limit is None else min(limit, summary.near_duplicate_clusters)
            if shown > 2000:
                note(ctx, f"making thumbnails for {shown:,} clusters: this takes a while and makes a large page; "
                          "--limit N --sort bytes keeps the N clusters that free the most")
            path = exp.export_html(settings, summary, clusters, target, thumbnail_size=thumbnail_size,
                                   verdicts=verdicts.all_by_image(conn))
            total = summary.near_duplicate_clusters
            listed = (f"{shown:,} cluster{'' if shown == 1 else 's'}" if shown == total
                      else f"{shown:,} of {total:,} cluster{'' if total == 1 else 's'}")
            note(ctx, f"wrote {path} ({listed}, {path.stat().st_size:,} bytes); open it in a browser")
            return
        result = exp.export_folders(clusters, target, mode=mode)
    for path, reason in result.skipped:
        note(ctx, f"skipped {path}: {reason}")
    note(ctx, f"{len(result.folders):,} folders, {len(result.placed):,} files ({mode}) in {result.root}")


@click.command()
@click.option("--move-to", type=PathParam(file_okay=False), metavar="DIR",
              help="Move the duplicates under DIR (their full path re-created there); undo puts them back.")
@click.option("--delete", is_flag=True, help="Delete the duplicates. This cannot be undone.")
@click.option("--hardlink", is_flag=True,
              help="Replace exact duplicates (same SHA-256) by hard links to their keeper (only those with its "
                   "owner, group and mode; they then share its times); near-duplicates are left alone.")
@click.option("--yes", is_flag=True, help="Act. Without it, apply only prints the plan (a dry run).")
@click.option("--manifest", type=PathParam(dir_okay=False), metavar="FILE",
              help="Where to journal every action [default: a new timestamped file, path printed].")
@clustering_options
@click.pass_context
def apply(ctx, move_to, delete, hardlink, yes, manifest, **options):
    """Move, delete or hard-link the duplicates (every cluster member but its keeper).

    A dry run unless --yes. It acts on the stored clustering (the one `report` shows),
    with the options given here changing it. Keepers and files under a reference path
    (every one ever given with --reference, until --clear-references) are never
    touched. Before acting on a file, apply re-checks its size, modified time and
    SHA-256 against the database and skips it if anything changed. Every action
    is journaled in a manifest; `dbdedup undo MANIFEST` puts moved files back.

    \b
    Example:
      dbdedup apply --move-to ~/dbdedup-removed            # the plan only
      dbdedup apply --move-to ~/dbdedup-removed --yes      # act
      dbdedup undo ~/.local/state/dbdedup/manifests/apply-move-....jsonl
    """
    from .. import apply as ap
    from ..report import human_bytes

    chosen = [name for name, on in (("move", move_to is not None), ("delete", delete), ("hardlink", hardlink)) if on]
    if len(chosen) != 1:
        raise DbdedupError("choose one action: --move-to DIR, --delete or --hardlink",
                           hint="dbdedup apply --move-to ~/dbdedup-removed (a dry run until you add --yes)")
    action = chosen[0]
    with open_db(ctx) as conn:
        settings = use_clustering(ctx, conn, options).settings
        plan = ap.plan_actions(conn, action, move_to=move_to, protected_paths=settings.reference_paths)
        if not yes:
            checks = [(item, ap.quick_check(item)) for item in plan.actions]
            for line in ap.describe_plan(plan, checks):
                click.echo(printable(line))
            will_skip = sum(1 for _, problem in checks if problem)
            freed = sum(item.freed_bytes for item, problem in checks if not problem)
            verb = {"move": "move", "delete": "delete", "hardlink": "replace by hard links"}[action]
            click.echo(f"dry run: would {verb} {len(plan.actions) - will_skip:,} files, freeing {human_bytes(freed)} "
                       f"({freed:,} bytes); {len(plan.left_alone):,} left alone"
                       + (f"; {will_skip:,} will be skipped (why: above)" if will_skip else ""))
            if action == "delete":
                click.echo("note: --delete cannot be undone; --move-to DIR can")
            click.echo("nothing was changed; add --yes to act")
            return
        if action == "delete":
            note(ctx, "deleting duplicates: this cannot be undone")
        manifest_path = Path(manifest) if manifest else ap.default_manifest_path(action)
        note(ctx, f"manifest: {manifest_path}")

        def on_event(kind: str, path: str, detail: str) -> None:
            if kind == "skip":
                note(ctx, f"skipped {path}: {detail}")
            elif kind == "failed":
                note(ctx, f"failed  {path}: {detail}")
            elif settings_of(ctx).verbose:
                note(ctx, f"{action:<8} {path}" + (f" -> {detail}" if detail else ""))

        result = ap.execute_plan(conn, plan, manifest_path, parameters=settings.to_json(), on_event=on_event)
    click.echo(f"{action}: {len(result.done):,} files done, {human_bytes(result.bytes_freed)} "
               f"({result.bytes_freed:,} bytes) freed; {len(result.skipped):,} skipped, {len(result.failed):,} failed")
    if action == "move":
        click.echo(printable(f"to put them back: dbdedup undo {result.manifest}"))
    else:
        click.echo(printable(f"manifest: {result.manifest}"))
    if result.failed:
        ctx.exit(1)


@click.command()
@click.argument("manifest", type=PathParam(dir_okay=False))
@click.pass_context
def undo(ctx, manifest):
    """Undo an apply run from its manifest: moved files go back where they were.

    Hard-linked duplicates get their own copy of the bytes again; deleted files
    cannot come back (undo lists them). Actions a crash interrupted are rolled
    back. Running undo twice is harmless.

    \b
    Example:
      dbdedup undo ~/.local/state/dbdedup/manifests/apply-move-20260101T120000000000Z.jsonl
    """
    from .. import apply as ap

    with open_db(ctx) as conn:
        result = ap.undo_manifest(conn, manifest)
    for path, reason in result.skipped:
        note(ctx, f"skipped {path}: {reason}")
    for path in result.cannot_undo:
        note(ctx, f"deleted, cannot be restored: {path}")
    click.echo(f"undo {result.action}: {len(result.restored):,} restored, {len(result.rolled_back):,} "
               f"interrupted actions rolled back, {len(result.skipped):,} skipped, "
               f"{len(result.cannot_undo):,} cannot be undone")
    if result.skipped:
        ctx.exit(1)


@click.command()
@click.option("--hash", "hash_kind", type=click.Choice(HASH_KINDS), default="phash", show_default=True,
              help="Which perceptual hash to measure.")
@click.option("--png", type=PathParam(dir_okay=False), metavar="FILE", help="Also draw the histogram into FILE.")
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help="Beyond the stored pairs, measure this many hash values, each against all of them "
                   "[default: about 20 million comparisons' worth, at least 200].")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table (a chart and the reasoning) or json.")
@click.pass_context
def calibrate(ctx, hash_kind, png, sample, fmt):
    """Suggest a threshold from the nearest-neighbour distances of the loaded images.

    Prints how far each image is from its closest other image, where the
    near-duplicate mode ends and the unrelated mode begins, and a threshold in
    between, with the reasoning.

    \b
    Example:
      dbdedup calibrate
      dbdedup calibrate --png distances.png
      dbdedup report --threshold "$(dbdedup calibrate --format json | jq .suggested_threshold)"
    """
    import json

    from .. import calibrate as cal
    from ..report import histogram_lines

    png_file = _output_file(png) if png else None
    with open_db(ctx) as conn:
        result = cal.calibrate(conn, hash_kind=hash_kind, sample=sample, lock_wait=settings_of(ctx).lock_wait)
    s = result.suggestion
    if png_file is not None:
        cal.histogram_png(result, png_file)
        note(ctx, f"wrote {png}")
    if fmt == "json":
        click.echo(json.dumps({
            "hash": result.hash_kind, "images": result.images, "exact_up_to": result.exact_up_to,
            "beyond_images": result.beyond_images, "beyond_hashes": result.beyond_hashes,
            "sampled_hashes": result.sampled_hashes,
            "histogram": {str(d): n for d, n in enumerate(result.histogram) if n},
            "suggested_threshold": s.threshold, "near_mode_end": s.near_mode_end,
            "unrelated_start": s.unrelated_start, "near_images": s.near_images,
            "unrelated_images": s.unrelated_images, "clear_valley": s.clear_valley, "reasoning": s.reasoning,
        }, indent=2))
        return
    click.echo(f"nearest-neighbour {hash_kind} distance of {result.images:,} images (bits of 64"
               + (f"; beyond {result.exact_up_to}, estimated from a sample" if result.sampled else "") + "):")
    counts = [(d, n) for d, n in enumerate(result.histogram) if n]
    for line in histogram_lines(counts, threshold=s.threshold, label="images"):
        click.echo(line)
    click.echo("")
    for reason in s.reasoning:
        click.echo(f"- {reason}")
    click.echo(f"suggested threshold: {s.threshold}   (dbdedup report --threshold {s.threshold})")
