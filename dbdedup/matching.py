"""Finding near-duplicate pairs: calls the SQL functions of ``sql/matching.sql`` and ``sql/signals.sql``.

All the work happens in PostgreSQL (``dbdedup.match``), so psql users and pg_cron get the
same results as the CLI. Identical hash values are collapsed first (one comparison for a
thousand copies); exact copies (same SHA-256) are pairs at distance 0.

Methods (``method=``):

``scan``
    Every value against every other one (``bit_count`` on the bigint XOR). Exact for any
    threshold; quadratic in the number of distinct values, for small sets.
``blocks``
    Exact multi-index hashing for thresholds 0 to 15. The 64 bits are split into m interleaved
    blocks with a radius r_i each, sum(r_i + 1) = threshold + 1: by pigeonhole a pair within the
    threshold is within r_i in some block, found by an equi-join of each value's Hamming ball
    against the block keys, then re-checked exactly. ``dbdedup.plan_blocks`` picks m and r_i.
``lsh``
    Approximate, for very large sets: bit-sampling LSH, L equi-joins on ``hash & mask`` for
    random k-bit masks (``dbdedup.lsh_mask``: every k of the 64 bits as likely, so each pair at
    distance d shares a key with the same chance), every candidate re-checked exactly (no pair
    beyond the threshold, ever). k and L are chosen for recall >= 0.99 for each pair at exactly
    the threshold (``dbdedup.plan_lsh``). A full run joins a one-column copy of the values
    (``dbdedup.match_work``), 8 tables a query, each join split by PostgreSQL into batches whose
    hash tables fit in the CPU cache.
``lsh_adaptive``
    The tables of ``lsh``, in rounds of 8, stopping early in a full run once
    ``dbdedup.lsh_estimated_recall`` says 0.99 of the pairs present were found (the pairs found at
    each distance against each table's known chance to find one there, bounded conservatively).
    A weaker promise than ``lsh``'s: 0.99 of all the pairs, not of each pair at the threshold,
    so a rare pair at the threshold among many closer ones is found less often. Never chosen by
    ``auto``; incremental runs and Citus run every table.
``auto``
    scan for small work, blocks while its estimated cost is moderate, else lsh.

Two more signals, for the pHash (``transforms=`` and ``embeddings=``), run after it and write
to the same pairs: ``dbdedup.match_transforms`` compares the stored variants of each image
(7 other orientations, trimmed borders) with the others' pHash by the same methods, and
``dbdedup.match_embeddings`` asks the pgvector index for each image's nearest vectors.

Matching holds the load lock (``dbdedup.locks``) for its whole run, so a match and a load queue
instead of interleaving, and nobody waits forever: past ``lock_wait`` seconds the error names
the session that holds the lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import psycopg
from psycopg.rows import dict_row

from .errors import DbdedupError
from .locks import load_lock
from .sqlfiles import named_queries

if TYPE_CHECKING:
    from .structure_check import StructureCheck

DEFAULT_THRESHOLD = 8
"""Largest pHash Hamming distance (of 64 bits) at which two images count as near-duplicates by default.

Chosen as the largest threshold whose clusters stay about 99% precise on real images:
``bench/accuracy`` (9,267 images from Debian packages: photos, paintings, wallpapers, clip-art;
300 originals with 21 edits each plus 2,667 distractors) gives cluster pair precision (pHash alone)
0.9987 at 4, 0.9978 at 6, 0.9934 at 8, 0.9781 at 10 and 0.9182 at 12, and 8 finds more edited
copies than 6 (an earlier draw of the set: brightness +30% 0.96 vs 0.88, watermark 0.97 vs 0.94,
10% crop 0.54 vs 0.39). ``python bench/match_bench.py --threshold-study`` agrees on photo-like
images (100% precise up to 10) and is the caution: on Tux Paint clip-art, full of colour and letter
variants pHash cannot tell apart, implied pairs are 98.9% true at 0, 97.8% at 6 and 97.3% at 8, so
use ``--threshold 6`` for libraries of such variants.
"""


HASH_KINDS = ("phash", "dhash", "ahash")
METHODS = ("auto", "scan", "blocks", "lsh", "lsh_adaptive")
BLOCKS_MAX_DISTANCE = 15
DEFAULT_COMMON_LIMIT = 50
"""A hash value shared by more distinct files than this is over-common (blank or flat images)."""


DEFAULT_TRANSFORM_DISTANCE = 2
"""Largest pHash distance at which a flipped, rotated or border-trimmed variant links two images.

