"""`dbdedup match` and `dbdedup similar`: pairs and clusters, and the images near one image."""

from __future__ import annotations

import os

import click

from ..clusters import KEEPER_RULES
from ..errors import DbdedupError
from ..matching import DEFAULT_THRESHOLD, HASH_KINDS, METHODS
from .main import note, open_db
from .output import emit_rows, format_option

SIMILAR_COLUMNS = ("distance", "path", "width", "height", "size_bytes", "image_id")


def register(cli: click.Group) -> None:
    cli.add_command(match)
    cli.add_command(similar)


def _threshold_option(f):
    return click.option(
        "--threshold",
        "-t",
        type=click.IntRange(0, 64),
        default=DEFAULT_THRESHOLD,
        show_default=True,
        help="Largest Hamming distance (of 64 bits) between two near-duplicates.",
    )(f)


def _hash_option(f):
    return click.option(
        "--hash",
        "hash_kind",
        type=click.Choice(HASH_KINDS),
        default="phash",
        show_default=True,
        help="Which hash to compare.",
    )(f)


def _rule_options(f):
    from .report_commands import rule_options

    return rule_options(f)


@click.command()
@_threshold_option
@_hash_option
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="auto",
    show_default=True,
    help="scan: exact, small sets; blocks: exact multi-index hashing, thresholds 0-15; "
    "lsh: approximate (recall >= 0.99 at the threshold), very large sets; auto picks by size and threshold.",
)
@click.option(
    "--keeper",
    "keeper_rule",
    type=click.Choice(KEEPER_RULES),
    default="largest",
    show_default=True,
    help="Which image of a cluster to keep: largest (most pixels, then bytes, then oldest), newest or oldest.",
)
@click.option(
    "--reference",
    "reference_paths",
    multiple=True,
    type=click.Path(),
    help="A folder whose files are kept first and never marked for removal (repeatable).",
)
@click.option("--full", is_flag=True, help="Re-match everything instead of only the images changed since the last match.")
@_rule_options
@click.pass_context
def match(ctx: click.Context, threshold: int, hash_kind: str, method: str, keeper_rule: str,
          reference_paths: tuple[str, ...], full: bool, rule: str | None, min_similarity: float | None,
          confirm_distance: int | None, transform_distance: int | None) -> None:
    """Find near-duplicate pairs and group them into clusters with one keeper each.

    Incremental: only images loaded or changed since the last match are compared (against all).
    Pairs are kept up to the largest threshold asked so far, so trying a smaller one is instant.

    With the default rule (fused), flipped, rotated and border-trimmed copies are matched by
    their pHash variants, and embedding neighbours confirmed by a looser hash bound join too.

    \b
    Example:
      dbdedup match --threshold 8
      dbdedup match -t 4 --keeper newest --reference ~/Pictures/originals
      dbdedup match --rule hash              # plain pHash distance only
    """
    from ..clusters import DEFAULT_RULE, build_clusters, effective_rule
    from ..embedding import DEFAULT_MIN_SIMILARITY
    from ..matching import (DEFAULT_TRANSFORM_DISTANCE, check_arguments, check_signal_arguments, find_pairs,
                            pairs_are_current, signals_are_current)

    check_arguments(threshold, hash_kind, method)
    similarity = DEFAULT_MIN_SIMILARITY if min_similarity is None else min_similarity
    variant_distance = DEFAULT_TRANSFORM_DISTANCE if transform_distance is None else transform_distance
    check_signal_arguments(similarity)
    refs = [os.path.abspath(os.path.expanduser(p)) for p in reference_paths]
    with open_db(ctx) as conn:
        applied_rule, transforms, embeddings = effective_rule(conn, rule or DEFAULT_RULE, hash_kind)
        if (full or method != "auto"
                or not pairs_are_current(conn, max_distance=threshold, hash_kind=hash_kind)
                or not signals_are_current(conn, max_distance=variant_distance, transforms=transforms,
                                           embeddings=embeddings, min_similarity=similarity)):
            result = find_pairs(conn, max_distance=threshold, hash_kind=hash_kind, method=method, full=full,
                                transforms=transforms, embeddings=embeddings, transform_distance=variant_distance,
                                min_similarity=similarity)
            note(
                ctx,
                f"matched {result.values_matched:,} of {result.values_total:,} distinct {hash_kind} values "
                f"({result.mode}, method {result.method}): {result.candidates:,} candidates compared, "
                f"{result.value_pairs:,} value pairs, {result.pairs:,} image pairs within {result.max_distance} "
                f"in {result.seconds:.2f} s",
            )
            if result.transforms is not None:
                t = result.transforms
                note(ctx, f"transforms ({t.mode}, method {t.method}): {t.probes:,} variant values, "
                          f"{t.candidates:,} candidates, {t.pairs:,} pairs by a flip, rotation or trim "
                          f"in {t.seconds:.2f} s")
            if result.embeddings is not None:
                e = result.embeddings
                note(ctx, f"embeddings ({e.mode}): {e.probes:,} images searched, {e.pairs:,} pairs with similarity "
                          f">= {similarity} in {e.seconds:.2f} s")
        else:
            note(ctx, f"pairs within {threshold} are current: no matching needed")
        clusters = build_clusters(
            conn, max_distance=threshold, hash_kind=hash_kind, keeper_rule=keeper_rule, reference_paths=refs,
            rule=applied_rule, min_similarity=similarity, confirm_distance=confirm_distance,
            transform_distance=variant_distance,
        )
        common = conn.execute(
            "SELECT count(*), coalesce(sum(images), 0) FROM dbdedup.common_hashes WHERE hash_kind = %s", (hash_kind,)
        ).fetchone()
    note(
        ctx,
        f"{clusters.clusters:,} clusters with {clusters.members:,} images at threshold {threshold} "
        f"(rule: {applied_rule}, keeper: {keeper_rule}) in {clusters.seconds:.2f} s",
    )
    if common and common[0]:
        note(ctx, f"{common[0]:,} over-common hash values ({common[1]:,} images: blank or flat) kept out of clusters; "
                  "see dbdedup.common_hashes")


