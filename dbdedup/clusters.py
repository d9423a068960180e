"""Clusters of near-duplicates with one keeper each: the settings, and ``dbdedup.build_clusters``.

How images are clustered (threshold, rule, keeper, reference paths, the signals' bounds) is one
value, ``ClusterSettings``, stored in ``dbdedup.cluster_settings`` when the user sets it and used
by every command until changed; ``ensure_clusters`` makes the clusters match it, matching first
when the pairs are not current. Reference paths are only ever added to the stored settings;
they go only when the user clears them, so a reference folder never loses its protection.

Clusters are greedy stars over the pairs within a threshold: the best image (by the keeper
rule) keeps every image paired with it, and the same is repeated on the images left. SQL
computes it set-based in rounds (an image with no better remaining neighbour is a keeper;
each neighbour joins its best keeper), which gives the sequential pass's clusters but where a
node waits a round for a better neighbour that another keeper takes.
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

Whatever the rule, a pair links two images only when verification found them the same picture
(``pairs.verified``): look-alikes that the hashes put close (one drawing in several colours,
flags of one layout, cards of one rank) are candidates, not links. Matching verifies new pairs
from the stored colour signatures (``dbdedup.verify_pairs``); ``ensure_clusters`` checks the rest
by their pixels (``verify_workers``) before it builds.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Collection, Iterable

import psycopg
from psycopg.rows import dict_row

from . import embedding_index
from .embedding_defaults import DEFAULT_CLUSTER_CONFIRM_DISTANCE, DEFAULT_CLUSTER_MIN_SIMILARITY
from .errors import DbdedupError
from .keypoint_store import KeypointStore
from .matching import (DEFAULT_THRESHOLD, DEFAULT_TRANSFORM_DISTANCE, HASH_KINDS, MatchResult, check_arguments,
                       check_signal_arguments, find_pairs, match_state, pairs_are_current, pending_pairs,
                       signals_are_current)
from .scan import display_path
from .sqlfiles import named_queries
from .verify_plan import has_unchecked_pairs, verify_needed_pairs

KEEPER_RULES = ("largest", "newest", "oldest")
RULES = ("fused", "transforms", "hash", "embedding")
DEFAULT_RULE = "fused"
DEFAULT_KEEPER_RULE = "largest"


def _queries() -> dict[str, str]:
    return named_queries("queries/match.sql")


def _settings_queries() -> dict[str, str]:
    return named_queries("queries/settings.sql")


def normalise_references(reference_paths: Iterable[str | os.PathLike]) -> tuple[str, ...]:
    """Reference paths as stored: in the text form the loader stores paths in (``scan.display_path``: a name
    that is not UTF-8 keeps \\xNN escapes, as images.path does, so the two compare), no trailing slash, sorted,
    each once."""
    out = set()
    for p in reference_paths:
        p = display_path(os.fsencode(p))
        if p:
            out.add(p.rstrip("/") or "/")
    return tuple(sorted(out))


@dataclass(frozen=True)
class ClusterSettings:
    """How images are clustered: one value, stored in the database when the user sets it.

    ``threshold`` is the largest pHash (or ``hash_kind``) Hamming distance of a near-duplicate;
    ``rule`` says which signals link two images (see the module docstring), with
    ``transform_distance`` for flipped, rotated or trimmed variants, and ``min_similarity`` /
    ``confirm_distance`` for embedding matches; ``keeper_rule`` picks each cluster's keeper;
    files under ``reference_paths`` are preferred as keepers and never removed.
    """

    threshold: int = DEFAULT_THRESHOLD
    hash_kind: str = "phash"
    rule: str = DEFAULT_RULE
    keeper_rule: str = DEFAULT_KEEPER_RULE
    reference_paths: tuple[str, ...] = field(default_factory=tuple)
    min_similarity: float = DEFAULT_CLUSTER_MIN_SIMILARITY
    confirm_distance: int = DEFAULT_CLUSTER_CONFIRM_DISTANCE
    transform_distance: int = DEFAULT_TRANSFORM_DISTANCE

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference_paths", normalise_references(self.reference_paths))
        # stored as real: compared after rounding, so a value read back equals the one written
        object.__setattr__(self, "min_similarity", round(float(self.min_similarity), 4))
        for name in ("threshold", "confirm_distance", "transform_distance"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def check(self) -> None:
        """Raise DbdedupError for a value clustering cannot use."""
        check_arguments(self.threshold, self.hash_kind)
        if self.keeper_rule not in KEEPER_RULES:
            raise DbdedupError(f"unknown keeper rule {self.keeper_rule!r}",
                               hint="use one of: " + ", ".join(KEEPER_RULES))
        if self.rule not in RULES:
            raise DbdedupError(f"unknown clustering rule {self.rule!r}", hint="use one of: " + ", ".join(RULES))
        check_signal_arguments(self.min_similarity)
        for name, value in (("confirm distance", self.confirm_distance),
                            ("transform distance", self.transform_distance)):
            if not 0 <= value <= 64:
                raise DbdedupError(f"{name} {value} is not a Hamming distance on 64 bits", hint="use 0 to 64")
        if self.transform_distance > 32:
            raise DbdedupError(f"transform distance {self.transform_distance} is above 32",
                               hint="variants match by accident far below that; the default is "
                                    f"{DEFAULT_TRANSFORM_DISTANCE}")

    def changed(
        self,
        *,
        threshold: int | None = None,
        hash_kind: str | None = None,
        rule: str | None = None,
        keeper_rule: str | None = None,
        add_references: Iterable[str] = (),
        clear_references: bool = False,
        min_similarity: float | None = None,
        confirm_distance: int | None = None,
        transform_distance: int | None = None,
    ) -> "ClusterSettings":
        """These settings with the values given changed (None: unchanged). Reference paths are
        added to the ones kept; ``clear_references`` forgets the kept ones first."""
        given = {"threshold": threshold, "hash_kind": hash_kind, "rule": rule, "keeper_rule": keeper_rule,
                 "min_similarity": min_similarity, "confirm_distance": confirm_distance,
                 "transform_distance": transform_distance}
        kept = () if clear_references else self.reference_paths
        return replace(self, reference_paths=(*kept, *add_references),
                       **{k: v for k, v in given.items() if v is not None})

    def to_json(self) -> dict:
        """The settings as the JSON report's ``parameters`` have them."""
        data = asdict(self)
        data["hash"] = data.pop("hash_kind")
        data["reference_paths"] = list(self.reference_paths)
        return data

    def describe(self) -> str:
        """One line for people: "phash distance <= 8, rule fused, keeper largest, 1 reference path"."""
        text = f"{self.hash_kind} distance <= {self.threshold}, rule {self.rule}, keeper {self.keeper_rule}"
        if self.reference_paths:
            n = len(self.reference_paths)
            text += f", {n} reference path{'s' if n != 1 else ''}"
        return text


