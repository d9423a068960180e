"""The report: what the clusters are, as data and as text.

Reading (``collect_summary``, ``iter_clusters``, ``iter_pairs``, ``neighbour_histogram``)
takes a connection the caller owns and returns plain data; rendering
(``write_json``, ``write_ndjson``, ``write_csv``, ``render_terminal``, ...) writes
that data to a text stream. The report module is the one library module that prints.

The JSON report is a stable contract for tools::

    {"parameters": {"threshold": 10, "hash": "phash", "keeper_rule": "largest",
                    "reference_paths": [], "sort": "members", "limit": null},
     "summary": {"images": 15, "exact_duplicate_groups": 1, "near_duplicate_clusters": 4,
                 "removable_images": 6, "reclaimable_bytes": 171000, "common_hash_images": 0, ...},
     "clusters": [{"id": 3, "keeper": "/photos/beach.jpg", "member_count": 3,
                   "reclaimable_bytes": 10927,
                   "members": [{"path": "/photos/beach.jpg", "distance": 0, "width": 640,
                                "height": 480, "bytes": 26746, "keeper": true,
                                "exact_duplicate": false, "protected": false}, ...]}, ...]}

Members include the keeper (first, distance 0). Paths are as stored in
``dbdedup.images.path``; a path that is not valid UTF-8 is stored with ``\\xNN``
escapes, and its member then also carries ``"path_bytes"``: the exact bytes in hex.
New keys may be added; existing keys keep their names and meaning.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Sequence, TextIO

import psycopg
from psycopg.rows import dict_row

from .sqlfiles import named_queries

SORT_ORDERS = ("members", "bytes", "distance", "path")
CSV_COLUMNS = (
    "cluster_id", "keeper", "path", "distance", "width", "height", "bytes",
    "exact_duplicate", "protected", "keeper_path", "transform", "similarity",
)
PAIR_COLUMNS = (
    "distance", "path_a", "path_b", "exact", "width_a", "height_a", "bytes_a", "width_b", "height_b", "bytes_b",
    "transform", "transform_distance", "similarity",
)


def _queries() -> dict[str, str]:
    return named_queries("queries/report.sql")


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class ReportParameters:
    """What a report was made with: the clustering and the selection."""

    threshold: int
    hash_kind: str = "phash"
    keeper_rule: str = "largest"
    reference_paths: tuple[str, ...] = ()
    sort: str = "members"
    limit: int | None = None
    rule: str = "fused"
    min_similarity: float | None = None  # None: dbdedup.embedding.DEFAULT_MIN_SIMILARITY
    confirm_distance: int | None = None  # None: dbdedup.embedding.DEFAULT_CONFIRM_DISTANCE
    transform_distance: int | None = None  # None: dbdedup.matching.DEFAULT_TRANSFORM_DISTANCE

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "hash": self.hash_kind,
            "rule": self.rule,
            "min_similarity": self.min_similarity,
            "confirm_distance": self.confirm_distance,
            "transform_distance": self.transform_distance,
            "keeper_rule": self.keeper_rule,
            "reference_paths": list(self.reference_paths),
            "sort": self.sort,
            "limit": self.limit,
        }


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
    is_same_file: bool = False  # a hard link to the keeper's file: removing it frees nothing

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
        }
        if not self.path_is_utf8:
            data["path_bytes"] = self.path_bytes.hex()
        return data


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


def ensure_current(conn: psycopg.Connection, params: ReportParameters):
    """Make the clustering match ``params`` (matching runs first when needed); returns the ClusterResult."""
    from .clusters import ensure_clusters

    return ensure_clusters(
        conn,
        max_distance=params.threshold,
        hash_kind=params.hash_kind,
        keeper_rule=params.keeper_rule,
        reference_paths=tuple(params.reference_paths),
        rule=params.rule,
        min_similarity=params.min_similarity,
        confirm_distance=params.confirm_distance,
        transform_distance=params.transform_distance,
    )


def ensure_pairs(conn: psycopg.Connection, *, max_distance: int, hash_kind: str = "phash") -> None:
    """Make sure dbdedup.pairs holds every pair up to ``max_distance`` (matching runs when needed)."""
    from .matching import find_pairs, pairs_are_current

    if not pairs_are_current(conn, max_distance=max_distance, hash_kind=hash_kind):
        find_pairs(conn, max_distance=max_distance, hash_kind=hash_kind)


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
        similarity=row.get("similarity"),
        is_same_file=bool(row.get("is_same_file")),
    )


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
    images = conn.execute("SELECT count(*) FROM dbdedup.images WHERE status = 'ok'").fetchone()[0]
    return NeighbourHistogram(counts=counts, known_up_to=int(row[0]) if row else 0,
                              beyond=int(images) - sum(n for _, n in counts))


def iter_pairs(conn: psycopg.Connection, *, max_distance: int, hash_kind: str = "phash") -> Iterator[dict[str, Any]]:
    """Every known pair up to ``max_distance``, most similar first, as dicts keyed like PAIR_COLUMNS."""
    with conn.cursor(name="dbdedup_report_pairs", row_factory=dict_row, withhold=conn.autocommit) as cur:
        cur.itersize = 5000
        cur.execute(_queries()["pairs"], {"hash_kind": hash_kind, "max_distance": max_distance})
        for row in cur:
            row["path_bytes_a"] = bytes(row["path_bytes_a"])
            row["path_bytes_b"] = bytes(row["path_bytes_b"])
            yield row


# ---------------------------------------------------------------- rendering for tools


def write_json(params: ReportParameters, summary: Summary, clusters: Iterable[Cluster], out: TextIO) -> None:
    """The documented JSON report (see the module docstring), written cluster by cluster."""
    out.write("{\n")
    out.write(f'  "parameters": {json.dumps(params.to_json())},\n')
    out.write(f'  "summary": {json.dumps(summary.to_json())},\n')
    out.write('  "clusters": [')
    for i, cluster in enumerate(clusters):
        out.write(",\n    " if i else "\n    ")
        out.write(json.dumps(cluster.to_json()))
    out.write("\n  ]\n}\n")


def write_ndjson(clusters: Iterable[Cluster], out: TextIO) -> None:
    """One JSON object per line: each cluster as in the JSON report's ``clusters`` list."""
    for cluster in clusters:
        out.write(json.dumps(cluster.to_json()) + "\n")


