"""`dbdedup match` and `dbdedup similar`: pairs and clusters, and the images near one image."""

from __future__ import annotations

import os

import click

from ..errors import DbdedupError
from ..matching import DEFAULT_THRESHOLD, HASH_KINDS, METHODS
from .clustering import clustering_options, threshold_option, use_clustering
from .context import PathParam, max_pixels_option, note, open_db
from .output import emit_rows, format_option


def register(cli: click.Group) -> None:
    cli.add_command(match)
    cli.add_command(similar)


def _hash_option(f):
    return click.option(
        "--hash",
        "hash_kind",
        type=click.Choice(HASH_KINDS),
        default="phash",
        show_default=True,
        help="Which hash to compare.",
    )(f)


@click.command()
@clustering_options
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="auto",
    show_default=True,
    help="scan: exact, small sets; blocks: exact multi-index hashing, thresholds 0-15; "
    "lsh: approximate (recall >= 0.99 at the threshold), very large sets; lsh_adaptive: lsh's tables until 0.99 "
    "of the pairs present are estimated found (faster, weaker at the threshold); auto picks by size and threshold.",
)
@click.option("--full", is_flag=True, help="Re-match everything instead of only the images changed since the last match.")
@click.pass_context
def match(ctx: click.Context, method: str, full: bool, **options) -> None:
    """Find near-duplicate pairs and group them into clusters with one keeper each.

    Incremental: only images loaded or changed since the last match are compared (against all).
    Pairs are kept up to the largest threshold asked so far, so trying a smaller one is instant.
    The clustering options given are stored: report, export and apply use them until changed.

    With the default rule (fused), flipped, rotated and border-trimmed copies are matched by
    their pHash variants, and embedding neighbours confirmed by a looser hash bound join too.

    \b
    Example:
      dbdedup match --threshold 8
      dbdedup match -t 4 --keeper newest --reference ~/Pictures/originals
      dbdedup match --rule hash              # plain pHash distance only
    """
    from ..matching import common_hash_counts

    with open_db(ctx) as conn:
        result = use_clustering(ctx, conn, options, method=method, full=full)
        common_values, common_images = common_hash_counts(conn, result.settings.hash_kind)
    settings = result.settings
    if result.match is None:
        note(ctx, f"pairs within {settings.threshold} are current: no matching needed")
    else:
        m = result.match
        note(ctx, f"matched {m.values_matched:,} of {m.values_total:,} distinct {m.hash_kind} values "
                  f"({m.mode}, method {m.method}): {m.candidates:,} candidates compared, "
                  f"{m.value_pairs:,} value pairs, {m.pairs:,} image pairs within {m.threshold_kept} "
                  f"in {m.seconds:.2f} s")
        if m.transforms is not None:
            t = m.transforms
            note(ctx, f"transforms ({t.mode}, method {t.method}): {t.probes:,} variant values, "
                      f"{t.candidates:,} candidates, {t.pairs:,} pairs by a flip, rotation or trim "
                      f"in {t.seconds:.2f} s")
        if m.embeddings is not None:
            e = m.embeddings
            note(ctx, f"embeddings ({e.mode}): {e.probes:,} images searched, {e.pairs:,} pairs with similarity "
                      f">= {settings.min_similarity} in {e.seconds:.2f} s")
        if m.keypoints is not None and m.keypoints.mode != "none":
            k = m.keypoints
            note(ctx, f"keypoints ({k.mode}): {k.probes:,} images with keys matched, {k.candidates:,} sharing enough "
                      f"keys, {k.pairs:,} pairs by keypoints (for the check by pixels) in {k.seconds:.2f} s")
        if m.same_size_pairs:
            note(ctx, f"{m.same_size_pairs:,} new pairs of one-colour pictures of one size (for the check by pixels: "
                      "the same pixels)")
        if m.verification is not None:
            v = m.verification
            note(ctx, f"verification of {v.pairs:,} pairs without a verdict: {v.verified:,} the same picture, "
                      f"{v.rejected:,} not (by colour signature or hash quality), {v.pending:,} left for the check "
                      f"by pixels, in {v.seconds:.2f} s")
        if m.structure is not None and m.structure.measured:
            c = m.structure
            note(ctx, f"structure check of {c.measured:,} pairs verified by colour signature: {c.failed:,} apart in a "
                      f"region or off one tone edit, left for the check by pixels, in {c.seconds:.2f} s")
        if m.structure is not None and m.structure.tones_apart:
            note(ctx, f"{m.structure.tones_apart:,} pairs verified by colour signature refused: colours no one "
                      "brightness or contrast edit explains")
        if m.structure is not None and m.structure.tone_candidates:
            note(ctx, f"{m.structure.tone_candidates:,} of {m.structure.tone_measured:,} pairs rejected for colour are close to "
                      "one brightness or contrast edit: left for the check by pixels")
        if m.structure is not None and m.structure.overlay_candidates:
            note(ctx, f"{m.structure.overlay_candidates:,} of {m.structure.overlay_measured:,} pairs rejected for colour or "
                      "layout differ as one see-through overlay would make them: left for the check by pixels")
    if result.verification is not None:
        from .verify_commands import summary_line

        note(ctx, summary_line(result.verification))
    if result.keeper_pairs:
        checked = result.keeper_check
        note(ctx, f"{result.keeper_pairs:,} pairs of a keeper and an image verified with one of its members proposed"
                  + (f": {checked.verified:,} verified by their pixels, {checked.rejected:,} not" if checked else ""))
    note(ctx, f"{result.clusters:,} clusters with {result.members:,} images at threshold {settings.threshold} "
              f"(rule: {settings.rule}, keeper: {settings.keeper_rule}) in {result.seconds:.2f} s")
    if common_values:
        note(ctx, f"{common_values:,} over-common hash values ({common_images:,} images: blank or flat) kept out "
                  "of clusters; see dbdedup.common_hashes")


