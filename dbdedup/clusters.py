"""Clusters of near-duplicates with one keeper each: calls ``dbdedup.build_clusters``.

Clusters are greedy stars over the pairs within a threshold: the best image (by the keeper
rule) keeps every image paired with it, and the same is repeated on the images left. SQL
computes it set-based in rounds (an image with no better remaining neighbour is a keeper;
each neighbour joins its best keeper), which gives the same clusters as the sequential pass.
A connected component whose best image is within the threshold of all the others (copies of
one picture: the usual case) is one cluster; a chain of weak links is split instead of
growing into unrelated images, so every (keeper, member) pair a cluster implies is a real
pair within the threshold, and ``distance_to_keeper`` never exceeds it.

Keeper rules: ``largest`` (most pixels, then largest file, then oldest; the default),
``newest``, ``oldest``. Files under a reference path are preferred as keeper whatever the rule,
and are never removable (``is_protected`` in ``dbdedup.cluster_members``).

Which pairs link images (``rule``), for the pHash:

``hash``
    the stored pHashes are within the threshold;
``transforms``
    or a flipped, rotated or border-trimmed variant of one is within ``transform_distance`` of the
    other (tighter than the threshold: 16 variants are 16 chances of a chance match);
``embedding``
    the embedding vectors' cosine similarity is at least ``min_similarity`` (nothing else);
``fused`` (the default)
    ``transforms``, or similarity >= ``min_similarity`` confirmed by a pHash (or variant)
    distance <= ``confirm_distance``: the embedding finds crops and heavier edits the hash
    misses, and the looser hash bound keeps look-alike but different pictures apart.

dHash and aHash cluster by ``hash`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import psycopg
from psycopg.rows import dict_row

from . import embedding_index
from .embedding import DEFAULT_CONFIRM_DISTANCE, DEFAULT_MIN_SIMILARITY
from .errors import DbdedupError
from .matching import (DEFAULT_THRESHOLD, DEFAULT_TRANSFORM_DISTANCE, check_arguments, check_signal_arguments,
                       find_pairs, match_state, pairs_are_current, signals_are_current)
from .sqlfiles import named_queries

KEEPER_RULES = ("largest", "newest", "oldest")
RULES = ("fused", "transforms", "hash", "embedding")
DEFAULT_RULE = "fused"


@dataclass(frozen=True)
class ClusterResult:
    """The current clustering: its parameters and size, and what was (re)computed to get it."""

    max_distance: int
    hash_kind: str
    keeper_rule: str
    reference_paths: tuple[str, ...]
    rule: str
    min_similarity: float | None
    confirm_distance: int | None
    transform_distance: int | None
    clusters: int
    members: int
    split_rounds: int  # extra rounds that split chains of weak links (0: every component was one star)
    seconds: float  # time of the clustering itself
    matched: bool = False  # matching ran to get here
    rebuilt: bool = False  # clusters were rebuilt to get here
    match: object | None = None  # the MatchResult when matching ran


def _queries() -> dict[str, str]:
    return named_queries("queries/match.sql")


def _normalise_references(reference_paths: Sequence[str]) -> list[str]:
    out = []
    for p in reference_paths:
        p = str(p)
        if not p:
            continue
        out.append(p.rstrip("/") or "/")
    return sorted(set(out))


def _check(keeper_rule: str, rule: str = DEFAULT_RULE) -> None:
    if keeper_rule not in KEEPER_RULES:
        raise DbdedupError(f"unknown keeper rule {keeper_rule!r}", hint="use one of: " + ", ".join(KEEPER_RULES))
    if rule not in RULES:
        raise DbdedupError(f"unknown clustering rule {rule!r}", hint="use one of: " + ", ".join(RULES))


def _check_distances(confirm_distance: int, transform_distance: int) -> None:
    for name, value in (("confirm distance", confirm_distance), ("transform distance", transform_distance)):
        if not 0 <= value <= 64:
            raise DbdedupError(f"{name} {value} is not a Hamming distance on 64 bits", hint="use 0 to 64")
    if transform_distance > 32:
        raise DbdedupError(f"transform distance {transform_distance} is above 32",
                           hint="variants match by accident far below that; the default is "
                                f"{DEFAULT_TRANSFORM_DISTANCE}")


def effective_rule(conn: psycopg.Connection, rule: str, hash_kind: str) -> tuple[str, bool, bool]:
    """(rule as SQL applies it, transforms needed, embeddings needed) for these images and this server.

    dHash and aHash have no variants or embeddings: their rule is ``hash``. Without stored
    vectors (no pgvector, or loaded with no embedder) ``fused`` is ``transforms``; ``embedding``
    alone is an error then.
    """
    if hash_kind != "phash":
        return "hash", False, False
    wants_embeddings = rule in ("embedding", "fused")
    vectors = wants_embeddings and embedding_index.has_vectors(conn)
    if rule == "embedding" and not vectors:
        raise DbdedupError("rule 'embedding' needs embedding vectors, and none are stored",
                           hint="load with an embedder on a server with pgvector (the embedded default has it), "
                                "or use --rule fused / transforms / hash")
    return rule, rule in ("transforms", "fused"), vectors


def current_parameters(conn: psycopg.Connection) -> dict | None:
    """The parameters of the current clustering (threshold, hash_kind, keeper_rule,
    reference_paths, ...) as a dict, or None when no clustering was built yet."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_queries()["cluster_parameters"]).fetchone()
    if row is None:
        return None
    row["threshold"] = row["max_distance"]
    row["reference_paths"] = list(row["reference_paths"] or [])
    if row.get("min_similarity") is not None:
        row["min_similarity"] = round(float(row["min_similarity"]), 4)
    return row


