"""The report, rendered: the clusters and pairs ``dbdedup.results`` reads, as JSON, CSV or text.

Rendering only: no queries and no matching (``dbdedup.clusters.ensure_clusters`` makes the
clustering current, ``dbdedup.results`` reads it); every function writes to a text stream.

The JSON report is a stable contract for tools::

    {"parameters": {"threshold": 8, "hash": "phash", "rule": "fused", "keeper_rule": "largest",
                    "reference_paths": [], "min_similarity": 0.92, "confirm_distance": 20,
                    "transform_distance": 2, "sort": "members", "limit": null},
     "summary": {"images": 15, "exact_duplicate_groups": 1, "near_duplicate_clusters": 4,
                 "removable_images": 6, "reclaimable_bytes": 171000, "common_hash_images": 0, ...},
     "clusters": [{"id": 3, "keeper": "/photos/beach.jpg", "member_count": 3,
                   "reclaimable_bytes": 10927,
                   "members": [{"path": "/photos/beach.jpg", "distance": 0, "width": 640,
                                "height": 480, "bytes": 26746, "keeper": true,
                                "exact_duplicate": false, "protected": false, "reviewed": false,
                                "verdicts": []}, ...], "reviewed": false}, ...]}

The parameters are the settings in effect (``rule`` as applied: ``transforms`` where ``fused``
has no embedding vectors to use). Members include the keeper (first, distance 0). Paths are as stored in
``dbdedup.images.path``; a path that is not valid UTF-8 is stored with ``\\xNN``
escapes, and its member then also carries ``"path_bytes"``: the exact bytes in hex (the CSV report's
last column, ``path_bytes``, the same; empty for a UTF-8 path).
``reviewed`` says whether a reviewer's verdict (``dbdedup verdicts``) names a member (or any
member of a cluster); a member's ``verdicts`` lists them: ``{"id", "kind", "decided_by",
"decided_at", "note"}``, and for a pair ``"other_sha256"`` and ``"other_paths"`` (the other image's
files now; empty when it is not loaded).
New keys may be added; existing keys keep their names and meaning.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterable, Mapping, Sequence, TextIO

from .clusters import ClusterSettings
from .results import VERIFIED_BY, Cluster, Member, NeighbourHistogram, Summary
from .terminal import printable
from .verdicts import Verdict, member_json

CSV_COLUMNS = (
    "cluster_id", "keeper", "path", "distance", "width", "height", "bytes",
    "exact_duplicate", "protected", "keeper_path", "transform", "similarity", "verify_reason", "verify_score",
    "path_bytes",
)
PAIR_COLUMNS = (
    "distance", "path_a", "path_b", "exact", "width_a", "height_a", "bytes_a", "width_b", "height_b", "bytes_b",
    "matched_by", "transform", "transform_distance", "similarity", "verified", "verify_reason", "verify_score",
)


# ---------------------------------------------------------------- rendering for tools


def cluster_json(cluster: Cluster, verdicts: Mapping[bytes, list[Verdict]] | None = None) -> dict[str, Any]:
    """A cluster as the JSON report has it; with ``verdicts`` (``dbdedup.verdicts.all_by_image``),
    each member says whether it was reviewed and by which verdicts."""
    data = cluster.to_json()
    if verdicts is None:
        return data
    for member, item in zip(cluster.members, data["members"]):
        named = verdicts.get(member.sha256, []) if member.sha256 else []
        item["reviewed"] = bool(named)
        item["verdicts"] = member_json(named, member.sha256) if named else []
    data["reviewed"] = any(item["reviewed"] for item in data["members"])
    return data


def write_json(settings: ClusterSettings, summary: Summary, clusters: Iterable[Cluster], out: TextIO, *,
               sort: str = "members", limit: int | None = None,
               verdicts: Mapping[bytes, list[Verdict]] | None = None) -> None:
    """The documented JSON report (see the module docstring), written cluster by cluster."""
    parameters = {**settings.to_json(), "sort": sort, "limit": limit}
    out.write("{\n")
    out.write(f'  "parameters": {json.dumps(parameters)},\n')
    out.write(f'  "summary": {json.dumps(summary.to_json())},\n')
    out.write('  "clusters": [')
    for i, cluster in enumerate(clusters):
        out.write(",\n    " if i else "\n    ")
        out.write(json.dumps(cluster_json(cluster, verdicts)))
    out.write("\n  ]\n}\n")


def write_ndjson(clusters: Iterable[Cluster], out: TextIO, *,
                 verdicts: Mapping[bytes, list[Verdict]] | None = None) -> None:
    """One JSON object per line: each cluster as in the JSON report's ``clusters`` list."""
    for cluster in clusters:
        out.write(json.dumps(cluster_json(cluster, verdicts)) + "\n")


