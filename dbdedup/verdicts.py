"""Reviewers' verdicts: decisions the database remembers and clustering honours.

A verdict is keyed by content, the SHA-256 of each image, never by path or id, so it survives
moves, renames, reloads and a fresh database loaded from the same files. Four kinds:

``not_duplicate`` (a pair)
    the two images never link, whatever the signals say;
``not_in_cluster`` (an image)
    it is a duplicate of nothing the signals found: it links only by ``duplicate`` verdicts
    (byte-identical copies of it, being the same bytes, stay together);
``keeper`` (an image)
    it ranks first as the keeper of its cluster;
``duplicate`` (a pair)
    the two link whatever their distance: a pair the signals missed.

One verdict per image or pair: a new decision replaces the old one. ``dbdedup.build_clusters``
reads ``dbdedup.verdicts`` itself (so ``CALL dbdedup.refresh()`` honours them too); after
changing verdicts, ``recluster`` rebuilds the current clustering. A verdict naming an image
that is not loaded any more is *stale*: kept, reported, and applied again when the file returns.

The JSON file ``export_json`` writes and ``import_file`` reads::

    {"format": "dbdedup-verdicts", "version": 1, "exported_at": "2026-01-01T12:00:00+00:00",
     "verdicts": [{"kind": "not_duplicate", "sha256": ["<hex>", "<hex>"], "decided_by": "ann",
                   "decided_at": "2026-01-01T11:59:00+00:00", "note": null,
                   "given_on": ["<hex>", "<hex>", "<hex>"],
                   "paths": [["/photos/a.jpg"], ["/photos/b.jpg"]]}, ...]}

``paths`` (the files each image was at when exported) is for people and ignored on import.
``given_on`` (the SHA-256 of the members of the cluster(s) a verdict was given on in ``dbdedup
review``, null for one given elsewhere) is imported with its verdict, so that what a reviewer took
out of a cluster still makes the rest of it reviewed by them; a file without it (written before
it was exported) imports with none.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, TextIO

import psycopg
from psycopg.rows import dict_row

from .errors import DbdedupError
from .sqlfiles import named_queries

KINDS = ("not_duplicate", "not_in_cluster", "keeper", "duplicate")
PAIR_KINDS = ("not_duplicate", "duplicate")
IMAGE_KINDS = ("not_in_cluster", "keeper")
# how pages and reports name each kind (a pair's label is followed by the other image)
KIND_LABELS = {
    "not_duplicate": "not a duplicate of",
    "duplicate": "confirmed duplicate of",
    "not_in_cluster": "not in its cluster",
    "keeper": "chosen keeper",
}
FILE_FORMAT = "dbdedup-verdicts"
FILE_VERSION = 1

_HEX64 = re.compile(r"[0-9a-f]{64}")


def _queries() -> dict[str, str]:
    return named_queries("queries/verdicts.sql")


@dataclass(frozen=True)
class Verdict:
    """A stored verdict with what it names now: the loaded images of each side (their ids, paths
    and cluster), and ``stale`` when a side has no loaded image."""

    id: int
    kind: str
    sha256: tuple[bytes, ...]  # one image, or a pair in canonical (byte) order
    decided_by: str
    decided_at: datetime
    note: str | None = None
    given_on: tuple[bytes, ...] | None = None  # the members of the cluster(s) it was given on in the review page
    image_ids: tuple[tuple[int, ...], ...] = ()
    paths: tuple[tuple[str, ...], ...] = ()
    cluster_ids: tuple[int | None, ...] = ()
    stale: bool = False

    @property
    def is_pair(self) -> bool:
        return self.kind in PAIR_KINDS

    def other(self, sha256: bytes) -> bytes | None:
        """For a pair verdict, the side that is not ``sha256``."""
        if not self.is_pair:
            return None
        return self.sha256[1] if self.sha256[0] == sha256 else self.sha256[0]

    def to_json(self) -> dict[str, Any]:
        """As in the exported file (with id, clusters and stale added)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "sha256": [s.hex() for s in self.sha256],
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat(),
            "note": self.note,
            "given_on": None if self.given_on is None else [s.hex() for s in self.given_on],
            "paths": [list(p) for p in self.paths],
            "cluster_ids": list(self.cluster_ids),
            "stale": self.stale,
        }


def _verdict(row: dict[str, Any]) -> Verdict:
    pair = row["sha256_b"] is not None
    sides = ("a", "b") if pair else ("a",)
    return Verdict(
        id=row["id"], kind=row["kind"],
        sha256=tuple(bytes(row[f"sha256_{s}"]) for s in sides),
        decided_by=row["decided_by"], decided_at=row["decided_at"], note=row["note"],
        given_on=None if row["given_on"] is None else tuple(bytes(s) for s in row["given_on"]),
        image_ids=tuple(tuple(row[f"image_ids_{s}"] or ()) for s in sides),
        paths=tuple(tuple(row[f"paths_{s}"] or ()) for s in sides),
        cluster_ids=tuple(row[f"cluster_id_{s}"] for s in sides),
        stale=bool(row["stale"]),
    )