Tighter than DEFAULT_THRESHOLD because each image has 16 variants, so 16 chances to meet an
unrelated image by accident. On ``bench/accuracy`` the transforms rule (pHash <= 8 or a variant
within 0 / 2 / 4 / 8) gives cluster pair precision 0.9929 / 0.9914 / 0.9902 / 0.9846 and finds
flips 0.93 / 1.00 / 1.00 / 1.00 and borders 0.52 / 0.83 / 0.91 / 0.96 of the time: 2 finds every
flip and rotation while keeping the fused rule above 0.99.
"""

DEFAULT_NEIGHBOURS = 10
"""Nearest embedding vectors looked up per image (k of the k-NN search)."""


@dataclass(frozen=True)
class SignalResult:
    """What one run of a second signal (transforms or embeddings) did."""

    signal: str
    mode: str  # "full", "incremental", or "none" (no embeddings on this server)
    method: str | None
    probes: int  # variant values (transforms) or images (embeddings) looked up
    candidates: int
    pairs: int  # pairs that now carry this signal
    seconds: float


@dataclass(frozen=True)
class VerificationResult:
    """What one run of the SQL verification (``dbdedup.verify_pairs``) did with the pairs that had no verdict."""

    pairs: int  # pairs looked at (every pair without a verdict)
    verified: int  # found the same picture (exact copies, signatures)
    rejected: int  # found different pictures, or without a signal of their own
    pending: int  # left for the geometric check (verified IS NULL)
    seconds: float


@dataclass(frozen=True)
class MatchResult:
    """What one matching run did."""

    method: str
    mode: str  # "full" or "incremental"
    hash_kind: str
    threshold_kept: int  # pairs are now complete up to this threshold (the largest asked so far)
    values_total: int  # distinct, non-common hash values
    values_matched: int  # values compared in this run (all in a full run, the new ones otherwise)
    candidates: int  # value pairs compared exactly
    value_pairs: int
    pairs: int  # image pairs stored for this hash kind
    seconds: float
    transforms: SignalResult | None = None
    embeddings: SignalResult | None = None
    verification: VerificationResult | None = None
    keypoints: SignalResult | None = None  # keypoint candidates, left pending for the geometric check
    structure: StructureCheck | None = None  # the signature-verified pairs compared again by their thumbnails
    same_size_pairs: int = 0  # new pairs of images with no hash signal of their own, for the check of their pixels


def _queries() -> dict[str, str]:
    return named_queries("queries/match.sql")


def check_arguments(threshold: int, hash_kind: str, method: str = "auto") -> None:
    """Raise DbdedupError for a threshold, hash kind or method that matching cannot use."""
    if hash_kind not in HASH_KINDS:
        raise DbdedupError(f"unknown hash kind {hash_kind!r}", hint="use one of: " + ", ".join(HASH_KINDS))
    if method not in METHODS:
        raise DbdedupError(f"unknown matching method {method!r}", hint="use one of: " + ", ".join(METHODS))
    if not 0 <= threshold <= 64:
        raise DbdedupError(
            f"threshold {threshold} is not a Hamming distance on 64 bits",
            hint="use 0 (identical hashes) to 64; near-duplicates are usually within 4-10",
        )
    if method == "blocks" and threshold > BLOCKS_MAX_DISTANCE:
        raise DbdedupError(
            f"the blocks method is exact for thresholds 0 to {BLOCKS_MAX_DISTANCE}, not {threshold}",
            hint="use --method scan (any threshold) or lsh",
        )


def find_pairs(
    conn: psycopg.Connection,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    hash_kind: str = "phash",
    method: str = "auto",
    full: bool = False,
    common_limit: int = DEFAULT_COMMON_LIMIT,
    transforms: bool = False,
    embeddings: bool = False,
    transform_distance: int = DEFAULT_TRANSFORM_DISTANCE,
    min_similarity: float | None = None,
    neighbours: int = DEFAULT_NEIGHBOURS,
    lock_wait: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> MatchResult:
    """Store in ``dbdedup.pairs`` every pair of ok images within ``threshold`` and commit.

    Incremental: only images changed since the last run are compared, against all the others.
    A threshold larger than any asked before (or ``full=True``) re-matches everything; pairs
    are kept up to the largest threshold asked so far, so a smaller one needs no new matching.

    For the pHash, ``transforms`` also records pairs where a flipped, rotated or trimmed variant
    of one image is within ``transform_distance`` of the other, and ``embeddings`` the pairs among
    each image's ``neighbours`` nearest embedding vectors with cosine similarity >=
    ``min_similarity`` (skipped, with ``embeddings.mode == "none"``, without pgvector). With
    ``transforms``, images loaded with keypoint keys also get the pairs sharing many keys
    (``dbdedup.match_keypoints``: crops, rotations), left pending for the geometric check only.
    Images with no hash signal of their own (flat, one colour) are paired by size
    (``dbdedup.match_same_size``) and verified only as the same pixels.

    Then every pair without a verdict gets one from the stored signals (``dbdedup.verify_pairs``:
    exact copies, colour signatures of aligned pairs; those the signatures verified are compared again
    by their structure thumbnails, ``structure_check``); the pairs those cannot settle stay pending
    (``verified IS NULL``) for ``dbdedup.verify_workers.verify_pending_pairs``. Only verified pairs
    link images in clusters.

    Holds the load lock meanwhile: waits up to ``lock_wait`` seconds for a running load (or
    match), calling ``on_wait(description)`` once when it has to wait.
    """
    check_arguments(threshold, hash_kind, method)
    if min_similarity is None:
        from .embedding_defaults import DEFAULT_CLUSTER_MIN_SIMILARITY

        min_similarity = DEFAULT_CLUSTER_MIN_SIMILARITY
    check_signal_arguments(min_similarity, neighbours)
    q = _queries()
    with load_lock(conn, "match", wait=lock_wait, name="dbdedup match", on_wait=on_wait):
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                q["match"],
                {"max_distance": threshold, "hash_kind": hash_kind, "method": method, "full": full,
                 "common_limit": common_limit},
            ).fetchone()
            transform_row = embedding_row = None
            if transforms and hash_kind == "phash":
                # (the variants' probes are few: lsh_adaptive's stopping rule is for full matches)
                transform_row = cur.execute(q["match_transforms"], {"max_distance": transform_distance,
                                                                     "method": "lsh" if method == "lsh_adaptive" else method,
                                                                     "full": full}).fetchone()
            if embeddings and hash_kind == "phash":
                embedding_row = cur.execute(q["match_embeddings"], {"min_similarity": min_similarity,
                                                                     "neighbours": neighbours,
                                                                     "full": full}).fetchone()
            # flat and detail-free images, which no hash pairs: by size, to be compared as pixels
            same_size_pairs = cur.execute(q["match_same_size"]).fetchone()["pairs"] if hash_kind == "phash" else 0
            verify_row = cur.execute(q["verify_pairs"], {"hash_kind": hash_kind}).fetchone()
            # after verify_pairs: keypoint pairs are for the geometric check alone (verify_workers)
            keypoint_row = cur.execute(q["match_keypoints"], {"full": full}).fetchone() \
                if transforms and hash_kind == "phash" else None
            from .structure_check import check_structure  # numpy: only when matching

            structure = check_structure(conn)
        if not conn.autocommit:
            conn.commit()
    assert row is not None
    return MatchResult(
        method=row["method_used"],
        mode=row["mode"],
        hash_kind=hash_kind,
        threshold_kept=row["max_distance_kept"],
        values_total=row["values_total"],
        values_matched=row["values_matched"],
        candidates=row["candidates"],
        value_pairs=row["value_pairs"],
        pairs=row["pairs"],
        seconds=row["seconds"],
        transforms=SignalResult(
            signal="transforms", mode=transform_row["mode"], method=transform_row["method_used"],
            probes=transform_row["probes"], candidates=transform_row["candidates"], pairs=transform_row["pairs"],
            seconds=transform_row["seconds"],
        ) if transform_row else None,
        embeddings=SignalResult(
            signal="embeddings", mode=embedding_row["mode"], method=None, probes=embedding_row["probes"],
            candidates=embedding_row["candidates"], pairs=embedding_row["pairs"], seconds=embedding_row["seconds"],
        ) if embedding_row else None,
        verification=VerificationResult(**verify_row),
        keypoints=SignalResult(
            signal="keypoints", mode=keypoint_row["mode"], method=None, probes=keypoint_row["probes"],
            candidates=keypoint_row["candidates"], pairs=keypoint_row["pairs"], seconds=keypoint_row["seconds"],
        ) if keypoint_row else None,
        structure=structure,
        same_size_pairs=same_size_pairs,
    )


def check_signal_arguments(min_similarity: float, neighbours: int = DEFAULT_NEIGHBOURS) -> None:
    """Raise DbdedupError for an embedding similarity or neighbour count matching cannot use."""
    if not 0 < min_similarity <= 1:
        raise DbdedupError(f"minimum similarity {min_similarity} is not a cosine similarity in (0, 1]",
                           hint="near-duplicates are usually above 0.9")
    if not 1 <= neighbours <= 1000:
        raise DbdedupError(f"{neighbours} neighbours is not from 1 to 1000", hint="10 is plenty for near-duplicates")


def signals_are_current(conn: psycopg.Connection, *, transform_distance: int, transforms: bool, embeddings: bool,
                        min_similarity: float) -> bool:
    """True when the transform / embedding pairs asked for are complete for the images as matched now."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_queries()["signals_current"], {
            "max_distance": transform_distance, "transforms": transforms, "embeddings": embeddings,
            "min_similarity": min_similarity,
        }).fetchone()
    return bool(row and row["current"])