def write_csv(clusters: Iterable[Cluster], out: TextIO) -> None:
    """One row per member with its cluster id; the keeper's row has keeper=true. ``path_bytes`` is the
    exact name in hex for a path that is not UTF-8 (as in the JSON report), else empty."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for cluster in clusters:
        keeper_path = cluster.keeper.path
        for m in cluster.members:
            writer.writerow([
                cluster.id, _bool(m.is_keeper), m.path, m.distance, _blank(m.width), _blank(m.height),
                m.size_bytes, _bool(m.is_exact_duplicate), _bool(m.is_protected), keeper_path,
                _blank(m.transform), "" if m.similarity is None else round(m.similarity, 4),
                _blank(m.verify_reason), "" if m.verify_score is None else round(m.verify_score, 4),
                "" if m.path_is_utf8 else m.path_bytes.hex(),
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
    settings: ClusterSettings,
    summary: Summary,
    clusters: Iterable[Cluster],
    histogram: NeighbourHistogram | None,
    out: TextIO,
    *,
    limit: int | None = None,
    rule_note: str | None = None,
    color: bool | None = None,
) -> None:
    """The report for people: summary, the largest clusters (keeper marked), the distance histogram.
    ``settings`` are the clustering's as applied; ``rule_note`` says why its rule is not the one asked."""
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
    head.add_row("matched with", f"{settings.hash_kind} distance <= {settings.threshold}, rule {settings.rule}, "
                                 f"keeper: {settings.keeper_rule}")
    if rule_note:
        head.add_row("", rule_note)
    if settings.reference_paths:
        head.add_row("reference paths", Text(printable(", ".join(settings.reference_paths)) + " (protected)"))
    if summary.common_hash_images:
        head.add_row("over-common hashes", f"{summary.common_hash_images:,} images (blank or flat pictures) "
                                           "matched by it to exact copies only (one-colour ones of one size: the same "
                                           "pixels too): see dbdedup.common_hash_images")
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
        table.add_column("why", no_wrap=True)
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
            table.add_row(mark, Text(printable(m.path)), str(m.distance), m.why(settings.threshold), dims,
                          human_bytes(m.size_bytes))
        console.print()
        console.print(table)
    if shown == 0 and summary.near_duplicate_clusters and limit == 0:
        console.print()
        console.print(f"{summary.near_duplicate_clusters:,} near-duplicate clusters, none listed (--limit 0)")
    elif shown == 0:
        console.print()
        console.print("no near-duplicate clusters at this threshold")
    elif limit is not None and shown < summary.near_duplicate_clusters:
        console.print()
        console.print(f"showing {shown} of {summary.near_duplicate_clusters:,} clusters (--limit to see more)")
    if shown:
        console.print(
            "[dim]keep = keeper; same = byte-identical copy; dup = near-duplicate; ref = under a reference path "
            "(or chosen as keeper by a verdict), never touched; why = what matched the keeper (its pHash, a flip_h/rotate_90/trim variant, the "
            "embedding, a window of the keeper: crop window, or a verified member: through a member) and how the "
            "pair was verified (colours agree: "
            "colour layouts compared; features align: local features matched geometrically; pixels align: a flat "
            "picture aligned by its pixels; one tone edit: a brightness or contrast edit maps one onto the other; "
            "under a watermark: one is the other under a see-through overlay; JPEG artefacts agree: the other "
            "picture, compressed as the low-quality JPEG was, gives its pixels; same pixels, re-encoded: a "
            "one-colour picture, the same pixels at one size), with the score[/dim]"
        )

    if histogram is not None and (histogram.counts or histogram.beyond):
        counts = list(histogram.counts) or [(0, 0)]
        top = max(histogram.known_up_to, settings.threshold)
        lines = histogram_lines(counts + [(top, dict(counts).get(top, 0))], threshold=settings.threshold,
                                label="images")
        console.print()
        console.print(Text(f"nearest-neighbour distance of each image ({settings.hash_kind}, bits of 64)",
                           style="bold"))
        for line in lines:
            console.print(Text(line))
        console.print(Text(f"{'>' + str(histogram.known_up_to):>5} | {histogram.beyond:,} images have no neighbour within "
                           f"{histogram.known_up_to} bits (`dbdedup calibrate` measures how far they are)"))


def pair_match_text(row: dict[str, Any]) -> str:
    """How matching found a pair, for people: "pHash 4", "flip_h 0", "embedding 0.95", "keypoints",
    "through a member" (a keeper's pair proposed through a verified member), "same bytes"."""
    if row["exact"]:
        return "same bytes"
    if row["matched_by"] == "keypoints":
        return "keypoints"
    if row["matched_by"] == "linked":
        return "through a member"
    if row["matched_by"] == "same_size":
        return "same size"
    if row["matched_by"] == "crop_window":
        return "crop window"
    if row["matched_by"] == "variant":
        return f"{row['transform']} {row['transform_distance']}"
    if row["matched_by"] == "embedding":
        return f"embedding {row['similarity']:.2f}"
    return f"pHash {row['distance']}"


def pair_verdict_text(row: dict[str, Any]) -> str:
    """The pair's verdict, for people: "colours agree 0.96", "rejected: colour 0.41", "pending"."""
    if row["exact"]:
        return "identical files"
    if row["verified"] is None:
        return "pending (dbdedup verify)"
    reason = row["verify_reason"] or ""
    score = f" {row['verify_score']:.2f}" if row["verify_score"] is not None and row["verify_score"] < 1 else ""
    if row["verified"]:
        return VERIFIED_BY.get(reason, reason) + score
    return f"rejected: {reason}{score}"


def render_pairs_terminal(rows: Iterable[dict[str, Any]], out: TextIO, *, settings: ClusterSettings) -> int:
    """Pairs as a table for people; returns how many were shown."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, soft_wrap=False, highlight=False, width=_width(out, 160))
    console.print(f"pairs the clustering considers ({settings.describe()}), verified first, most similar first")
    table = Table()
    table.add_column("matched by", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("image a", overflow="fold")
    table.add_column("image b", overflow="fold")
    n = 0
    for row in rows:
        n += 1
        verdict = pair_verdict_text(row)
        table.add_row(pair_match_text(row), verdict if row["verified"] else f"[dim]{verdict}[/dim]",
                      row["path_a"], row["path_b"])
    console.print(table)
    return n