@click.command()
@click.argument("target", type=PathParam())
@threshold_option(str(DEFAULT_THRESHOLD))
@_hash_option
@max_pixels_option("the command fails")
@format_option()
@click.pass_context
def similar(ctx: click.Context, target: str, threshold: int | None, hash_kind: str, max_pixels: int, fmt: str) -> None:
    """List the loaded images that look like one image: a loaded path, a file on disk, or a hex hash.

    Answered from indexes in milliseconds, with the signals of the clusters: the pHash within the
    threshold, a flipped, rotated or border-trimmed copy, or a close embedding confirmed by the
    hash. matched_by says which; a file that is not loaded is fingerprinted as `load` would.

    \b
    Example:
      dbdedup similar ~/Pictures/beach.jpg --threshold 10
      dbdedup similar 0xd1c4e6b8a2f3c590 --format json
    """
    from ..lookup import COLUMNS, Signals, file_query, find_image
    from ..lookup import similar as look_up

    signals = Signals(max_distance=DEFAULT_THRESHOLD if threshold is None else threshold, hash_kind=hash_kind)
    signals.check()
    with open_db(ctx) as conn:
        if target.lower().startswith("0x"):
            try:
                value = int(target, 16)
            except ValueError:
                value = 1 << 64
            if value >= 1 << 64:
                raise DbdedupError(f"{target!r} is not a 64-bit hex hash", hint="give 16 hex digits after 0x")
            rows = look_up(conn, hash_value=value - (1 << 64) if value >= 1 << 63 else value, signals=signals)
        else:
            path = os.path.abspath(os.path.expanduser(target))
            stored = find_image(conn, path) or find_image(conn, target)
            if stored is not None:
                rows = look_up(conn, image_id=stored, signals=signals)
            elif os.path.isfile(path):
                from ..decode import use_own_pixel_limit

                use_own_pixel_limit()  # --max-pixels, as load's workers check it
                query = file_query(conn, path, max_pixels=max_pixels)  # (a file it cannot read: an error, no note)
                note(ctx, f"{target} is not loaded: fingerprinted it now")
                rows = look_up(conn, query=query, signals=signals)
            else:
                raise DbdedupError(
                    f"{target} is neither a loaded image nor a file",
                    hint="give a path `dbdedup load` has seen, an image file, or a hash as 0x<16 hex digits>",
                )
    emit_rows(rows, COLUMNS, fmt, title=f"within {signals.max_distance} of {target}")
