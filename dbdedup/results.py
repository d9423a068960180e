"""What matching found, read back: the summary counts, the clusters with their members, the
pairs, and each image's nearest-neighbour distance.

Every function takes a connection the caller owns and returns plain data (streamed where it
can be large); ``dbdedup.clusters.ensure_clusters`` makes the clustering current first, and
``dbdedup.report`` renders what these return.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import psycopg
from psycopg.rows import dict_row

from .sqlfiles import named_queries

if TYPE_CHECKING:
    from .clusters import ClusterSettings

SORT_ORDERS = ("members", "bytes", "distance", "path")


def _queries() -> dict[str, str]:
    return named_queries("queries/report.sql")


@dataclass(frozen=True)
class Summary:
    """Counts over the whole clustering (not only the clusters a report shows)."""

    images: int
    exact_duplicate_groups: int
    exact_duplicate_copies: int
    near_duplicate_clusters: int
    images_in_clusters: int
    removable_images: int
    protected_images: int
    reclaimable_bytes: int
    common_hash_images: int = 0  # images whose hash is over-common (blank, flat): matched only to exact copies

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Member:
    """One image of a cluster, as ``dbdedup.cluster_members`` has it."""

    image_id: int
    path: str
    path_bytes: bytes
    is_keeper: bool
    distance: int
    width: int | None
    height: int | None
    size_bytes: int
    sha256: bytes | None
    mtime_ns: int
    is_exact_duplicate: bool
    is_protected: bool
    transform: str | None = None  # the flip, rotation or trim linking it to the keeper
    similarity: float | None = None  # embedding similarity to the keeper, when known
    is_same_file: bool = False  # another path to a file listed before it (the keeper's, or a member's): counts once
    verify_reason: str | None = None  # how its link to the keeper was verified (pairs.verify_reason)
    verify_score: float | None = None

    def why(self, threshold: int) -> str:
        """Why the member is in its cluster, in a few words for people: what matched its keeper
        (its pHash within ``threshold``, a flipped/rotated/trimmed variant, the embedding) and how
        that match was verified ("pHash 2, colours agree 0.96"; "keeper"; "same bytes")."""
        if self.is_keeper:
            return "keeper"
        if self.is_same_file:
            return "same file (another path to it)"
        if self.is_exact_duplicate:
            return "same bytes"
        if self.transform == "keypoints":
            matched = "keypoints"  # shared keypoint keys: a crop or a rotation, no hash distance
        elif self.transform == "linked":
            matched = "through a member"  # proposed because it is verified with a member (its own pair checked)
        elif self.transform == "same_size":
            matched = "same size"  # no hash signal of its own: paired by size, for its pixels
        elif self.transform == "crop_window":
            matched = "crop window"  # its pHash near a window of the other: a crop, no whole-frame distance
        elif self.transform:
            matched = f"{self.transform} {self.distance}"
        elif self.similarity is not None and self.distance > threshold:
            matched = f"embedding {self.similarity:.2f}"
        else:
            matched = f"pHash {self.distance}"
        verified = VERIFIED_BY.get(self.verify_reason or "", self.verify_reason)
        if not verified:
            return matched
        score = f" {self.verify_score:.2f}" if self.verify_score is not None and self.verify_reason != "reviewer" else ""
        return f"{matched}, {verified}{score}"

    @property
    def path_is_utf8(self) -> bool:
        try:
            return self.path_bytes.decode("utf-8") == self.path
        except UnicodeDecodeError:
            return False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": self.path,
            "distance": self.distance,
            "width": self.width,
            "height": self.height,
            "bytes": self.size_bytes,
            "keeper": self.is_keeper,
            "exact_duplicate": self.is_exact_duplicate,
            "protected": self.is_protected,
            "transform": self.transform,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "same_file": self.is_same_file,
            "verify_reason": self.verify_reason,
            "verify_score": None if self.verify_score is None else round(self.verify_score, 4),
        }
        if not self.path_is_utf8:
            data["path_bytes"] = self.path_bytes.hex()
        return data


# How a link was verified (pairs.verify_reason), as the report says it.
VERIFIED_BY = {
    "exact": "same pixels",
    "signature": "colours agree",
    "geometry": "features align",
    "dense": "pixels align",
    "tone": "one tone edit",
    "overlay": "under a watermark",
    "reencoded": "JPEG artefacts agree",
    "converted": "its greyscale conversion",
    "pixels": "same pixels, re-encoded",
    "reviewer": "confirmed by a reviewer",
}


@dataclass(frozen=True)
class Cluster:
    """A cluster with its members, keeper first."""

    id: int
    rank: int
    members: tuple[Member, ...] = field(default_factory=tuple)

    @property
    def keeper(self) -> Member:
        return next(m for m in self.members if m.is_keeper)

    @property
    def duplicates(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if not m.is_keeper)

    @property
    def reclaimable_bytes(self) -> int:
        return sum(m.size_bytes for m in self.duplicates if not m.is_protected and not m.is_same_file)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "keeper": self.keeper.path,
            "member_count": len(self.members),
            "reclaimable_bytes": self.reclaimable_bytes,
            "members": [m.to_json() for m in self.members],
        }


def collect_summary(conn: psycopg.Connection, *, hash_kind: str = "phash") -> Summary:
    """Counts for the current clustering: images, exact groups, clusters, removable images and bytes."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_queries()["summary"], {"hash_kind": hash_kind}).fetchone()
    assert row is not None
    return Summary(
        images=int(row["images"]),
        exact_duplicate_groups=int(row["exact_duplicate_groups"]),
        exact_duplicate_copies=int(row["exact_duplicate_copies"]),
        near_duplicate_clusters=int(row["clusters"]),
        images_in_clusters=int(row["images_in_clusters"]),
        removable_images=int(row["removable_images"]),
        protected_images=int(row["protected_images"]),
        reclaimable_bytes=int(row["reclaimable_bytes"]),
        common_hash_images=int(row["common_hash_images"]),
    )