@click.command()
@click.argument("target")
@_threshold_option
@_hash_option
@format_option()
@click.pass_context
def similar(ctx: click.Context, target: str, threshold: int, hash_kind: str, fmt: str) -> None:
    """List the loaded images near one image: a loaded path, a file on disk, or a hex hash.

    \b
    Example:
      dbdedup similar ~/Pictures/beach.jpg --threshold 10
      dbdedup similar 0xd1c4e6b8a2f3c590 --format json
    """
    from ..matching import check_arguments, find_image
    from ..matching import similar as similar_images

    check_arguments(threshold, hash_kind)
    with open_db(ctx) as conn:
        rows = None
        if target.lower().startswith("0x"):
            try:
                value = int(target, 16)
            except ValueError:
                raise DbdedupError(f"{target!r} is not a hex hash", hint="give 16 hex digits after 0x") from None
            if value >= 1 << 63:
                value -= 1 << 64
            rows = similar_images(conn, hash_value=value, max_distance=threshold, hash_kind=hash_kind)
        else:
            path = os.path.abspath(os.path.expanduser(target))
            stored = find_image(conn, path) or find_image(conn, target)
            if stored is not None:
                rows = similar_images(conn, image_id=stored["id"], max_distance=threshold, hash_kind=hash_kind)
            elif os.path.isfile(path):
                value = _hash_file(path, hash_kind)
                note(ctx, f"{target} is not loaded: hashed it now")
                rows = similar_images(conn, hash_value=value, max_distance=threshold, hash_kind=hash_kind)
            else:
                raise DbdedupError(
                    f"{target} is neither a loaded image nor a file",
                    hint="give a path `dbdedup load` has seen, an image file, or a hash as 0x<16 hex digits>",
                )
    emit_rows(rows, SIMILAR_COLUMNS, fmt, title=f"within {threshold} of {target}")


def _hash_file(path: str, hash_kind: str) -> int:
    from ..fingerprint import hash_image_file

    try:
        result = hash_image_file(path)
    except Exception as exc:  # any decode failure is the user's file, not a bug
        raise DbdedupError(f"cannot read {path} as an image: {exc}", hint="give an image file") from exc
    value = getattr(result, hash_kind, None)
    if value is None and isinstance(result, dict):
        value = result.get(hash_kind)
    if value is None:
        raise DbdedupError(f"cannot hash {path}", hint="give an image file")
    value = int(value, 16) if isinstance(value, str) else int(value)
    return value - (1 << 64) if value >= 1 << 63 else value
