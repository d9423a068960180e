"""The structure check: pairs verified by their colour signatures, compared again by their stored thumbnails.

``dbdedup.verify_pairs`` verifies an aligned pair whose colour signatures agree; the signature's 16x16
lightness averages away another glyph on the same folder or another pip on a card. Each image also
stores a 32x32 luma thumbnail (images.structure, made by the loader); here every signature-verified
pair not measured yet is compared window by window (``verify.structure_agreement``) in the
orientation its signatures were compared in, the measure kept in pairs.structure. A pair below
``verify.MIN_STRUCTURE`` goes back to pending: the geometric check (``verify_workers``) aligns it by
its pixels and measures the aligned overlap's structure (a copy cropped or turned a little at a close
pHash passes there; another glyph is rejected, verify_reason ``structure``), and ``verify_pairs``
leaves it to that check from then on. Pure numpy on stored bytes: no file is read, so it runs right
after ``verify_pairs`` wherever Python gives verdicts (matching, the keeper rounds, `dbdedup verify`);
a SQL-only ``dbdedup.refresh()`` leaves it, like the geometric check, to the next of those.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import psycopg

from . import verify
from .sqlfiles import named_queries

BATCH_PAIRS = 2_000  # pairs measured at a time (their windows: about 25 MB)


@dataclass(frozen=True)
class StructureCheck:
    """What one ``check_structure`` did: signature-verified pairs measured, failed among them (left
    pending for the geometric check), and not measurable (an image without a thumbnail, or found
    through a trimmed variant)."""

    measured: int = 0
    failed: int = 0
    unmeasured: int = 0
    seconds: float = 0.0


def _queries() -> dict[str, str]:
    return named_queries("queries/structure_check.sql")


def check_structure(conn: psycopg.Connection) -> StructureCheck:
    """Measure every signature-verified pair whose structure is not measured yet and leave those below
    ``verify.MIN_STRUCTURE`` pending for the geometric check; returns the counts. One transaction (a
    savepoint inside the caller's)."""
    started = time.perf_counter()
    q = _queries()
    measured = failed = unmeasured = 0
    with conn.transaction():
        if not conn.execute(q["any_unchecked"]).fetchone()[0]:
            return StructureCheck(seconds=time.perf_counter() - started)
        conn.execute(q["drop_temp_tables"])
        conn.execute(q["collect_unchecked"])
        conn.execute(q["create_results"])
        with conn.cursor(name="dbdedup_structure_pairs") as pairs:
            pairs.execute(q["unchecked_pairs"])
            while batch := pairs.fetchmany(BATCH_PAIRS):
                rows = _measure(conn, q, batch)
                with conn.cursor().copy(q["copy_results"]) as copy:
                    for row in rows:
                        copy.write_row(row)
                values = np.array([row[3] for row in rows], dtype=np.float64)
                known = ~np.isnan(values)
                measured += int(known.sum())
                unmeasured += int((~known).sum())
                failed += int((values[known] < verify.MIN_STRUCTURE).sum())
        conn.execute(q["apply_results"], {"min_structure": verify.MIN_STRUCTURE})
        conn.execute(q["drop_temp_tables"])
    return StructureCheck(measured, failed, unmeasured, time.perf_counter() - started)


def _measure(conn: psycopg.Connection, q: dict[str, str], batch: list[tuple]) -> list[tuple]:
    """(hash_kind, image_a, image_b, structure) of each pair of ``batch``; NaN when not measurable."""
    ids = sorted({row[1] for row in batch} | {row[2] for row in batch})
    thumbnails = dict(conn.execute(q["thumbnails"], {"ids": ids}).fetchall())
    results = [(kind, a, b, float("nan")) for kind, a, b, _, _ in batch]
    wanted = [k for k, (_, a, b, _, trimmed) in enumerate(batch)
              if not trimmed and a in thumbnails and b in thumbnails]
    if not wanted:
        return results
    # each picture of the batch in each orientation it is compared in, windowed once
    pictures: dict[tuple[int, str], int] = {}
    for k in wanted:
        _, a, b, orientation, _ = batch[k]
        pictures.setdefault((a, orientation), len(pictures))
        pictures.setdefault((b, "identity"), len(pictures))
    stacked = np.stack([verify.structure_pixels(bytes(thumbnails[image_id]), orientation)
                        for image_id, orientation in pictures])
    centred, spread = verify.structure_windows(stacked)
    side_a = np.array([pictures[(batch[k][1], batch[k][3])] for k in wanted])
    side_b = np.array([pictures[(batch[k][2], "identity")] for k in wanted])
    values = verify.structure_agreements((centred[side_a], spread[side_a]), (centred[side_b], spread[side_b]))
    for k, value in zip(wanted, values):
        kind, a, b, _, _ = batch[k]
        results[k] = (kind, a, b, float(value))
    return results
