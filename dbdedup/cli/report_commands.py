"""`dbdedup report`, `pairs`, `export`, `apply`, `undo`, `calibrate`: seeing and acting on the clusters."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

import click

from ..clusters import KEEPER_RULES
from ..errors import DbdedupError
from ..matching import HASH_KINDS
from .main import note, open_db, settings_of


def register(cli: click.Group) -> None:
    for command in (report, pairs, export, apply, undo, calibrate):
        cli.add_command(command)


def _default_threshold() -> int:
    from ..matching import DEFAULT_THRESHOLD

    return DEFAULT_THRESHOLD


def rule_options(f, inherit: bool = False):
    """--rule/--min-similarity/--confirm-distance: which signals link two images."""
    from ..clusters import RULES
    from ..embedding import DEFAULT_CONFIRM_DISTANCE, DEFAULT_MIN_SIMILARITY
    from ..matching import DEFAULT_TRANSFORM_DISTANCE

    where = "the current clustering's, else " if inherit else ""
    f = click.option("--transform-distance", type=click.IntRange(0, 32), default=None,
                     help="transforms and fused rules: largest distance of a flipped, rotated or border-trimmed "
                          f"variant [default: {where}{DEFAULT_TRANSFORM_DISTANCE}].")(f)
    f = click.option("--confirm-distance", type=click.IntRange(0, 64), default=None,
                     help="fused rule: an embedding match also needs a pHash (or flipped/rotated/trimmed variant) "
                          f"within this distance [default: {where}{DEFAULT_CONFIRM_DISTANCE}].")(f)
    f = click.option("--min-similarity", type=click.FloatRange(0, 1, min_open=True), default=None,
                     help=f"Cosine similarity of the embeddings that counts as a match [default: {where}"
                          f"{DEFAULT_MIN_SIMILARITY}].")(f)
    f = click.option("--rule", type=click.Choice(RULES), default=None,
                     help="What links two images: hash (pHash within the threshold), transforms (also a flipped, "
                          "rotated or border-trimmed copy), embedding (similarity only), fused (transforms, or an "
                          f"embedding match confirmed by a looser hash bound) [default: {where}fused].")(f)
    return f


def clustering_options(inherit: bool = False):
    """--threshold/--hash/--rule/--keeper/--reference: which clustering a command reads (made current first).

    With ``inherit`` (apply), options not given take the current clustering's values, so apply
    acts on the clustering the user last reviewed with `report` or `export`."""
    where = "the current clustering's, else " if inherit else ""

    def decorate(f):
        f = click.option(
            "--reference", "reference_paths", multiple=True, type=click.Path(), metavar="PATH",
            help="A folder (or file) whose images are references: never removed, preferred as keepers. "
                 "Repeatable." + (" [default: the current clustering's]" if inherit else ""),
        )(f)
        f = click.option(
            "--keeper", "keeper_rule", type=click.Choice(KEEPER_RULES), default=None,
            help=f"Which member of a cluster to keep: the largest (most pixels), newest or oldest "
                 f"[default: {where}largest].",
        )(f)
        f = rule_options(f, inherit)
        f = click.option("--hash", "hash_kind", type=click.Choice(HASH_KINDS), default=None,
                         help=f"Which perceptual hash to compare [default: {where}phash].")(f)
        f = click.option("--threshold", type=click.IntRange(0, 64), default=None,
                         help="Largest Hamming distance (bits of 64) that counts as a near-duplicate "
                              f"[default: {where}dbdedup.matching.DEFAULT_THRESHOLD, {_default_threshold()}].")(f)
        return f

    return decorate


def _params(threshold, hash_kind, keeper_rule, reference_paths, sort="members", limit=None, current=None,
            rule=None, min_similarity=None, confirm_distance=None, transform_distance=None):
    """The clustering parameters: the options given, else ``current`` (a current_parameters dict), else defaults."""
    from ..clusters import DEFAULT_RULE
    from ..report import ReportParameters

    current = current or {}
    if reference_paths:
        references = tuple(os.path.abspath(p) for p in reference_paths)
    else:
        references = tuple(current.get("reference_paths") or ())
    return ReportParameters(
        threshold=threshold if threshold is not None else current.get("threshold", _default_threshold()),
        hash_kind=hash_kind or current.get("hash_kind", "phash"),
        keeper_rule=keeper_rule or current.get("keeper_rule", "largest"),
        reference_paths=references,
        sort=sort,
        limit=limit,
        rule=rule or current.get("rule") or DEFAULT_RULE,
        min_similarity=min_similarity if min_similarity is not None else current.get("min_similarity"),
        confirm_distance=confirm_distance if confirm_distance is not None else current.get("confirm_distance"),
        transform_distance=transform_distance if transform_distance is not None else current.get("transform_distance"),
    )


def _prepare(ctx: click.Context, conn, params) -> None:
    from ..report import ensure_current

    note(ctx, f"clustering: {params.hash_kind} distance <= {params.threshold}, rule {params.rule}, "
              f"keeper {params.keeper_rule}"
              + (f", {len(params.reference_paths)} reference path(s)" if params.reference_paths else ""))
    ensure_current(conn, params)


@contextmanager
def _output(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8", newline="") as out:
        yield out


format_choice = click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv", "ndjson"]), default="table", show_default=True,
    help="table for people; json (the documented report), csv (one row per member) or ndjson for tools.",
)
output_option = click.option("--output", "-o", "output", type=click.Path(dir_okay=False), metavar="FILE",
                             help="Write to FILE instead of stdout.")


@click.command()
@clustering_options()
@click.option("--sort", type=click.Choice(["members", "bytes", "distance", "path"]), default="members",
              show_default=True, help="Cluster order: most members, most bytes reclaimable, loosest match, "
                                      "or keeper path.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="Show at most this many clusters [default: 20 in the table, all for json/csv/ndjson].")
@format_choice
@output_option
@click.pass_context
def report(ctx, threshold, hash_kind, rule, min_similarity, confirm_distance, transform_distance, keeper_rule,
           reference_paths, sort, limit, fmt, output):
    """Summarise the duplicates and list the clusters, keeper first.

    Runs matching first when the pairs for this threshold are not known yet,
    so it works right after `dbdedup load`. The JSON format is a stable
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

    if limit is None and fmt == "table":
        limit = 20
    params = _params(threshold, hash_kind, keeper_rule, reference_paths, sort, limit, rule=rule,
                     min_similarity=min_similarity, confirm_distance=confirm_distance,
                     transform_distance=transform_distance)
    with open_db(ctx) as conn:
        _prepare(ctx, conn, params)
        summary = rep.collect_summary(conn, hash_kind=params.hash_kind)
        clusters = rep.iter_clusters(conn, sort=sort, limit=limit)
        with _output(output) as out:
            if fmt == "json":
                rep.write_json(params, summary, clusters, out)
            elif fmt == "ndjson":
                rep.write_ndjson(clusters, out)
            elif fmt == "csv":
                rep.write_csv(clusters, out)
            else:
                histogram = rep.neighbour_histogram(conn, hash_kind=params.hash_kind)
                rep.render_terminal(params, summary, clusters, histogram, out,
                                    color=False if output else None)
    if output:
        note(ctx, f"wrote {output}")