def subject(kind: str, sha256_a: bytes, sha256_b: bytes | None = None) -> tuple[bytes, bytes | None]:
    """The (sha256_a, sha256_b) a verdict is stored under: a pair in byte order, an image alone.
    Raises DbdedupError for a kind that does not fit what it names."""
    if kind not in KINDS:
        raise DbdedupError(f"unknown verdict {kind!r}", hint="use one of: " + ", ".join(KINDS))
    if kind in PAIR_KINDS:
        if sha256_b is None:
            raise DbdedupError(f"a {kind} verdict names two images", hint=f"dbdedup verdicts add {kind} PATH PATH")
        if sha256_a == sha256_b:
            raise DbdedupError("the two images are byte-identical copies (same SHA-256)",
                               hint="copies always go together; a verdict on one of them is enough")
        a, b = sorted((bytes(sha256_a), bytes(sha256_b)))
        return a, b
    if sha256_b is not None:
        raise DbdedupError(f"a {kind} verdict names one image", hint=f"dbdedup verdicts add {kind} PATH")
    return bytes(sha256_a), None


# ---------------------------------------------------------------- naming images


@dataclass(frozen=True)
class Image:
    """A loaded image a verdict can name."""

    id: int
    path: str
    sha256: bytes


def image_by_id(conn: psycopg.Connection, image_id: int) -> Image:
    """The loaded (status ok) image with this id; DbdedupError when there is none."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_queries()["image_by_id"], {"id": image_id}).fetchone()
    if row is None:
        raise DbdedupError(f"no loaded image has id {image_id}", hint="it may have been moved or reloaded; "
                                                                      "reload the page")
    return Image(id=row["id"], path=row["path"], sha256=bytes(row["sha256"]))


def resolve_image(conn: psycopg.Connection, ref: str | os.PathLike | bytes) -> Image:
    """The loaded image a user names by path (as loaded; relative paths are made absolute) or
    by ``sha256:<hex>``. Only images dbdedup recorded can be named."""
    if isinstance(ref, str) and ref.startswith("sha256:"):
        digest = ref[len("sha256:"):].lower()
        if not _HEX64.fullmatch(digest):
            raise DbdedupError(f"{ref!r} is not a SHA-256", hint="sha256: followed by 64 hex digits")
        return Image(id=0, path=ref, sha256=bytes.fromhex(digest))
    path_bytes = os.path.abspath(os.fsencode(ref))
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(_queries()["image_by_path"], {"path_bytes": path_bytes}).fetchone()
    if row is None:
        raise DbdedupError(f"{os.fsdecode(path_bytes)} is not a loaded image",
                           hint="name a file as `dbdedup load` stored it (see `dbdedup report`), or sha256:<hex>")
    return Image(id=row["id"], path=row["path"], sha256=bytes(row["sha256"]))


# ---------------------------------------------------------------- writing


def add(conn: psycopg.Connection, kind: str, sha256_a: bytes, sha256_b: bytes | None = None, *,
        by: str | None = None, note: str | None = None, given_on: Iterable[bytes] | None = None) -> int:
    """Record a verdict (replacing any verdict on the same image or pair) and commit; returns its id.
    ``by`` defaults to the database role. ``given_on``: the SHA-256 of the members of the cluster(s)
    it was given on, before it changed them (the review page gives them; stored in
    ``dbdedup.verdicts.given_on``, NULL without). The clustering is not rebuilt: see ``recluster``."""
    a, b = subject(kind, sha256_a, sha256_b)
    members = sorted({bytes(s) for s in given_on}) if given_on is not None else None
    with conn.transaction():
        row = conn.execute(_queries()["upsert"], {"kind": kind, "sha256_a": a, "sha256_b": b,
                                                  "decided_by": by, "note": note, "given_on": members}).fetchone()
    assert row is not None
    return int(row[0])


def choose_keeper(conn: psycopg.Connection, image: Image, *, by: str | None = None,
                  note: str | None = None, given_on: Iterable[bytes] | None = None) -> int:
    """Make ``image`` the keeper of its current cluster: a keeper verdict, and the keeper verdicts of
    the cluster's other members forgotten (a cluster has one chosen keeper). Commits; returns its id.
    ``given_on`` as for ``add``."""
    with conn.transaction():
        row = conn.execute(_queries()["cluster_of"], {"image_id": image.id}).fetchone()
        if row is not None:
            conn.execute(_queries()["delete_other_keepers"], {"cluster_id": row[0], "sha256": image.sha256})
        return add(conn, "keeper", image.sha256, by=by, note=note, given_on=given_on)


def remove(conn: psycopg.Connection, ids: Iterable[int]) -> list[int]:
    """Forget the verdicts with these ids and commit; returns the ids that existed."""
    with conn.transaction():
        rows = conn.execute(_queries()["delete_ids"], {"ids": list(ids)}).fetchall()
    return sorted(r[0] for r in rows)


def remove_naming(conn: psycopg.Connection, sha256: bytes) -> list[int]:
    """Forget every verdict that names this image (alone or in a pair) and commit; returns their ids."""
    with conn.transaction():
        rows = conn.execute(_queries()["delete_naming"], {"sha256": sha256}).fetchall()
    return sorted(r[0] for r in rows)


def recluster(conn: psycopg.Connection):
    """Rebuild the current clustering so it honours the verdicts as they are now (matching first
    when the pairs are not current); nothing when no clustering was built yet. Returns the
    ClusterResult, or None."""
    from .clusters import build_clusters, current_parameters, ensure_clusters

    if current_parameters(conn) is None:
        return None
    result = ensure_clusters(conn)
    if not result.rebuilt:
        result = build_clusters(conn, result.settings)
    return result


# ---------------------------------------------------------------- reading


def list_verdicts(conn: psycopg.Connection, *, stale: bool | None = None) -> list[Verdict]:
    """Every verdict, oldest first, with what it names now; only the stale (or only the current)
    ones when ``stale`` is given."""
    with conn.cursor(row_factory=dict_row) as cur:
        return [_verdict(r) for r in cur.execute(_queries()["current"], {"stale": stale})]


def naming(conn: psycopg.Connection, sha256s: Iterable[bytes]) -> dict[bytes, list[Verdict]]:
    """The verdicts that name each of these images (by content), keyed by SHA-256."""
    wanted = {bytes(s) for s in sha256s if s is not None}
    out: dict[bytes, list[Verdict]] = {}
    if not wanted:
        return out
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(_queries()["naming"], {"sha256s": sorted(wanted)}):
            v = _verdict(row)
            for s in v.sha256:
                if s in wanted:
                    out.setdefault(s, []).append(v)
    return out


def all_by_image(conn: psycopg.Connection) -> dict[bytes, list[Verdict]]:
    """Every verdict, keyed by each SHA-256 it names (for the report and the contact sheet)."""
    out: dict[bytes, list[Verdict]] = {}
    for v in list_verdicts(conn):
        for s in v.sha256:
            out.setdefault(s, []).append(v)
    return out


def member_json(verdicts: Iterable[Verdict], sha256: bytes) -> list[dict[str, Any]]:
    """The verdicts naming an image as the JSON report lists them under its member."""
    out = []
    for v in verdicts:
        item: dict[str, Any] = {"id": v.id, "kind": v.kind, "decided_by": v.decided_by,
                                "decided_at": v.decided_at.isoformat(), "note": v.note}
        other = v.other(sha256)
        if other is not None:
            item["other_sha256"] = other.hex()
            i = v.sha256.index(other)
            item["other_paths"] = list(v.paths[i]) if i < len(v.paths) else []
        out.append(item)
    return out


# ---------------------------------------------------------------- files


def export_json(conn: psycopg.Connection, out: TextIO) -> int:
    """Write every verdict (stale ones too) as the documented JSON file; returns how many."""
    items = []
    for v in list_verdicts(conn):
        item = v.to_json()
        for key in ("id", "cluster_ids", "stale"):
            item.pop(key)
        items.append(item)
    json.dump({"format": FILE_FORMAT, "version": FILE_VERSION,
               "exported_at": datetime.now(timezone.utc).isoformat(), "verdicts": items}, out, indent=1)
    out.write("\n")
    return len(items)


@dataclass(frozen=True)
class FileVerdict:
    """A verdict read from a file, checked."""

    kind: str
    sha256_a: bytes
    sha256_b: bytes | None
    decided_by: str
    decided_at: datetime
    note: str | None
    given_on: tuple[bytes, ...] | None = None


def _check_item(n: int, item: Any, default_by: str) -> FileVerdict:
    where = f"verdict {n}"
    if not isinstance(item, dict):
        raise ValueError(f"{where} is not an object")
    kind = item.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    digests = item.get("sha256")
    if isinstance(digests, str):
        digests = [digests]
    want = 2 if kind in PAIR_KINDS else 1
    if not isinstance(digests, list) or len(digests) != want:
        raise ValueError(f"{where}: {kind} needs {want} sha256 value{'s' if want > 1 else ''}")
    raw = []
    for d in digests:
        if not isinstance(d, str) or not _HEX64.fullmatch(d.lower()):
            raise ValueError(f"{where}: {d!r} is not a SHA-256 (64 hex digits)")
        raw.append(bytes.fromhex(d))
    try:
        a, b = subject(kind, *raw)
    except DbdedupError as exc:
        raise ValueError(f"{where}: {exc.message}") from None
    by = item.get("decided_by", default_by)
    if not isinstance(by, str) or not by:
        raise ValueError(f"{where}: decided_by must be a name")
    at = item.get("decided_at")
    if at is None:
        when = datetime.now(timezone.utc)
    else:
        try:
            when = datetime.fromisoformat(at) if isinstance(at, str) else None
        except ValueError:
            when = None
        if when is None:
            raise ValueError(f"{where}: decided_at {at!r} is not an ISO 8601 time")
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
    note = item.get("note")
    if note is not None and not isinstance(note, str):
        raise ValueError(f"{where}: note must be text")
    given_on = item.get("given_on")  # (absent from files written before it was exported)
    if given_on is not None:
        if not isinstance(given_on, list) or not all(isinstance(d, str) and _HEX64.fullmatch(d.lower())
                                                     for d in given_on):
            raise ValueError(f"{where}: given_on must be a list of SHA-256 (64 hex digits each), or null")
        given_on = tuple(sorted({bytes.fromhex(d) for d in given_on}))
    return FileVerdict(kind=kind, sha256_a=a, sha256_b=b, decided_by=by, decided_at=when, note=note,
                       given_on=given_on)


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else exc.__class__.__name__


def parse_file(path: str | os.PathLike, *, default_by: str = "unknown") -> list[FileVerdict]:
    """Read and check a verdicts file whole. At the first problem, DbdedupError with one line that
    names it and says nothing was imported, and a hint."""
    p = Path(path)

    def bad(problem: str, hint: str | None = None) -> DbdedupError:
        return DbdedupError(f"{p}: {problem}; nothing was imported",
                            hint=hint or 'a verdicts file is JSON as `dbdedup verdicts export` writes it ({"format": '
                                 '"dbdedup-verdicts", "verdicts": [{"kind", "sha256": [hex, ...], ...}]}): '
                                 "correct what the message names, or export the verdicts again")

    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise bad("no such file", hint="check the path") from None
    except OSError as exc:
        raise bad(f"cannot be read ({exc})", hint="check the path and that you may read the file") from None
    except UnicodeDecodeError as exc:
        raise bad(f"cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:  # (Python's parser recurses once a level: a few thousand levels exhaust it)
        raise bad("is not a verdicts file: its JSON nests too deeply to read") from None
    except ValueError as exc:  # not JSONDecodeError: a number too long to convert, for one
        raise bad(f"is not a verdicts file ({_first(exc).split(';')[0]})") from None
    if isinstance(data, dict) and data.get("format") not in (None, FILE_FORMAT):
        raise bad(f"is not a dbdedup verdicts file (format {data.get('format')!r})")
    items = data.get("verdicts") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise bad('has no list of verdicts (expected {"verdicts": [...]}, as `dbdedup verdicts export` writes)')
    try:
        parsed = [_check_item(n, item, default_by) for n, item in enumerate(items, start=1)]
    except ValueError as exc:
        raise bad(str(exc)) from None
    seen: dict[tuple[bytes, bytes | None], int] = {}
    for n, v in enumerate(parsed, start=1):
        key = (v.sha256_a, v.sha256_b)
        if key in seen:
            raise bad(f"verdicts {seen[key]} and {n} name the same image or pair")
        seen[key] = n
    return parsed


@dataclass
class ImportResult:
    """What an import did: new verdicts, stored ones replaced by newer ones, stored ones kept."""

    added: int = 0
    replaced: int = 0
    kept: int = 0


def import_verdicts(conn: psycopg.Connection, verdicts: list[FileVerdict]) -> ImportResult:
    """Store checked verdicts in one transaction, with what each was given on (``given_on``); a stored
    verdict on the same image or pair is replaced only by a newer one. Commits."""
    result = ImportResult()
    q = _queries()["import"]
    with conn.transaction():
        for v in verdicts:
            row = conn.execute(q, {"kind": v.kind, "sha256_a": v.sha256_a, "sha256_b": v.sha256_b,
                                   "decided_by": v.decided_by, "decided_at": v.decided_at, "note": v.note,
                                   "given_on": None if v.given_on is None else list(v.given_on)}).fetchone()
            if row is None:
                result.kept += 1
            elif row[0]:
                result.added += 1
            else:
                result.replaced += 1
    return result


def import_file(conn: psycopg.Connection, path: str | os.PathLike, *, default_by: str = "unknown") -> ImportResult:
    """Check the whole file first (a malformed file imports nothing), then import it."""
    return import_verdicts(conn, parse_file(path, default_by=default_by))