def stored_settings(conn: psycopg.Connection) -> ClusterSettings | None:
    """The clustering settings stored in this database, or None when the user never set any."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_settings_queries()["load"]).fetchone()
    if row is None:
        return None
    return ClusterSettings(
        threshold=row["threshold"], hash_kind=row["hash_kind"], rule=row["rule"], keeper_rule=row["keeper_rule"],
        reference_paths=tuple(row["reference_paths"] or ()), min_similarity=row["min_similarity"],
        confirm_distance=row["confirm_distance"], transform_distance=row["transform_distance"],
    )


def current_settings(conn: psycopg.Connection) -> ClusterSettings:
    """The stored clustering settings, else the defaults."""
    return stored_settings(conn) or ClusterSettings()


def save_settings(conn: psycopg.Connection, settings: ClusterSettings) -> None:
    """Store ``settings`` as this database's clustering settings and commit."""
    settings.check()
    with conn.transaction():
        conn.execute(_settings_queries()["save"], {
            "threshold": settings.threshold, "hash_kind": settings.hash_kind, "rule": settings.rule,
            "keeper_rule": settings.keeper_rule, "reference_paths": list(settings.reference_paths),
            "min_similarity": settings.min_similarity, "confirm_distance": settings.confirm_distance,
            "transform_distance": settings.transform_distance,
        })
    if not conn.autocommit:
        conn.commit()