def write_csv(clusters: Iterable[Cluster], out: TextIO) -> None:
    """One row per member with its cluster id; the keeper's row has keeper=true."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for cluster in clusters:
        keeper_path = cluster.keeper.path
        for m in cluster.members:
            writer.writerow([
                cluster.id, _bool(m.is_keeper), m.path, m.distance, _blank(m.width), _blank(m.height),
                m.size_bytes, _bool(m.is_exact_duplicate), _bool(m.is_protected), keeper_path,
                _blank(m.transform), "" if m.similarity is None else round(m.similarity, 4),
            ])


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _blank(value: Any) -> Any:
    return "" if value is None else value


def pair_record(row: dict[str, Any]) -> dict[str, Any]:
    """A pair as the `pairs` command writes it (path_bytes_a/b added only for non-UTF-8 paths)."""
    record = {c: row[c] for c in PAIR_COLUMNS}
    for side in ("a", "b"):
        raw = row[f"path_bytes_{side}"]
        try:
            ok = raw.decode("utf-8") == row[f"path_{side}"]
        except UnicodeDecodeError:
            ok = False
        if not ok:
            record[f"path_bytes_{side}"] = raw.hex()
    return record


def write_pairs(rows: Iterable[dict[str, Any]], fmt: str, out: TextIO) -> None:
    """Pairs as json (a list), ndjson or csv."""
    records = (pair_record(r) for r in rows)
    if fmt == "json":
        out.write("[")
        for i, rec in enumerate(records):
            out.write(",\n  " if i else "\n  ")
            out.write(json.dumps(rec))
        out.write("\n]\n")
    elif fmt == "ndjson":
        for rec in records:
            out.write(json.dumps(rec) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(PAIR_COLUMNS)
        for rec in records:
            writer.writerow(["" if rec[c] is None else _bool(rec[c]) if isinstance(rec[c], bool) else rec[c]
                             for c in PAIR_COLUMNS])
    else:
        raise ValueError(f"unknown format {fmt!r}")


# ---------------------------------------------------------------- rendering for people


def human_bytes(n: int | float) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def histogram_lines(
    counts: Sequence[tuple[int, int]], *, threshold: int | None = None, width: int = 40, label: str = "pairs"
) -> list[str]:
    """A text bar chart, one line per distance from 0 to the largest one present, with a rule where
    ``threshold`` cuts (everything above the rule is matched). Runs of four or more empty
    distances are folded into one line, so a wide gap stays visible without scrolling."""
    if not counts:
        return []
    by_distance = dict(counts)
    top = max(by_distance)
    if threshold is not None:
        top = max(top, threshold)
    peak = max(by_distance.values()) or 1
    lines: list[str] = []
    rule = f"------+-- threshold {threshold}: {label} above this line have a match " + "-" * 4

    def flush_empty(first: int, last: int) -> None:
        if last - first >= 3:
            lines.append(f"{f'{first}-{last}':>5} | {'':<{width}} 0 each")
        else:
            lines.extend(f"{d:>5} | {'':<{width}} 0" for d in range(first, last + 1))

    empty_from: int | None = None
    for d in range(0, top + 1):
        n = by_distance.get(d, 0)
        if n == 0:
            if empty_from is None:
                empty_from = d
        else:
            if empty_from is not None:
                flush_empty(empty_from, d - 1)
                empty_from = None
            bar = "#" * max(1, round(width * n / peak))
            lines.append(f"{d:>5} | {bar:<{width}} {n}")
        if threshold is not None and d == threshold:
            if empty_from is not None:
                flush_empty(empty_from, d)
                empty_from = None
            lines.append(rule)
    if empty_from is not None:
        flush_empty(empty_from, top)
    return lines


def _width(out: TextIO, default: int) -> int | None:
    """The terminal's width; for a pipe or file, $COLUMNS or ``default``."""
    if out.isatty():
        return None
    try:
        return int(os.environ.get("COLUMNS", "")) or default
    except ValueError:
        return default