def match_state(conn: psycopg.Connection, hash_kind: str = "phash") -> dict | None:
    """The stored state of matching for a hash kind (``dbdedup.match_state``), or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_queries()["match_state"], {"hash_kind": hash_kind}).fetchone()


def pairs_are_current(conn: psycopg.Connection, *, threshold: int, hash_kind: str = "phash") -> bool:
    """True when ``dbdedup.pairs`` holds every pair up to ``threshold`` and no image changed since."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_queries()["pairs_current"], {"hash_kind": hash_kind, "max_distance": threshold}).fetchone()
    return bool(row and row["current"])


def ensure_pairs(conn: psycopg.Connection, *, threshold: int, hash_kind: str = "phash",
                 lock_wait: float | None = None, on_wait: Callable[[str], None] | None = None) -> MatchResult | None:
    """Make ``dbdedup.pairs`` hold every pair up to ``threshold``: matching runs (incrementally) when
    it does not yet; returns its MatchResult, or None when the pairs were current."""
    if pairs_are_current(conn, threshold=threshold, hash_kind=hash_kind):
        return None
    return find_pairs(conn, threshold=threshold, hash_kind=hash_kind, lock_wait=lock_wait, on_wait=on_wait)


def pending_pairs(conn: psycopg.Connection, hash_kind: str | None = None) -> int:
    """How many pairs (of ``hash_kind``; of every kind for None) wait for the geometric check (``verified IS NULL``)."""
    return int(conn.execute(_queries()["pending_pairs"], {"hash_kind": hash_kind}).fetchone()[0])


def common_hash_counts(conn: psycopg.Connection, hash_kind: str = "phash") -> tuple[int, int]:
    """(over-common hash values, images that have them): blank or flat pictures kept out of clusters."""
    row = conn.execute(_queries()["common_hash_counts"], {"hash_kind": hash_kind}).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