def _is_under(path: str, folder: str) -> bool:
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def reference_aliases(path: str, entries: Iterable[str]) -> list[str]:
    """``path`` (absolute) and the other paths by which loaded images may name the same files: its real
    path when it goes through a symbolic link, and its place under each of the loaded ``entries`` (roots,
    and the links to folders the walks entered) that reaches it through one. Protection compares paths as
    the loader recorded them, so each of these is kept: ``--reference ~/photos/originals``, where ~/photos
    links to /data/photos that was loaded, then protects /data/photos/originals too; a loaded link that
    leads into the reference (``/data/photos/old`` to ``/archive/originals/2019``) is kept whole."""
    real = os.path.realpath(path)
    aliases = [path, real]
    for entry in entries:
        entry_real = os.path.realpath(entry)
        if entry_real == entry:
            continue
        if _is_under(real, entry_real):
            inside = os.path.relpath(real, entry_real)
            aliases.append(entry if inside == "." else os.path.join(entry, inside))
        elif _is_under(entry_real, real):
            aliases.append(entry)
    return list(dict.fromkeys(normalise_references(aliases)))


def _path_bytes_of(path: str) -> set[bytes]:
    """The bytes a stored reference path (``normalise_references``) may stand for, without a trailing slash: its
    UTF-8, and with its \\xNN escapes read back as the bytes ``scan.display_path`` wrote them for (a name may
    also hold those four characters)."""
    literal = path.rstrip("/").encode()  # (empty for the root: every absolute path lies under it)
    return {literal, re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), literal)}


def references_without_images(conn: psycopg.Connection, reference_paths: Iterable[str]) -> list[str]:
    """The reference paths under which no loaded image lies, by any of the paths that name the same
    folder or a folder inside it (a typo, or a folder loaded under another name): nothing there is
    protected."""
    q = _settings_queries()
    groups: dict[str, list[str]] = {}
    for path in reference_paths:
        groups.setdefault(os.path.realpath(path), []).append(path)
    # an alias through a link that leads inside a reference speaks for that reference
    outermost = sorted(groups, key=len)
    merged: dict[str, list[str]] = {}
    for real, paths in groups.items():
        home = next(r for r in outermost if _is_under(real, r))
        merged.setdefault(home, []).extend(paths)
    empty = []
    with conn.transaction():
        for real, paths in merged.items():
            if not any(conn.execute(q["holds_images"], {"folder": folder}).fetchone()[0]
                       for p in paths for folder in _path_bytes_of(p)):
                empty.append(groups[real][0])
    return empty


def update_settings(conn: psycopg.Connection, **changes) -> tuple[ClusterSettings, bool]:
    """The stored settings (else the defaults) with ``changes`` (see ``ClusterSettings.changed``),
    stored when they differ; returns (settings, whether they changed). Each reference path comes with
    its aliases (``reference_aliases``): those added here, and the stored ones again, whose aliases
    may lie under a root loaded since (a folder loaded through a link after the reference was given)."""
    before = stored_settings(conn)
    references = list(changes.get("add_references") or ())
    if before is not None and not changes.get("clear_references"):
        references += before.reference_paths
    if references:
        with conn.transaction():
            entries = [row[0] for row in conn.execute(_settings_queries()["loaded_entries"])]
        changes["add_references"] = [alias for path in references for alias in reference_aliases(path, entries)]
    after = (before or ClusterSettings()).changed(**changes)
    after.check()
    if after != before and (before is not None or after != ClusterSettings()):
        save_settings(conn, after)
        return after, True
    return after, False


@dataclass(frozen=True)
class ClusterResult:
    """The current clustering: the settings it was built with, its size, and what was (re)computed."""

    settings: ClusterSettings  # as applied: ``rule`` may be narrower than the one asked (see rule_note)
    clusters: int
    members: int
    split_rounds: int  # extra rounds that split chains of weak links (0: every component was one star)
    seconds: float  # time of the clustering itself
    matched: bool = False  # matching ran to get here
    rebuilt: bool = False  # clusters were rebuilt to get here
    match: MatchResult | None = None  # the MatchResult when matching ran
    verification: object | None = None  # the verify_workers.VerifySummary when pending pairs were checked by their pixels
    rule_note: str | None = None  # why the rule applied differs from the one asked
    keeper_pairs: int = 0  # pairs with a keeper proposed through a verified member or a near neighbour (dbdedup.propose_keeper_pairs)
    keeper_check: object | None = None  # the VerifySummary of their check by pixels, when it ran


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
    if rule == "fused" and not vectors:
        rule = "transforms"
    return rule, rule in ("transforms", "fused"), vectors