def render_terminal(
    params: ReportParameters,
    summary: Summary,
    clusters: Iterable[Cluster],
    histogram: NeighbourHistogram | None,
    out: TextIO,
    *,
    color: bool | None = None,
) -> None:
    """The report for people: summary, the largest clusters (keeper marked), the distance histogram."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(file=out, soft_wrap=False, force_terminal=color, no_color=color is False,
                      highlight=False, width=_width(out, 120))
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("images", f"{summary.images:,}")
    head.add_row("exact-duplicate groups",
                 f"{summary.exact_duplicate_groups:,} ({summary.exact_duplicate_copies:,} extra copies)")
    head.add_row("near-duplicate clusters",
                 f"{summary.near_duplicate_clusters:,} ({summary.images_in_clusters:,} images)")
    removable = f"{summary.removable_images:,}"
    if summary.protected_images:
        removable += f" (+{summary.protected_images:,} protected under reference paths)"
    head.add_row("removable images", removable)
    head.add_row("bytes reclaimable", f"{human_bytes(summary.reclaimable_bytes)} ({summary.reclaimable_bytes:,} bytes)")
    head.add_row("matched with", f"{params.hash_kind} distance <= {params.threshold}, rule {params.rule}, "
                                 f"keeper: {params.keeper_rule}")
    if params.reference_paths:
        head.add_row("reference paths", ", ".join(params.reference_paths))
    if summary.common_hash_images:
        head.add_row("over-common hashes", f"{summary.common_hash_images:,} images (blank or flat pictures) "
                                           "matched to exact copies only: see dbdedup.common_hash_images")
    console.print(Text("dbdedup report", style="bold underline"))
    console.print(head)
    if summary.images == 0:
        console.print()
        console.print("no images loaded yet: run `dbdedup load DIR` first")
        return

    shown = 0
    for cluster in clusters:
        shown += 1
        table = Table(
            title=f"cluster {cluster.id}: {len(cluster.members)} images, "
                  f"{human_bytes(cluster.reclaimable_bytes)} reclaimable",
            title_justify="left", title_style="bold", show_edge=False, pad_edge=False,
        )
        table.add_column("", no_wrap=True)
        table.add_column("path", overflow="fold")
        table.add_column("dist", justify="right")
        table.add_column("via", no_wrap=True)
        table.add_column("size", justify="right", no_wrap=True)
        table.add_column("bytes", justify="right", no_wrap=True)
        for m in cluster.members:
            if m.is_keeper:
                mark = Text("keep", style="bold green")
            elif m.is_protected:
                mark = Text("ref", style="cyan")
            elif m.is_exact_duplicate:
                mark = Text("same", style="yellow")
            else:
                mark = Text("dup", style="yellow")
            dims = f"{m.width}x{m.height}" if m.width and m.height else "?"
            table.add_row(mark, m.path, str(m.distance), _link(m, params.threshold), dims, human_bytes(m.size_bytes))
        console.print()
        console.print(table)
    if shown == 0:
        console.print()
        console.print("no near-duplicate clusters at this threshold")
    elif params.limit is not None and shown < summary.near_duplicate_clusters:
        console.print()
        console.print(f"showing {shown} of {summary.near_duplicate_clusters:,} clusters (--limit to see more)")
    if shown:
        console.print(
            "[dim]keep = keeper; same = byte-identical copy; dup = near-duplicate; ref = under a reference path, "
            "never touched; via = how it matches its keeper when not by its own pHash (flip_h, rotate_90, trim: "
            "a variant; emb: the embedding similarity)[/dim]"
        )

    if histogram is not None and (histogram.counts or histogram.beyond):
        counts = list(histogram.counts) or [(0, 0)]
        top = max(histogram.known_up_to, params.threshold)
        lines = histogram_lines(counts + [(top, dict(counts).get(top, 0))], threshold=params.threshold,
                                label="images")
        console.print()
        console.print(Text(f"nearest-neighbour distance of each image ({params.hash_kind}, bits of 64)", style="bold"))
        for line in lines:
            console.print(Text(line))
        console.print(Text(f"{'>' + str(histogram.known_up_to):>5} | {histogram.beyond:,} images have no neighbour within "
                           f"{histogram.known_up_to} bits (`dbdedup calibrate` measures how far they are)"))


def _link(member: Member, threshold: int) -> str:
    """How a member matches its keeper, when not by its plain pHash: a variant, or the embedding."""
    if member.is_keeper or member.is_exact_duplicate:
        return ""
    if member.transform:
        return member.transform
    if member.similarity is not None and member.distance > threshold:
        return f"emb {member.similarity:.2f}"
    return ""


def render_pairs_terminal(rows: Iterable[dict[str, Any]], out: TextIO, *, max_distance: int) -> int:
    """Pairs as a table for people; returns how many were shown."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, soft_wrap=False, highlight=False, width=_width(out, 160))
    console.print(f"pairs up to distance {max_distance}, most similar first")
    table = Table()
    table.add_column("dist", justify="right")
    table.add_column("image a", overflow="fold")
    table.add_column("image b", overflow="fold")
    table.add_column("exact")
    n = 0
    for row in rows:
        n += 1
        table.add_row(str(row["distance"]), row["path_a"], row["path_b"], "yes" if row["exact"] else "")
    console.print(table)
    return n