@click.command()
@click.option("--max-distance", type=click.IntRange(0, 64), default=None,
              help="Largest distance to list [default: dbdedup.matching.DEFAULT_THRESHOLD].")
@click.option("--hash", "hash_kind", type=click.Choice(HASH_KINDS), default="phash", show_default=True,
              help="Which perceptual hash to compare.")
@format_choice
@output_option
@click.pass_context
def pairs(ctx, max_distance, hash_kind, fmt, output):
    """List every pair of similar images up to a distance, most similar first.

    The review list people make by hand: each row is two paths and their
    Hamming distance; exact = byte-identical files.

    \b
    Example:
      dbdedup pairs --max-distance 4
      dbdedup pairs --format csv -o pairs.csv
    """
    from .. import report as rep

    max_distance = _default_threshold() if max_distance is None else max_distance
    with open_db(ctx) as conn:
        rep.ensure_pairs(conn, max_distance=max_distance, hash_kind=hash_kind)
        rows = rep.iter_pairs(conn, max_distance=max_distance, hash_kind=hash_kind)
        with _output(output) as out:
            if fmt == "table":
                shown = rep.render_pairs_terminal(rows, out, max_distance=max_distance)
                note(ctx, f"{shown:,} pairs")
            else:
                rep.write_pairs(rows, fmt, out)
    if output:
        note(ctx, f"wrote {output}")


@click.command()
@click.argument("target", type=click.Path())
@click.option("--layout", type=click.Choice(["folders", "html"]), default=None,
              help="folders: one folder per cluster; html: a contact sheet "
                   "[default: html when TARGET ends in .html, else folders].")
@click.option("--mode", type=click.Choice(["copy", "hardlink", "symlink"]), default="copy", show_default=True,
              help="For --layout folders: how files get into the folders.")
@clustering_options()
@click.option("--sort", type=click.Choice(["members", "bytes", "distance", "path"]), default="members",
              show_default=True, help="Cluster order.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Export at most this many clusters.")
@click.option("--thumbnail-size", type=click.IntRange(32, 1024), default=200, show_default=True,
              help="For html: thumbnail size in pixels.")