def _applied_settings(conn: psycopg.Connection,
                      settings: ClusterSettings | None) -> tuple[ClusterSettings, ClusterSettings, bool, bool]:
    """(the settings asked, checked: ``settings`` or the stored ones; the same with the rule as applied, see
    ``effective_rule``; transforms needed; embeddings needed)."""
    asked = settings or current_settings(conn)
    asked.check()
    rule, transforms, embeddings = effective_rule(conn, asked.rule, asked.hash_kind)
    return asked, replace(asked, rule=rule), transforms, embeddings


def _rule_note(asked: ClusterSettings, applied: ClusterSettings) -> str | None:
    if asked.rule == applied.rule:
        return None
    if asked.hash_kind != "phash":
        return f"rule {asked.rule} applies to the pHash only: {asked.hash_kind} clusters by hash"
    return (f"{asked.rule} needs embedding vectors and none are stored (no pgvector, or loaded with --embedder none): "
            f"applied as {applied.rule}")


def current_parameters(conn: psycopg.Connection) -> dict | None:
    """The parameters the current clusters were built with (threshold, hash_kind, keeper_rule,
    reference_paths, rule, ...) and their counts, as a dict; None when none were built yet."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_queries()["cluster_parameters"]).fetchone()
    if row is None:
        return None
    row["threshold"] = row.pop("max_distance")
    row["reference_paths"] = list(row["reference_paths"] or [])
    if row.get("min_similarity") is not None:
        row["min_similarity"] = round(float(row["min_similarity"]), 4)
    return row


def _built_settings(params: dict) -> ClusterSettings | None:
    try:
        return ClusterSettings(
            threshold=params["threshold"], hash_kind=params["hash_kind"], rule=params["rule"],
            keeper_rule=params["keeper_rule"], reference_paths=tuple(params["reference_paths"]),
            min_similarity=params["min_similarity"], confirm_distance=params["confirm_distance"],
            transform_distance=params["transform_distance"],
        )
    except TypeError:  # built by hand with NULL bounds: not comparable, rebuild
        return None


def build_clusters(conn: psycopg.Connection, settings: ClusterSettings | None = None) -> ClusterResult:
    """Rebuild the clusters from the verified pairs that link images under ``settings`` (default: the
    stored ones) and commit. The pairs are used as stored (``ensure_clusters`` matches first when
    needed); those without a verdict get one from the stored signals first, and the ones still
    pending (waiting for the check by pixels, which ``ensure_clusters`` runs) link nothing.
    ``dbdedup.cluster_assignments`` is analysed by a build that changed enough of it (the SQL
    ``dbdedup.build_clusters`` calls ``dbdedup.analyze_if_changed``)."""
    asked, applied, _, _ = _applied_settings(conn, settings)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            _queries()["build_clusters"],
            {"max_distance": applied.threshold, "hash_kind": applied.hash_kind, "keeper_rule": applied.keeper_rule,
             "reference_paths": list(applied.reference_paths), "rule": applied.rule,
             "min_similarity": applied.min_similarity, "confirm_distance": applied.confirm_distance,
             "transform_distance": applied.transform_distance},
        ).fetchone()
    if not conn.autocommit:
        conn.commit()  # the block above is a savepoint when the caller's transaction was open
    assert row is not None
    return ClusterResult(settings=applied, clusters=row["clusters"], members=row["members"],
                         split_rounds=row["split_rounds"], seconds=row["seconds"], rebuilt=True,
                         rule_note=_rule_note(asked, applied))


@dataclass(frozen=True)
class VerifiedPairs:
    """What ``ensure_verified_pairs`` did: the settings as applied, and the matching and pixel
    checks it ran (None when the pairs were current)."""

    settings: ClusterSettings  # as applied: ``rule`` may be narrower than the one asked (see rule_note)
    match: MatchResult | None = None
    verification: object | None = None  # the verify_workers.VerifySummary when pending pairs were checked
    rule_note: str | None = None
    structure: object | None = None  # the structure_check.StructureCheck of pairs a SQL-only refresh() verified


def ensure_verified_pairs(
    conn: psycopg.Connection,
    settings: ClusterSettings | None = None,
    *,
    method: str = "auto",
    full: bool = False,
    lock_wait: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    verify_workers: int | None = None,
    verify_progress=None,
    keypoints=None,
    check_pending: bool = True,
) -> VerifiedPairs:
    """Make ``dbdedup.pairs`` hold every pair the rule of ``settings`` (default: the stored ones)
    uses, each with a verdict: the part of ``ensure_clusters`` before clustering, which `pairs`
    runs too.

    Matching runs (incrementally; in full with ``full``; always when a ``method`` is named) when
    images changed since the last match, the pairs do not reach the threshold, or the signals the
    rule uses are not current; it waits up to ``lock_wait`` seconds for a running load. Matching
    verifies the new pairs from the stored signals; the pairs still pending then are checked by
    their pixels (``verify_workers.verify_pending_pairs``, in ``verify_workers`` processes, with
    ``verify_progress`` callbacks; the keypoints they find kept in ``keypoints``, a
    ``keypoint_store.KeypointStore``, when given); without ``check_pending`` they are left pending
    (``ensure_clusters`` checks only those its clusters need).
    """
    asked, applied, transforms, embeddings = _applied_settings(conn, settings)
    check_arguments(asked.threshold, asked.hash_kind, method)
    match = None
    if (full or method != "auto"
            or not pairs_are_current(conn, threshold=applied.threshold, hash_kind=applied.hash_kind)
            or not signals_are_current(conn, transform_distance=applied.transform_distance, transforms=transforms,
                                       embeddings=embeddings, min_similarity=applied.min_similarity)):
        match = find_pairs(conn, threshold=applied.threshold, hash_kind=applied.hash_kind, method=method, full=full,
                           transforms=transforms, embeddings=embeddings,
                           transform_distance=applied.transform_distance, min_similarity=applied.min_similarity,
                           lock_wait=lock_wait, on_wait=on_wait)
    structure = None
    if match is None:
        # pairs dbdedup.refresh() verified by their colour signatures in SQL: compared by their thumbnails
        # (an index holds the unmeasured ones: nothing to read or write when there are none), those that
        # fail pending for the check by pixels below (matching ran the check itself)
        from .structure_check import check_structure

        structure = check_structure(conn, verify_workers)
        if not structure.measured + structure.unmeasured:
            structure = None
    verification = None
    if check_pending and pending_pairs(conn, applied.hash_kind):
        from .verify_workers import verify_pending_pairs  # OpenCV and the worker pool: only when needed

        verification = verify_pending_pairs(conn, workers=verify_workers, progress=verify_progress,
                                            lock_wait=lock_wait, on_wait=on_wait, keypoints=keypoints)
    return VerifiedPairs(applied, match, verification, _rule_note(asked, applied), structure)


def verify_pairs_by_pixels(
    conn: psycopg.Connection,
    settings: ClusterSettings | None = None,
    *,
    unchecked: bool = False,
    workers: int | None = None,
    progress=None,
    lock_wait: float | None = None,
    on_wait: Callable[[str], None] | None = None,
):
    """Check by their pixels every pending pair, then the pairs an earlier plan left unchecked that the
    clusters of ``settings`` (default: the stored ones) need now (a keeper deleted since, new images:
    ``verify_plan.verify_needed_pairs``, as a report does), or with ``unchecked`` every pair left
    unchecked; the library entry of `dbdedup verify`. Returns the merged ``verify_workers.VerifySummary``.

    The clusters are built again by the next command (or ``refresh()``) when this gave any verdict: a
    cron job of ``CALL dbdedup.refresh()`` then `dbdedup verify` gives the clusters a report gives."""
    from .verify_plan import mark_clusters_stale, reopen_unchecked
    from .verify_workers import merged, verify_pending_pairs

    if unchecked:
        reopen_unchecked(conn)
    summary = verify_pending_pairs(conn, workers=workers, progress=progress, lock_wait=lock_wait, on_wait=on_wait)
    if has_unchecked_pairs(conn):
        # (refresh() builds in SQL, with no plan: a pair a report left unchecked stays so, linking nothing,
        # after the keeper that made it needless is gone)
        _, applied, _, _ = _applied_settings(conn, settings)
        needed = verify_needed_pairs(conn, applied, workers=workers, progress=progress,
                                     lock_wait=lock_wait, on_wait=on_wait)
        if needed is not None:
            summary = merged(summary, needed)
    mark_clusters_stale(conn, summary.done)
    return summary


def ensure_clusters(
    conn: psycopg.Connection,
    settings: ClusterSettings | None = None,
    *,
    method: str = "auto",
    full: bool = False,
    lock_wait: float | None = None,
    on_wait: Callable[[str], None] | None = None,
    verify_workers: int | None = None,
    verify_progress=None,
) -> ClusterResult:
    """Make the current clustering match ``settings`` (default: the stored ones) and the images as
    they are now; the library entry of `match`, `report`, `export` and `apply`.

    First ``ensure_verified_pairs`` (matching and verification, when needed): every pair has a
    verdict before clustering, and only verified pairs link images. The clusters are rebuilt when
    their settings differ, the pairs changed (a match ran since the build, also another command's,
    such as the full re-match of `dbdedup pairs -t 64`) or verdicts were given (by a `dbdedup verify`
    since the build, or after a build that left pairs undecided, such as ``refresh()``'s). When
    everything is current this costs a few queries and writes nothing (a read-only role can run it).
    """
    # the keypoints the checks by pixels find, for every round of this call (see keypoint_store)
    with KeypointStore() as keypoints:
        return _ensure_clusters(conn, settings, method=method, full=full, lock_wait=lock_wait, on_wait=on_wait,
                                verify_workers=verify_workers, verify_progress=verify_progress, keypoints=keypoints)


def _ensure_clusters(conn: psycopg.Connection, settings: ClusterSettings | None, *, method: str, full: bool,
                     lock_wait: float | None, on_wait: Callable[[str], None] | None, verify_workers: int | None,
                     verify_progress, keypoints: KeypointStore) -> ClusterResult:
    prepared = ensure_verified_pairs(conn, settings, method=method, full=full, lock_wait=lock_wait, on_wait=on_wait,
                                     check_pending=False)
    applied, match = prepared.settings, prepared.match
    params = current_parameters(conn)
    state = match_state(conn, applied.hash_kind)
    waiting = pending_pairs(conn, applied.hash_kind)
    if not conn.autocommit:
        conn.commit()
    if params is not None and match is None and not waiting and prepared.structure is None:
        # (clusters built with pairs pending, by refresh(), are built again: `dbdedup verify` may have
        # given those pairs verdicts since; and so are clusters older than the last match: a full
        # re-match, such as `dbdedup pairs -t 64`'s, rewrites every pair and its verdict but keeps
        # matched_seq when no image changed; a match in the build's own transaction has its time)
        if (_built_settings(params) == applied and state is not None
                and params["matched_seq"] == state["matched_seq"] and state["matched_at"] <= params["built_at"]
                and not params["pending_at_build"]):
            return ClusterResult(settings=applied, clusters=params["clusters"], members=params["members"],
                                 split_rounds=params["split_rounds"], seconds=params["seconds"] or 0.0,
                                 rule_note=prepared.rule_note)
    verification = None
    if waiting or has_unchecked_pairs(conn):
        # only the pairs these clusters need, checked by their pixels (the others left unchecked)
        verification = verify_needed_pairs(conn, applied, workers=verify_workers, progress=verify_progress,
                                           lock_wait=lock_wait, on_wait=on_wait, keypoints=keypoints)
    result = build_clusters(conn, applied)
    result = link_keepers(conn, result, verify_workers=verify_workers, verify_progress=verify_progress,
                          lock_wait=lock_wait, on_wait=on_wait, keypoints=keypoints)
    return replace(result, matched=match is not None, match=match, verification=verification,
                   rule_note=prepared.rule_note)


KEEPER_ROUNDS = 3  # a member brought in may bring its own verified copies in the next round
# The pairs proposed through near neighbours are checked by their pixels, and where clusters of
# near-identical copies sit among unrelated photos none verifies (10,000 photos, 100 of them in four
# sizes: 267 proposals, none verified, about 6 s of checks): a first round checks this many of them,
# the most similar first, and the rest only when something of that round verified.
NEAR_SAMPLE = 64


def keeper_crop_windows(conn: psycopg.Connection, searched: Collection[int] = ()) -> tuple[list[int], list[int]]:
    """The keepers of the clusters that draw keeper pairs, less those ``searched`` already, and their
    window pHashes, flattened in the keepers' order (``crop_windows.window_phashes``), as
    ``dbdedup.propose_keeper_pairs`` takes them; empty when no such keeper has a 64x64 thumbnail."""
    rows = [row for row in conn.execute(_queries()["large_cluster_keeper_thumbnails"]) if row[0] not in searched]
    if not rows:
        return [], []
    from . import crop_windows  # numpy and scipy: only when there are such clusters

    thumbnails, kept = crop_windows.thumbnails_of([row[1] for row in rows])
    windows = crop_windows.window_phashes(thumbnails)
    return [rows[i][0] for i in kept], [int(v) for v in windows.ravel()]


def link_keepers(conn: psycopg.Connection, result: ClusterResult, *, verify_workers: int | None = None,
                 verify_progress=None, lock_wait: float | None = None,
                 on_wait: Callable[[str], None] | None = None, keypoints=None) -> ClusterResult:
    """After a build under a rule with transforms: propose the pair of each keeper with every image
    verified as the same picture as one of its members, and with every image outside the clusters of
    4 or more that has an image of such a cluster among its nearest embedding neighbours or turn
    signatures, or whose pHash is near a window of such a cluster's keeper (a crop: ``keeper_crop_windows``);
    and each such image's pair with its single nearest turn signature anywhere, when very near
    (``dbdedup.propose_keeper_pairs``: a lone turned copy); check them like any pair (in SQL, then by their pixels) and
    build again; up to ``KEEPER_ROUNDS`` times (a copy turned by 20 degrees may be nearest to the one
    turned by 10, which joined in the round before). The first round proposes only ``NEAR_SAMPLE``
    of the near neighbours' pairs; when nothing it proposed verifies, the rounds end there. A member
    is still in a cluster only when its own pair with the keeper is verified. The checks keep their
    keypoints in ``keypoints`` (a ``keypoint_store.KeypointStore``) when given."""
    if result.settings.rule not in ("transforms", "fused") or result.settings.hash_kind != "phash":
        return result
    proposed, check, rounds, near_limit = 0, None, 0, NEAR_SAMPLE
    searched: set[int] = set()  # the keepers whose crop windows a round without near_limit searched
    while rounds < KEEPER_ROUNDS:
        verified_in_sql = 0
        # (a keeper's windows are searched in one round that proposes all it finds: about 1.5 s a
        # search on the accuracy set, whose later rounds would find the same pairs again)
        crop_keepers, crop_windows = keeper_crop_windows(conn, searched)
        if near_limit is None:
            searched.update(crop_keepers)
        with conn.transaction():
            found = conn.execute(_queries()["propose_keeper_pairs"],
                                 {"near_limit": near_limit, "crop_keepers": crop_keepers,
                                  "crop_windows": crop_windows}).fetchone()[0]
            if found:
                from .structure_check import check_structure  # numpy: only when pairs were proposed

                verified_in_sql = conn.execute(_queries()["verify_pairs"], {"hash_kind": "phash"}).fetchone()[1]
                structure = check_structure(conn, verify_workers)
                # (left to the check by pixels, or refused: colours no tone edit explains)
                verified_in_sql -= structure.failed + structure.tones_apart
        if not conn.autocommit:
            conn.commit()
        if not found:
            break
        from .verify_workers import merged  # numpy, OpenCV, the pool: only when needed

        proposed += found
        checked = verify_needed_pairs(conn, result.settings, workers=verify_workers, progress=verify_progress,
                                      lock_wait=lock_wait, on_wait=on_wait, keypoints=keypoints)
        if checked is not None:
            check = merged(check, checked)
        if near_limit is not None:
            # the sample round: it counts as no round, and when none of its pairs verified (in SQL or
            # by their pixels), the clusters are as built and the other near pairs would fare no better
            near_limit = None
            if verified_in_sql + (checked.verified if checked is not None else 0) == 0:
                break
        else:
            rounds += 1
        result = build_clusters(conn, result.settings)
    return replace(result, keeper_pairs=proposed, keeper_check=check)
