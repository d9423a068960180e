"""The clustering options shared by match, report, export and apply, and how a command uses them.

Each option left out keeps the value stored in the database (``dbdedup.clusters.ClusterSettings``);
each one given changes it for later commands too. ``--reference`` adds a reference path to the
stored ones; only ``--clear-references`` forgets them.
"""

from __future__ import annotations

import os

import click

from ..clusters import DEFAULT_KEEPER_RULE, DEFAULT_RULE, KEEPER_RULES, RULES
from ..embedding_defaults import DEFAULT_CLUSTER_CONFIRM_DISTANCE, DEFAULT_CLUSTER_MIN_SIMILARITY
from ..matching import DEFAULT_THRESHOLD, DEFAULT_TRANSFORM_DISTANCE, HASH_KINDS
from .context import PathParam, note, settings_of, warn

OPTION_NAMES = ("threshold", "hash_kind", "rule", "min_similarity", "confirm_distance", "transform_distance",
                "keeper_rule", "reference_paths", "clear_references")

_KEPT = "the stored setting, else "


def threshold_option(default_text: str = f"{_KEPT}{DEFAULT_THRESHOLD}", aliases: tuple[str, ...] = ()):
    """``--threshold/-t``: the one name of the largest Hamming distance of a near-duplicate (``aliases``:
    other names a command also takes)."""
    return click.option("--threshold", "-t", *aliases, "threshold", type=click.IntRange(0, 64), default=None,
                        help=f"Largest Hamming distance (bits of 64) between two near-duplicates [default: "
                             f"{default_text}].")


def clustering_options(f):
    """--threshold/--hash/--rule/... /--keeper/--reference/--clear-references (see the module docstring)."""
    options = [
        threshold_option(),
        click.option("--hash", "hash_kind", type=click.Choice(HASH_KINDS), default=None,
                     help=f"Which perceptual hash to compare [default: {_KEPT}phash]."),
        click.option("--rule", type=click.Choice(RULES), default=None,
                     help="What links two images: hash (pHash within the threshold), transforms (also a flipped, "
                          "rotated or border-trimmed copy), embedding (similarity only), fused (transforms, or an "
                          f"embedding match confirmed by a looser hash bound) [default: {_KEPT}{DEFAULT_RULE}]."),
        click.option("--min-similarity", type=click.FloatRange(0, 1, min_open=True), default=None,
                     help="Cosine similarity of the embeddings that counts as a match "
                          f"[default: {_KEPT}{DEFAULT_CLUSTER_MIN_SIMILARITY}]."),
        click.option("--confirm-distance", type=click.IntRange(0, 64), default=None,
                     help="fused rule: an embedding match also needs a pHash (or flipped/rotated/trimmed variant) "
                          "within this distance (64: none; the check by pixels confirms such pairs) "
                          f"[default: {_KEPT}{DEFAULT_CLUSTER_CONFIRM_DISTANCE}]."),
        click.option("--transform-distance", type=click.IntRange(0, 32), default=None,
                     help="transforms and fused rules: largest distance of a flipped, rotated or border-trimmed "
                          f"variant [default: {_KEPT}{DEFAULT_TRANSFORM_DISTANCE}]."),
        click.option("--keeper", "keeper_rule", type=click.Choice(KEEPER_RULES), default=None,
                     help="Which member of a cluster to keep: the largest (most pixels, then bytes, then oldest), "
                          f"newest or oldest [default: {_KEPT}{DEFAULT_KEEPER_RULE}]."),
        click.option("--reference", "reference_paths", multiple=True, type=PathParam(), metavar="PATH",
                     help="A folder (or file) whose images are references: preferred as keepers, never moved or "
                          "deleted. Added to the stored ones (repeatable)."),
        click.option("--clear-references", is_flag=True,
                     help="Forget the stored reference paths (those given with --reference here stay)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def changes(options: dict) -> dict:
    """The ``ClusterSettings.changed`` arguments for the clustering options a command was given."""
    return {
        "threshold": options["threshold"], "hash_kind": options["hash_kind"], "rule": options["rule"],
        "min_similarity": options["min_similarity"], "confirm_distance": options["confirm_distance"],
        "transform_distance": options["transform_distance"], "keeper_rule": options["keeper_rule"],
        "add_references": [os.path.abspath(os.path.expanduser(p)) for p in options["reference_paths"]],
        "clear_references": options["clear_references"],
    }


def use_clustering(ctx: click.Context, conn, options: dict, *, method: str = "auto", full: bool = False):
    """Store the settings the options change, make the clustering current (matching first when
    needed), say which clustering the command uses; returns the ClusterResult."""
    from ..clusters import ensure_clusters, references_without_images, update_settings
    from .verify_commands import verify_progress

    settings, changed = update_settings(conn, **changes(options))
    with verify_progress(ctx) as progress:
        result = ensure_clusters(conn, settings, method=method, full=full, lock_wait=settings_of(ctx).lock_wait,
                                 on_wait=lambda message: note(ctx, message), verify_progress=progress)
    note(ctx, f"clustering: {result.settings.describe()}"
              + ("; saved, later commands use it until changed" if changed else ""))
    if result.rule_note:
        note(ctx, result.rule_note)
    if result.settings.reference_paths:
        note(ctx, "reference paths (never moved or deleted): " + ", ".join(result.settings.reference_paths))
        for path in references_without_images(conn, result.settings.reference_paths):
            warn(f"no loaded image lies under the reference path {path}, so it protects nothing (a typo, or a "
                 "folder loaded under another path?); --clear-references forgets the reference paths")
    return result