def _member(row: dict[str, Any]) -> Member:
    return Member(
        image_id=row["image_id"],
        path=row["path"],
        path_bytes=bytes(row["path_bytes"]),
        is_keeper=row["is_keeper"],
        distance=int(row["distance_to_keeper"] or 0),
        width=row["width"],
        height=row["height"],
        size_bytes=row["size_bytes"],
        sha256=bytes(row["sha256"]) if row["sha256"] is not None else None,
        mtime_ns=row["mtime_ns"],
        is_exact_duplicate=bool(row["is_exact_duplicate"]),
        is_protected=bool(row["is_protected"]),
        transform=row.get("transform"),
        similarity=finite(row.get("similarity")),
        is_same_file=bool(row.get("is_same_file")),
        verify_reason=row.get("verify_reason"),
        verify_score=finite(row.get("verify_score")),
    )


def finite(value: float | None) -> float | None:
    """A measure as the reports show it: NaN (a cosine of a zero vector, say) as unknown, None, never as a number
    that sorts above every other and makes the JSON report invalid."""
    return None if value is None or math.isnan(value) else value


def iter_clusters(conn: psycopg.Connection, *, sort: str = "members", limit: int | None = None) -> Iterator[Cluster]:
    """The clusters of the current clustering, in ``sort`` order (members, bytes, distance, path),
    at most ``limit`` of them; streamed, so a large report does not sit in memory."""
    if sort not in SORT_ORDERS:
        raise ValueError(f"sort must be one of {SORT_ORDERS}")
    # a server-side cursor streams the rows instead of fetching them all at once
    # (WITH HOLD lets it live outside a transaction, on an autocommit connection)
    with conn.cursor(name="dbdedup_report_members", row_factory=dict_row, withhold=conn.autocommit) as cur:
        cur.itersize = 2000
        cur.execute(_queries()["cluster_members"], {"sort": sort, "limit": limit})
        for (rank, cluster_id), rows in itertools.groupby(cur, key=lambda r: (r["rank"], r["cluster_id"])):
            yield Cluster(id=cluster_id, rank=rank, members=tuple(_member(r) for r in rows))


@dataclass(frozen=True)
class NeighbourHistogram:
    """How far each image is from its nearest neighbour, as far as the stored pairs tell."""

    counts: tuple[tuple[int, int], ...]  # (distance, images whose nearest neighbour is that far)
    known_up_to: int  # pairs are complete up to this distance
    beyond: int  # images with no neighbour within known_up_to


def neighbour_histogram(conn: psycopg.Connection, *, hash_kind: str = "phash") -> NeighbourHistogram:
    """Each image's nearest-neighbour distance from dbdedup.pairs (cheap: no new comparisons).
    Distances beyond what matching stored are counted together in ``beyond``; `calibrate` measures them."""
    q = _queries()
    counts = tuple((int(d), int(n)) for d, n in conn.execute(q["nearest_neighbour_from_pairs"],
                                                             {"hash_kind": hash_kind}))
    row = conn.execute(q["pairs_known_up_to"], {"hash_kind": hash_kind}).fetchone()
    images = conn.execute(q["ok_images"]).fetchone()[0]
    return NeighbourHistogram(counts=counts, known_up_to=int(row[0]) if row else 0,
                              beyond=int(images) - sum(n for _, n in counts))


def iter_pairs(conn: psycopg.Connection, settings: "ClusterSettings") -> Iterator[dict[str, Any]]:
    """Every stored pair the rule of ``settings`` considers (its hash within the threshold, a variant
    within the transform distance, an embedding neighbour above the similarity), verified ones first,
    then most similar first, each with its verdict, as dicts keyed like ``report.PAIR_COLUMNS``."""
    with conn.cursor(name="dbdedup_report_pairs", row_factory=dict_row, withhold=conn.autocommit) as cur:
        cur.itersize = 5000
        cur.execute(_queries()["pairs"], {
            "hash_kind": settings.hash_kind, "max_distance": settings.threshold, "rule": settings.rule,
            "transform_distance": settings.transform_distance, "min_similarity": settings.min_similarity,
            "confirm_distance": settings.confirm_distance})
        for row in cur:
            row["path_bytes_a"] = bytes(row["path_bytes_a"])
            row["path_bytes_b"] = bytes(row["path_bytes_b"])
            row["similarity"], row["verify_score"] = finite(row.get("similarity")), finite(row.get("verify_score"))
            yield row
