"""One-image lookups: "is this picture already in the collection?", answered from indexes.

The work is in SQL (``dbdedup.lookup``, ``dbdedup.similar``, ``dbdedup.similar_to_hash`` in
``sql/api.sql``), so psql users get the same answers. The pHash is found by multi-index hashing:
4 btree indexes on its interleaved 16-bit blocks, each probed with the query's Hamming ball in
the block (pigeonhole), every candidate re-checked exactly from the index (exact up to a
threshold of 15, a scan above). Besides the pHash, a lookup uses the signals of the clusters:
a flipped, rotated or border-trimmed variant within ``transform_distance`` (the same indexes,
probed with the query's 15 variants), and the embedding's nearest vectors through the pgvector
index, kept when similar enough and confirmed by a looser pHash bound. Each hit says how it
matched (``matched_by``: hash, transform or embedding; ``transform``; ``similarity``).

A file that is not loaded is fingerprinted here exactly as the loader would (pHash, variants,
descriptor projected with the stored reduction) and looked up the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from .embedding import DEFAULT_CONFIRM_DISTANCE, DEFAULT_MIN_SIMILARITY
from .errors import DbdedupError
from .matching import DEFAULT_THRESHOLD, DEFAULT_TRANSFORM_DISTANCE, check_arguments, check_signal_arguments
from .reasons import DEFAULT_MAX_PIXELS
from .sqlfiles import named_queries

COLUMNS = ("distance", "matched_by", "transform", "transform_distance", "similarity", "path", "width", "height",
           "size_bytes", "image_id")
"""The columns of a lookup's rows, in the order shown."""


@dataclass(frozen=True)
class Signals:
    """How far a lookup reaches: the same knobs as the fused clustering rule."""

    max_distance: int = DEFAULT_THRESHOLD
    hash_kind: str = "phash"
    transform_distance: int = DEFAULT_TRANSFORM_DISTANCE
    min_similarity: float = DEFAULT_MIN_SIMILARITY
    confirm_distance: int = DEFAULT_CONFIRM_DISTANCE
    neighbours: int = 10

    def check(self) -> None:
        """Raise DbdedupError for values the lookup cannot use."""
        check_arguments(self.max_distance, self.hash_kind)
        check_signal_arguments(self.min_similarity, self.neighbours)
        if not 0 <= self.transform_distance <= 32:
            raise DbdedupError(f"transform distance {self.transform_distance} is not from 0 to 32",
                               hint=f"flips and rotations are usually within {DEFAULT_TRANSFORM_DISTANCE}")
        if not 0 <= self.confirm_distance <= 64:
            raise DbdedupError(f"confirm distance {self.confirm_distance} is not a Hamming distance from 0 to 64")

    def params(self) -> dict:
        return {"max_distance": self.max_distance, "hash_kind": self.hash_kind,
                "transform_distance": self.transform_distance, "min_similarity": self.min_similarity,
                "confirm_distance": self.confirm_distance, "neighbours": self.neighbours}


@dataclass(frozen=True)
class FileQuery:
    """What a lookup compares for a file that is not loaded: its hashes, variants and embedding vector."""

    phash: int
    dhash: int
    ahash: int
    variants: list[int] | None
    embedding: list[float] | None  # None without pgvector, a fitted reduction or the default embedder


def _queries() -> dict[str, str]:
    return named_queries("queries/lookup.sql")


def find_image(conn: psycopg.Connection, path: str) -> int | None:
    """The id of the ok image stored at ``path`` (as stored, or as displayed), or None."""
    q = _queries()
    # path_bytes has the unique index; a command-line path turns back into its bytes exactly
    row = conn.execute(q["image_by_path_bytes"], {"path_bytes": os.fsencode(path)}).fetchone()
    if row is None and "\\x" in path:  # the displayed form of a path that is not UTF-8
        row = conn.execute(q["image_by_path"], {"path": path}).fetchone()
    return row[0] if row else None


def file_query(conn: psycopg.Connection, path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> FileQuery:
    """Fingerprint a file as the loader would (refused, as there, above ``max_pixels`` pixels by its header);
    raise DbdedupError when it is not a readable image."""
    from .decode import ImageError
    from .embedding import GreyEmbedder, Reduction, project, raw_from_bytes
    from .fingerprint import Extras, hash_image_file

    row = conn.execute(_queries()["latest_reduction"]).fetchone()
    # only the built-in embedder can be rebuilt from its id; an ONNX model's path is not stored
    embedder = GreyEmbedder() if row and row[0] == GreyEmbedder.name else None
    try:
        record = hash_image_file(path, max_pixels=max_pixels, extras=Extras(orientations=True, embedder=embedder))
    except ImageError as exc:
        hint = ("raise --max-pixels if you trust this file" if exc.reason == "too_many_pixels"
                else "give an image file, a loaded path or a hash as 0x<16 hex digits>")
        raise DbdedupError(f"cannot read {os.fsdecode(path)} as an image: {exc.detail}", hint=hint) from exc
    except OSError as exc:
        raise DbdedupError(f"cannot read {os.fsdecode(path)}: {exc.strerror}", hint="check the path and its permissions") from exc
    vector = None
    if embedder is not None and record.raw_descriptor is not None:
        reduction = Reduction.from_bytes(bytes(row[1]))
        vector = project(reduction, raw_from_bytes(record.raw_descriptor, reduction.raw_dim))[0].tolist()
    return FileQuery(phash=record.phash, dhash=record.dhash, ahash=record.ahash,
                     variants=record.phash_variants, embedding=vector)


def similar(conn: psycopg.Connection, *, image_id: int | None = None, hash_value: int | None = None,
            query: FileQuery | None = None, signals: Signals = Signals()) -> list[dict]:
    """The ok images that look like one stored image, a hash value or a file's ``FileQuery``, closest first.

    A stored image (itself left out) and a file use every signal of the pHash (``signals``); a bare
    hash value the hash only. dHash and aHash compare that hash only. Rows: image_id, path,
    distance, width, height, size_bytes, matched_by, transform, transform_distance, similarity.
    """
    signals.check()
    if sum(x is not None for x in (image_id, hash_value, query)) != 1:
        raise ValueError("give exactly one of image_id, hash_value, query")
    q = _queries()
    params = signals.params()
    with conn.cursor(row_factory=dict_row) as cur:
        if image_id is not None:
            return cur.execute(q["similar_to_image"], {**params, "image_id": image_id}).fetchall()
        if query is not None and signals.hash_kind == "phash":
            return cur.execute(q["lookup"], {**params, "hash": query.phash, "variants": query.variants,
                                             "embedding": query.embedding}).fetchall()
        value = hash_value if query is None else getattr(query, signals.hash_kind)
        return cur.execute(q["similar_to_hash"], {**params, "hash": value}).fetchall()
