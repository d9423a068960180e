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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import psycopg
from psycopg.rows import dict_row

from .errors import DbdedupError
from .matching import DEFAULT_THRESHOLD, check_arguments, find_pairs, match_state, pairs_are_current
from .sqlfiles import named_queries

KEEPER_RULES = ("largest", "newest", "oldest")


@dataclass(frozen=True)
class ClusterResult:
    """The current clustering: its parameters and size, and what was (re)computed to get it."""

    max_distance: int
    hash_kind: str
    keeper_rule: str
    reference_paths: tuple[str, ...]
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


def _check(keeper_rule: str) -> None:
    if keeper_rule not in KEEPER_RULES:
        raise DbdedupError(f"unknown keeper rule {keeper_rule!r}", hint="use one of: " + ", ".join(KEEPER_RULES))


def current_parameters(conn: psycopg.Connection) -> dict | None:
    """The parameters of the current clustering (threshold, hash_kind, keeper_rule,
    reference_paths, ...) as a dict, or None when no clustering was built yet."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_queries()["cluster_parameters"]).fetchone()
    if row is None:
        return None
    row["threshold"] = row["max_distance"]
    row["reference_paths"] = list(row["reference_paths"] or [])
    return row


def build_clusters(
    conn: psycopg.Connection,
    *,
    max_distance: int = DEFAULT_THRESHOLD,
    hash_kind: str = "phash",
    keeper_rule: str = "largest",
    reference_paths: Sequence[str] = (),
) -> ClusterResult:
    """Rebuild the clusters from the pairs within ``max_distance`` and commit.

    Runs matching first when the pairs do not reach ``max_distance`` yet (incrementally
    otherwise only when asked through ``ensure_clusters``).
    """
    check_arguments(max_distance, hash_kind)
    _check(keeper_rule)
    refs = _normalise_references(reference_paths)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            _queries()["build_clusters"],
            {"max_distance": max_distance, "hash_kind": hash_kind, "keeper_rule": keeper_rule, "reference_paths": refs},
        ).fetchone()
    if not conn.autocommit:
        conn.commit()
    assert row is not None
    return ClusterResult(
        max_distance=max_distance,
        hash_kind=hash_kind,
        keeper_rule=keeper_rule,
        reference_paths=tuple(refs),
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
) -> ClusterResult:
    """Make the current clustering match these parameters and the images as they are now.

    Matching runs (incrementally) when images changed since the last match or the pairs do
    not reach ``max_distance``; the clusters are rebuilt when their parameters differ or the
    pairs changed. When everything is current this costs a couple of queries.
    """
    check_arguments(max_distance, hash_kind)
    _check(keeper_rule)
    refs = _normalise_references(reference_paths)
    match = None
    if not pairs_are_current(conn, max_distance=max_distance, hash_kind=hash_kind):
        match = find_pairs(conn, max_distance=max_distance, hash_kind=hash_kind)
    params = current_parameters(conn)
    state = match_state(conn, hash_kind)
    if not conn.autocommit:
        conn.commit()
    matched_seq = state["matched_seq"] if state else None
    wanted = (max_distance, hash_kind, keeper_rule, refs, matched_seq)
    if params is not None and match is None:
        have = (params["max_distance"], params["hash_kind"], params["keeper_rule"], params["reference_paths"],
                params["matched_seq"])
        if have == wanted:
            return ClusterResult(
                max_distance=max_distance,
                hash_kind=hash_kind,
                keeper_rule=keeper_rule,
                reference_paths=tuple(refs),
                clusters=params["clusters"],
                members=params["members"],
                split_rounds=params["split_rounds"],
                seconds=params["seconds"] or 0.0,
            )
    result = build_clusters(
        conn, max_distance=max_distance, hash_kind=hash_kind, keeper_rule=keeper_rule, reference_paths=refs
    )
    return ClusterResult(**{**result.__dict__, "matched": match is not None, "match": match})