@click.pass_context
def export(ctx, target, layout, mode, threshold, hash_kind, rule, min_similarity, confirm_distance, transform_distance,
           keeper_rule, reference_paths, sort, limit, thumbnail_size):
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
    from .. import report as rep

    if layout is None:
        layout = "html" if target.lower().endswith((".html", ".htm")) else "folders"
    params = _params(threshold, hash_kind, keeper_rule, reference_paths, sort, limit, rule=rule,
                     min_similarity=min_similarity, confirm_distance=confirm_distance,
                     transform_distance=transform_distance)
    with open_db(ctx) as conn:
        _prepare(ctx, conn, params)
        summary = rep.collect_summary(conn, hash_kind=params.hash_kind)
        clusters = rep.iter_clusters(conn, sort=sort, limit=limit)
        if layout == "html":
            shown = summary.near_duplicate_clusters if limit is None else min(limit, summary.near_duplicate_clusters)
            if shown > 2000:
                note(ctx, f"making thumbnails for {shown:,} clusters: this takes a while and makes a large page; "
                          "--limit N --sort bytes keeps the N clusters that free the most")
            path = exp.export_html(params, summary, clusters, target, thumbnail_size=thumbnail_size)
            note(ctx, f"wrote {path} ({summary.near_duplicate_clusters:,} clusters, "
                      f"{path.stat().st_size:,} bytes); open it in a browser")
            return
        result = exp.export_folders(clusters, target, mode=mode)
    for path, reason in result.skipped:
        note(ctx, f"skipped {path}: {reason}")
    note(ctx, f"{len(result.folders):,} folders, {len(result.placed):,} files ({mode}) in {result.root}")


@click.command()
@click.option("--move-to", type=click.Path(file_okay=False), metavar="DIR",
              help="Move the duplicates under DIR (their full path re-created there); undo puts them back.")
@click.option("--delete", is_flag=True, help="Delete the duplicates. This cannot be undone.")
@click.option("--hardlink", is_flag=True,
              help="Replace exact duplicates (same SHA-256) by hard links to their keeper (they then share "
                   "its permissions and times); near-duplicates are left alone.")
@click.option("--yes", is_flag=True, help="Act. Without it, apply only prints the plan (a dry run).")
@click.option("--manifest", type=click.Path(dir_okay=False), metavar="FILE",
              help="Where to journal every action [default: a new timestamped file, path printed].")
@clustering_options(inherit=True)
@click.pass_context
def apply(ctx, move_to, delete, hardlink, yes, manifest, threshold, hash_kind, rule, min_similarity, confirm_distance,
          transform_distance, keeper_rule, reference_paths):
    """Move, delete or hard-link the duplicates (every cluster member but its keeper).

    A dry run unless --yes. Keepers and files under a --reference path are never
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
        from ..clusters import current_parameters

        params = _params(threshold, hash_kind, keeper_rule, reference_paths, current=current_parameters(conn),
                         rule=rule, min_similarity=min_similarity, confirm_distance=confirm_distance,
                         transform_distance=transform_distance)
        _prepare(ctx, conn, params)
        plan = ap.plan_actions(conn, action, move_to=move_to, protected_paths=params.reference_paths)
        if not yes:
            checks = [(item, ap.quick_check(item)) for item in plan.actions]
            for line in ap.describe_plan(plan, checks):
                click.echo(line)
            will_skip = sum(1 for _, problem in checks if problem)
            freed = sum(item.size_bytes for item, problem in checks if not problem)
            verb = {"move": "move", "delete": "delete", "hardlink": "replace by hard links"}[action]
            click.echo(f"dry run: would {verb} {len(plan.actions) - will_skip:,} files, freeing {human_bytes(freed)} "
                       f"({freed:,} bytes); {len(plan.left_alone):,} left alone"
                       + (f"; {will_skip:,} changed since loading, will be skipped" if will_skip else ""))
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

        result = ap.execute_plan(conn, plan, manifest_path, parameters=params.to_json(), on_event=on_event)
    click.echo(f"{action}: {len(result.done):,} files done, {human_bytes(result.bytes_freed)} "
               f"({result.bytes_freed:,} bytes) freed; {len(result.skipped):,} skipped, {len(result.failed):,} failed")
    if action == "move":
        click.echo(f"to put them back: dbdedup undo {result.manifest}")
    else:
        click.echo(f"manifest: {result.manifest}")
    if result.failed:
        ctx.exit(1)


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
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
@click.option("--png", type=click.Path(dir_okay=False), metavar="FILE", help="Also draw the histogram into FILE.")
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

    with open_db(ctx) as conn:
        result = cal.calibrate(conn, hash_kind=hash_kind, sample=sample)
    s = result.suggestion
    if png:
        cal.histogram_png(result, png)
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