def build_clusters(
    conn: psycopg.Connection,
    *,
    max_distance: int = DEFAULT_THRESHOLD,
    hash_kind: str = "phash",
    keeper_rule: str = "largest",
    reference_paths: Sequence[str] = (),
    rule: str = DEFAULT_RULE,
    min_similarity: float | None = None,
    confirm_distance: int | None = None,
    transform_distance: int | None = None,
) -> ClusterResult:
    """Rebuild the clusters from the pairs that link images under ``rule`` and commit.

    Runs pHash matching first when the pairs do not reach ``max_distance`` yet; the transform
    and embedding signals are used as stored (``ensure_clusters`` or ``find_pairs`` compute them).
    """
    check_arguments(max_distance, hash_kind)
    _check(keeper_rule, rule)
    min_similarity = DEFAULT_MIN_SIMILARITY if min_similarity is None else float(min_similarity)
    confirm_distance = DEFAULT_CONFIRM_DISTANCE if confirm_distance is None else int(confirm_distance)
    transform_distance = DEFAULT_TRANSFORM_DISTANCE if transform_distance is None else int(transform_distance)
    check_signal_arguments(min_similarity)
    _check_distances(confirm_distance, transform_distance)
    if hash_kind != "phash":
        rule = "hash"
    refs = _normalise_references(reference_paths)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            _queries()["build_clusters"],
            {"max_distance": max_distance, "hash_kind": hash_kind, "keeper_rule": keeper_rule, "reference_paths": refs,
             "rule": rule, "min_similarity": min_similarity, "confirm_distance": confirm_distance,
             "transform_distance": transform_distance},
        ).fetchone()
    if not conn.autocommit:
        conn.commit()
    assert row is not None
    return ClusterResult(
        max_distance=max_distance,
        hash_kind=hash_kind,
        keeper_rule=keeper_rule,
        reference_paths=tuple(refs),
        rule=rule,
        min_similarity=min_similarity,
        confirm_distance=confirm_distance,
        transform_distance=transform_distance,
        clusters=row["clusters"],
        members=row["members"],
        split_rounds=row["split_rounds"],
        seconds=row["seconds"],
        rebuilt=True,
    )


def ensure_clusters(
    conn: psycopg.Connection,
    *,
    max_distance: int = DEFAULT_THRESHOLD,
    hash_kind: str = "phash",
    keeper_rule: str = "largest",
    reference_paths: Sequence[str] = (),
    rule: str = DEFAULT_RULE,
    min_similarity: float | None = None,
    confirm_distance: int | None = None,
    transform_distance: int | None = None,
) -> ClusterResult:
    """Make the current clustering match these parameters and the images as they are now.

    Matching runs (incrementally) when images changed since the last match, the pairs do not
    reach ``max_distance``, or the signals the rule uses are not current; the clusters are
    rebuilt when their parameters differ or the pairs changed. When everything is current this
    costs a few queries.
    """
    check_arguments(max_distance, hash_kind)
    _check(keeper_rule, rule)
    min_similarity = round(DEFAULT_MIN_SIMILARITY if min_similarity is None else float(min_similarity), 4)
    confirm_distance = DEFAULT_CONFIRM_DISTANCE if confirm_distance is None else int(confirm_distance)
    transform_distance = DEFAULT_TRANSFORM_DISTANCE if transform_distance is None else int(transform_distance)
    check_signal_arguments(min_similarity)
    _check_distances(confirm_distance, transform_distance)
    rule, transforms, embeddings = effective_rule(conn, rule, hash_kind)
    refs = _normalise_references(reference_paths)
    match = None
    if not (pairs_are_current(conn, max_distance=max_distance, hash_kind=hash_kind)
            and signals_are_current(conn, max_distance=transform_distance, transforms=transforms,
                                    embeddings=embeddings, min_similarity=min_similarity)):
        match = find_pairs(conn, max_distance=max_distance, hash_kind=hash_kind, transforms=transforms,
                           embeddings=embeddings, transform_distance=transform_distance,
                           min_similarity=min_similarity)
    params = current_parameters(conn)
    state = match_state(conn, hash_kind)
    if not conn.autocommit:
        conn.commit()
    matched_seq = state["matched_seq"] if state else None
    wanted = (max_distance, hash_kind, keeper_rule, refs, matched_seq, rule, min_similarity, confirm_distance,
              transform_distance)
    if params is not None and match is None:
        have = (params["max_distance"], params["hash_kind"], params["keeper_rule"], params["reference_paths"],
                params["matched_seq"], params["rule"], params["min_similarity"], params["confirm_distance"],
                params["transform_distance"])
        if have == wanted:
            return ClusterResult(
                max_distance=max_distance,
                hash_kind=hash_kind,
                keeper_rule=keeper_rule,
                reference_paths=tuple(refs),
                rule=rule,
                min_similarity=min_similarity,
                confirm_distance=confirm_distance,
                transform_distance=transform_distance,
                clusters=params["clusters"],
                members=params["members"],
                split_rounds=params["split_rounds"],
                seconds=params["seconds"] or 0.0,
            )
    result = build_clusters(
        conn, max_distance=max_distance, hash_kind=hash_kind, keeper_rule=keeper_rule, reference_paths=refs,
        rule=rule, min_similarity=min_similarity, confirm_distance=confirm_distance,
        transform_distance=transform_distance,
    )
    return ClusterResult(**{**result.__dict__, "matched": match is not None, "match": match})
