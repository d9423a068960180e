"""The structure check: pairs verified by their colour signatures, compared again by their stored thumbnails.

``dbdedup.verify_pairs`` verifies an aligned pair whose colour signatures agree; the signature's 16x16
lightness averages away another glyph on the same folder or another pip on a card. Each image also
stores a 64x64 luma thumbnail (images.structure, made by the loader; 32x32 before session 14); here
every signature-verified pair not measured yet is compared window by window
(``verify.structure_agreement``) in the orientation its signatures were compared in, at 32x32 and,
where both pictures have it, at 64x64 (star rings, fine line patterns); the measure kept in
pairs.structure is the 32x32 one, or the 64x64 one when that is below
``verify.MIN_SIGNATURE_FINE_STRUCTURE``. A pair below ``verify.MIN_SIGNATURE_STRUCTURE`` goes back to
pending: the geometric check (``verify_workers``) aligns it by its pixels and measures the aligned overlap's structure (a copy cropped or turned a little at a close
pHash passes there; another glyph is rejected, verify_reason ``structure``), and ``verify_pairs``
leaves it to that check from then on. Pure numpy on stored bytes: no file is read, so it runs right
after ``verify_pairs`` wherever Python gives verdicts (matching, the keeper rounds, `dbdedup verify`), in worker
processes when there is more than a batch of pairs to measure;
a SQL-only ``dbdedup.refresh()`` leaves it, like the geometric check, to the next of those.

A pair compared under a flip or a turn is also measured by its least alike region at 64x64 (pairs.region,
``verify.region_agreements``): a picture and its mirror drawn again (its lettering left readable) agree in every
percentile but differ in one region where both are drawn. Below ``verify.MIN_ORIENTED_REGION`` the pair goes back
to pending, and the check by pixels measures that region again from the files (``verify.region_of_pixels``).

The same pass refuses (verify_reason ``colour``) a signature-verified pair of two colour pictures whose
signatures' 8x8 cells no one brightness or contrast edit explains (``verify.tones_apart_many``): two colourings of
one drawing whose hues are close enough for the signatures, each channel moved its own way; and a pair of a
greyscale picture and a flat colour drawing whose coloured areas the grey does not keep at their luma
(``verify.grey_variant``): an icon set's grey variant (another formula's grey), not a greyscale copy; and a pair of a
greyscale drawing and one coloured in small areas whose coloured cells the grey one does not keep at their grey
lightness (``verify.ink_variant``): a deck's black pips against its four-colour edition's green ones.

The aligned pairs the signatures rejected for colour get a second look here too:
clipping at white or black bends the Lab signature of a copy brightened or given more contrast as far as
another colour of one icon. One edit, out = clip(gain * in + offset), is fitted to the two signatures'
8x8 cells in sRGB (``verify.signature_colours``, ``verify.tone_fits``); a pair close enough to it
(``verify.ToneFit.cells_agree``) goes back to pending with its residual in pairs.tone_fit, and the
geometric check fits the edit to the files' RGB pixels (``verify.tone_verdict``); so does every pair of two
greyscale pictures, whose cells a clipped outline bends past any line. Others keep their rejection, their
tone_fit NaN.

And the aligned pairs rejected for colour or layout get a third: a watermark over a dark or flat picture moves
its signature as far as another colour or layout would. A pair whose 16x16 lightness cells differ as one
see-through overlay would make them (``verify.overlay_cells_agree``: few changed, nearly all the same way)
goes back to pending with pairs.overlay_cells true, and the geometric check tries the overlay on the files'
pixels (``verify.overlay_verdict``).
"""

from __future__ import annotations

import collections
import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import psycopg
from psycopg import sql

from . import pg_binary, verify, worker_pool
from .resample import limit_blas_threads
from .sqlfiles import named_queries

BATCH_PAIRS = 2_000  # pairs measured at a time (their windows at 32x32: about 25 MB)
FINE_CHUNK = 256  # pairs measured at 64x64 at a time (their windows: about 60 MB)
# A check of more than one batch measures its batches in worker processes (one a core), while this process reads
# the next batches' signatures and thumbnails and writes the results, in order. On the accuracy set the check after
# matching (about 60,000 pairs: the tone and overlay looks, then the structure) took 18.8-19.9 s in this process
# alone, about 15 s of it numpy; 11.8 s so (bench/report_phases.py, session 35).
BATCHES_IN_FLIGHT_PER_WORKER = 2


@dataclass(frozen=True)
class StructureCheck:
    """What one ``check_structure`` did: signature-verified pairs measured, failed among them (left pending for the
    check by pixels: apart in structure or region, or a detail gap above the gate), not measurable (an image without a
    thumbnail, or found through a trimmed variant), and refused for colours no tone edit explains, a grey variant or
    another inking (``tones_apart``)."""

    measured: int = 0
    failed: int = 0
    unmeasured: int = 0
    seconds: float = 0.0
    tones_apart: int = 0
    tone_measured: int = 0  # pairs rejected for colour whose colour signatures were fitted one tone edit
    tone_candidates: int = 0  # ... which that edit explains: left pending for the geometric check
    overlay_measured: int = 0  # pairs rejected for colour or layout whose lightness cells were compared
    overlay_candidates: int = 0  # ... which one overlay may explain: left pending for the geometric check


def _queries() -> dict[str, str]:
    return named_queries("queries/structure_check.sql")


def check_structure(conn: psycopg.Connection, workers: int | None = None) -> StructureCheck:
    """Take the second looks (SECOND_LOOKS: one tone edit, one overlay) at the rejected pairs not looked at
    yet, then measure every signature-verified pair whose structure is not measured yet and leave those it fails
    (``dbdedup.left_to_pixels``: below ``verify.MIN_SIGNATURE_STRUCTURE``, or apart in a region or in detail) pending
    for the check by pixels; returns the counts. A transaction each (savepoints inside the caller's). More than one
    batch of pairs is measured in ``workers`` processes (default: one a core)."""
    started = time.perf_counter()
    q = _queries()
    with _Measurer(conn, workers) as measurer:
        return _check_structure(conn, q, measurer, started)


def _check_structure(conn: psycopg.Connection, q: dict[str, str], measurer: "_Measurer",
                     started: float) -> StructureCheck:
    looks = {}
    for look in SECOND_LOOKS:
        looks[f"{look.name}_measured"], looks[f"{look.name}_candidates"] = _second_look(conn, q, look, measurer)
    with conn.transaction():
        if not conn.execute(q["any_unchecked"]).fetchone()[0]:
            return StructureCheck(seconds=time.perf_counter() - started, **looks)
        conn.execute(q["drop_temp_tables"])
        conn.execute(q["collect_unchecked"])
        conn.execute(q["create_results"])
        values = measurer.stream(q, "dbdedup_structure_pairs", q["unchecked_pairs"], q["copy_results"], _measure,
                                 thumbnails=True)
        known = ~np.isnan(values)
        measured, unmeasured = int(known.sum()), int((~known).sum())
        applied = conn.execute(q["apply_results"]).fetchall()
        refused = sum(1 for apart, _ in applied if apart)
        failed = sum(1 for apart, below in applied if below and not apart)
        conn.execute(q["drop_temp_tables"])
    return StructureCheck(measured, failed, unmeasured, time.perf_counter() - started, tones_apart=refused, **looks)


def _second_look(conn: psycopg.Connection, q: dict[str, str], look: "SecondLook",
                 measurer: "_Measurer") -> tuple[int, int]:
    """Measure the pairs ``look`` looks at that are not measured yet; those it finds candidates go back to
    pending. (measured, left pending for the geometric check). One transaction (a savepoint inside the
    caller's)."""
    def composed(name: str) -> sql.Composed:
        return sql.SQL(q[name]).format(measure=sql.Identifier(look.column), reasons=sql.Literal(list(look.reasons)),
                                       kind=sql.SQL(look.kind), candidate=sql.SQL(look.candidate))

    with conn.transaction():
        if not conn.execute(composed("any_look_unmeasured")).fetchone()[0]:
            return 0, 0
        conn.execute(q["drop_look_tables"])
        conn.execute(composed("create_look_results"))
        measurer.stream(q, "dbdedup_look_pairs", composed("look_pairs"), q["copy_look_results"], look.measure)
        pending = [row[0] for row in conn.execute(composed("apply_look_results"))]
        conn.execute(q["drop_look_tables"])
    return len(pending), sum(pending)


def _init_worker(parent_pid: int, inherited_fds: tuple[int, ...]) -> None:
    worker_pool.start_worker(parent_pid, inherited_fds)
    limit_blas_threads()


def _measured(task: tuple) -> list[tuple]:
    """A worker's task: ``measure(batch, signatures, thumbnails)``."""
    measure, batch, signatures, thumbnails = task
    return measure(batch, signatures, thumbnails)


class _Measurer:
    """Measures batches of pairs (``stream``) in a pool of ``workers`` processes, started at the first full batch
    and stopped at the end of the ``with`` block; in this process when there is one worker, or all the pairs fit
    in one batch."""

    def __init__(self, conn: psycopg.Connection, workers: int | None):
        self.conn = conn
        self.asked = workers
        self.pool: worker_pool.WorkerPool | None = None
        self.done: dict[int, list[tuple]] = {}

    @functools.cached_property
    def workers(self) -> int:
        """The pool's size: as asked, else one process a core."""
        if self.asked is not None:
            return max(1, int(self.asked))
        return worker_pool.default_workers()

    def __enter__(self) -> "_Measurer":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if self.pool is not None:
            if kind is None:
                self.pool.shutdown()
            else:
                self.pool.terminate()
            self.pool = None

    def stream(self, q: dict[str, str], cursor: str, query: str | sql.Composed, copy: str, measure,
               thumbnails: bool = False) -> np.ndarray:
        """The pairs of ``query`` read in a named ``cursor``, measured a batch at a time (``measure(batch,
        signatures, thumbnails)``: rows (hash_kind, image_a, image_b, value); the batch's images' colour signatures,
        and their structure thumbnails when ``thumbnails``) and COPYed into a results table by ``copy``, in the
        query's order; every value (NaN: not measurable)."""
        values: list[float] = []
        in_flight: collections.deque[tuple[int, tuple]] = collections.deque()
        conn = self.conn

        def write(rows: list[tuple]) -> None:
            with conn.cursor().copy(copy) as writer:
                for row in rows:
                    writer.write_row(row)
            values.extend(row[3] for row in rows)

        with conn.cursor(name=cursor) as pairs:
            pairs.execute(query)
            first = True
            while batch := pairs.fetchmany(BATCH_PAIRS):
                task = (measure, batch, _signatures(conn, q, batch),
                        _thumbnails(conn, q, batch) if thumbnails else None)
                if first and len(batch) < BATCH_PAIRS or self.workers == 1:
                    write(_measured(task))  # (one batch in all: no process to start)
                else:
                    in_flight.append((self._submit(task), task))
                    while len(in_flight) > BATCHES_IN_FLIGHT_PER_WORKER * self.workers:
                        write(self._result(*in_flight.popleft()))
                first = False
        while in_flight:
            write(self._result(*in_flight.popleft()))
        return np.array(values, dtype=np.float64)

    def _submit(self, task: tuple) -> int:
        if self.pool is None:
            self.pool = worker_pool.WorkerPool(self.workers, _init_worker, (os.getpid(), (self.conn.fileno(),)))
        return self.pool.submit(_measured, task)

    def _result(self, token: int, task: tuple) -> list[tuple]:
        """The rows of the batch sent as ``token``; measured here when its worker died on it (out of memory)."""
        while token not in self.done:
            for ended, how, rows in self.pool.outcomes(block=True):
                self.done[ended] = rows if how == worker_pool.DONE else None
        rows = self.done.pop(token)
        return rows if rows is not None else _measured(task)


def _tone_fits(batch: list[tuple], signatures: dict[int, np.ndarray], thumbnails=None) -> list[tuple]:
    """(hash_kind, image_a, image_b, tone_fit) of each pair of ``batch`` ((hash_kind, image_a, image_b,
    orientation)): the residual of the colour signatures' cells when they are close to one tone edit, or when both
    pictures are greyscale (RMS chroma under ``verify.GREY_CHROMA``), else NaN (not aligned, no signature, or no
    such edit)."""
    found = list(signatures.items())
    results = [(kind, a, b, float("nan")) for kind, a, b, _ in batch]
    if not found:
        return results
    stacked = np.array([signature for _, signature in found], dtype=np.float64)
    cells = verify.signatures_colours(stacked)
    grey = verify.chromas(stacked) < verify.GREY_CHROMA
    row_of = {image_id: k for k, (image_id, _) in enumerate(found)}
    wanted = [k for k, (_, a, b, orientation) in enumerate(batch)
              if orientation is not None and a in row_of and b in row_of]
    if not wanted:
        return results
    side_a = np.stack([verify.orient_pixels(cells[row_of[batch[k][1]]], batch[k][3]) for k in wanted])
    side_b = cells[[row_of[batch[k][2]] for k in wanted]]
    # (clipping makes the edit one-way: it is fitted both ways)
    for k, one, other in zip(wanted, verify.tone_fits(side_a, side_b), verify.tone_fits(side_b, side_a)):
        # two greyscale pictures: every pair goes to the pixels, whatever its cells. A greyscale drawing's cells mix
        # outline and light face, which a brightened copy clips before they are averaged, and no line through the
        # cells fits (o0282 of bench/accuracy, a window 33.5 levels off); the files' fit refused every look-alike
        # pair of two greyscale pictures rejected for colour on the accuracy set (1,185 of them; its 1,207 such
        # pairs took 16.5 s on 2 workers)
        both_grey = grey[row_of[batch[k][1]]] and grey[row_of[batch[k][2]]]
        agreeing = [fit.residual for fit in (one, other)
                    if (both_grey and not math.isnan(fit.residual)) or fit.cells_agree()]
        if agreeing:
            kind, a, b, _ = batch[k]
            results[k] = (kind, a, b, min(agreeing))
    return results


def _signatures(conn: psycopg.Connection, q: dict[str, str], batch: list[tuple]) -> dict[int, np.ndarray]:
    """The colour signatures of the images of ``batch`` (pairs: (hash_kind, image_a, image_b, ...)) that have one."""
    ids = sorted({row[1] for row in batch} | {row[2] for row in batch})
    found = ((image_id, pg_binary.float4_values(data))
             for image_id, data in conn.execute(q["signatures"], {"ids": ids}).fetchall())
    return {image_id: signature.astype(np.float64) for image_id, signature in found
            if signature is not None and len(signature) == verify.SIGNATURE_LENGTH}


def _overlay_cells(batch: list[tuple], signatures: dict[int, np.ndarray], thumbnails=None) -> list[tuple]:
    """(hash_kind, image_a, image_b, overlay_cells) of each pair of ``batch`` ((hash_kind, image_a, image_b,
    orientation)): whether their lightness cells differ as one overlay would make them (false when not aligned
    or without a signature)."""
    wanted = [k for k, (_, a, b, orientation) in enumerate(batch)
              if orientation is not None and a in signatures and b in signatures]
    agree = np.zeros(len(batch), dtype=bool)
    if wanted:
        agree[wanted] = verify.overlay_cells_agree_many(np.stack([signatures[batch[k][1]] for k in wanted]),
                                                        np.stack([signatures[batch[k][2]] for k in wanted]),
                                                        [batch[k][3] for k in wanted])
    return [(kind, a, b, bool(agree[k])) for k, (kind, a, b, _) in enumerate(batch)]


def _measure(batch: list[tuple], signatures: dict[int, np.ndarray], thumbnails: dict[int, bytes]) -> list[tuple]:
    """(hash_kind, image_a, image_b, structure, region, tones apart (``verify.tones_apart_many``, or a grey variant:
    ``verify.grey_variant`` or ``verify.ink_variant``), detail gap) of each pair of ``batch``;
    structure, region and detail gap NaN when not measurable (the region of a pair compared unturned too, the
    detail gap of one compared turned)."""
    apart = [far or variant for far, variant in zip(_tones_apart(batch, signatures),
                                                     _grey_variants(batch, signatures, thumbnails))]
    gaps = _detail_gaps(batch, thumbnails)
    return [(*row, bool(far), gap) for row, far, gap in zip(_structures(batch, thumbnails), apart, gaps)]


def _grey_variants(batch: list[tuple], signatures: dict[int, np.ndarray], thumbnails: dict[int, bytes]) -> list[bool]:
    """``verify.grey_variant`` of each pair of ``batch`` of a greyscale and a colour picture
    (``verify.grey_against_colour``) with both signatures and both 64x64 thumbnails, compared whole (a pair found
    through a trimmed variant too: its signatures agreed whole); ``verify.ink_variant`` of the other such pairs with
    a greyscale side, not found through a trimmed variant (a coloured frame's cells would count as another ink);
    False for the others."""
    side = verify.FINE_STRUCTURE_SIDE
    variant = [False] * len(batch)
    # (each image's chroma once, for the whole batch: one at a time cost about 30 us a pair)
    ids = sorted(({row[1] for row in batch} | {row[2] for row in batch}) & signatures.keys())
    chroma_of = dict(zip(ids, verify.chromas(np.stack([signatures[i] for i in ids])))) if ids else {}
    for k, (_, a, b, orientation, trimmed) in enumerate(batch):
        if orientation is None or a not in chroma_of or b not in chroma_of \
                or len(thumbnails.get(a, b"")) != side * side or len(thumbnails.get(b, b"")) != side * side:
            continue
        if not verify.grey_against_colour(chroma_of[a], chroma_of[b]):
            if not trimmed and min(chroma_of[a], chroma_of[b]) < verify.GREY_CHROMA:
                variant[k] = _ink_variant(signatures, thumbnails, a, b, orientation, chroma_of)
            continue
        pixels_a = verify.structure_pixels(thumbnails[a], orientation, side)
        pixels_b = verify.structure_pixels(thumbnails[b], "identity", side)
        if chroma_of[a] >= chroma_of[b]:
            variant[k] = verify.grey_variant(pixels_a, pixels_b, verify.orient_signature(signatures[a], orientation),
                                             trimmed)
        else:
            variant[k] = verify.grey_variant(pixels_b, pixels_a, signatures[b], trimmed)
    return variant


def _ink_variant(signatures: dict[int, np.ndarray], thumbnails: dict[int, bytes], a: int, b: int, orientation: str,
                 chroma_of: dict[int, float]) -> bool:
    """``verify.ink_variant`` of images ``a`` (in ``orientation``) and ``b`` either way round: each greyscale one
    (RMS chroma under ``verify.GREY_CHROMA``) against the other."""
    side = verify.FINE_STRUCTURE_SIDE
    signature_a = verify.orient_signature(signatures[a], orientation)

    def flat(image_id: int) -> np.ndarray:
        # (flatness is the same in every orientation: the thumbnail is read unturned)
        return verify.structure_pixels(thumbnails[image_id], "identity", side)

    return (chroma_of[b] < verify.GREY_CHROMA and verify.ink_variant(signature_a, signatures[b], flat(a))) \
        or (chroma_of[a] < verify.GREY_CHROMA and verify.ink_variant(signatures[b], signature_a, flat(b)))


def _detail_gaps(batch: list[tuple], thumbnails: dict[int, bytes]) -> list[float]:
    """``verify.detail_gaps_many`` of each pair of ``batch`` compared unturned and whole, both with the 64x64
    thumbnail; NaN for the others (a turned pair's differences are the region's to find)."""
    side = verify.FINE_STRUCTURE_SIDE ** 2
    wanted = [k for k, (_, a, b, orientation, trimmed) in enumerate(batch)
              if orientation == "identity" and not trimmed and len(thumbnails.get(a, b"")) == side
              and len(thumbnails.get(b, b"")) == side]
    gaps = [float("nan")] * len(batch)
    if wanted:
        def stacked(column: int) -> np.ndarray:
            return np.stack([np.frombuffer(thumbnails[batch[k][column]], dtype=np.uint8) for k in wanted])
        for k, gap in zip(wanted, verify.detail_gaps_many(stacked(1), stacked(2))):
            gaps[k] = float(gap)
    return gaps


def _tones_apart(batch: list[tuple], signatures: dict[int, np.ndarray]) -> list[bool]:
    """``verify.tones_apart_many`` of each pair of ``batch`` that has both signatures and was not found
    through a trimmed variant (its whole pictures are framed otherwise); False for the others."""
    wanted = [k for k, (_, a, b, _, trimmed) in enumerate(batch) if not trimmed and a in signatures and b in signatures]
    apart = [False] * len(batch)
    if wanted:
        found = verify.tones_apart_many(np.stack([signatures[batch[k][1]] for k in wanted]),
                                        np.stack([signatures[batch[k][2]] for k in wanted]),
                                        [batch[k][3] for k in wanted])
        for k, far in zip(wanted, found):
            apart[k] = bool(far)
    return apart


def _thumbnails(conn: psycopg.Connection, q: dict[str, str], batch: list[tuple]) -> dict[int, bytes]:
    """The structure thumbnails of the images of ``batch`` (pairs: (hash_kind, image_a, image_b, ...)) that have one."""
    ids = sorted({row[1] for row in batch} | {row[2] for row in batch})
    return {image_id: bytes(data) for image_id, data in conn.execute(q["thumbnails"], {"ids": ids}).fetchall()}


def _structures(batch: list[tuple], thumbnails: dict[int, bytes]) -> list[tuple]:
    """(hash_kind, image_a, image_b, structure, region) of each pair of ``batch``; NaN when not measurable
    (the region: also when compared unturned, or without both 64x64 thumbnails)."""
    nan = float("nan")
    results = [(kind, a, b, nan, nan) for kind, a, b, _, _ in batch]
    # (a thumbnail of another length than the loader writes is not measurable: NaN, the verdict stands)
    usable = {image_id for image_id, data in thumbnails.items()
              if len(data) in (verify.STRUCTURE_SIDE ** 2, verify.STORED_STRUCTURE_SIDE ** 2)}
    wanted = [k for k, (_, a, b, _, trimmed) in enumerate(batch) if not trimmed and a in usable and b in usable]
    if not wanted:
        return results
    values = _agreements(thumbnails, [batch[k] for k in wanted], verify.STRUCTURE_SIDE)
    # where both pictures have the finer thumbnail and agree at 32x32, the 64x64 one may still find them
    # apart (fine line patterns); its value is kept when it fails, so that one number says why
    finer = [i for i, k in enumerate(wanted)
             if values[i] >= verify.MIN_SIGNATURE_STRUCTURE
             and min(len(thumbnails[batch[k][1]]), len(thumbnails[batch[k][2]])) >= verify.FINE_STRUCTURE_SIDE ** 2]
    for start in range(0, len(finer), FINE_CHUNK):
        chunk = finer[start:start + FINE_CHUNK]
        fine = _agreements(thumbnails, [batch[wanted[i]] for i in chunk], verify.FINE_STRUCTURE_SIDE,
                           verify.FINE_STRUCTURE_PERCENTILE)
        for i, value in zip(chunk, fine):
            if value < verify.MIN_SIGNATURE_FINE_STRUCTURE:
                values[i] = min(values[i], value)
    # compared under a flip or a turn: a region where both are drawn and disagree (a mirror drawn again, its
    # lettering left readable) is left to the check by pixels
    regions = np.full(len(wanted), np.nan)
    turned = [i for i, k in enumerate(wanted) if batch[k][3] != "identity"
              and min(len(thumbnails[batch[k][1]]), len(thumbnails[batch[k][2]])) >= verify.FINE_STRUCTURE_SIDE ** 2]
    for start in range(0, len(turned), FINE_CHUNK):
        chunk = turned[start:start + FINE_CHUNK]
        regions[chunk] = _agreements(thumbnails, [batch[wanted[i]] for i in chunk], verify.FINE_STRUCTURE_SIDE,
                                     measure=verify.region_agreements)
    for k, value, region in zip(wanted, values, regions):
        kind, a, b, _, _ = batch[k]
        results[k] = (kind, a, b, float(value), float(region))
    return results


def _agreements(thumbnails: dict[int, bytes], pairs: list[tuple], side: int,
                percentile: float | None = None, measure=verify.structure_agreements) -> np.ndarray:
    """``measure`` (``verify.structure_agreements``, at ``percentile`` when given, or
    ``verify.region_agreements``) of ``pairs`` ((hash_kind, image_a, image_b, orientation, trimmed)), their
    thumbnails at ``side``; each picture in each orientation it is compared in made ready once."""
    pictures: dict[tuple[int, str], int] = {}
    for _, a, b, orientation, _ in pairs:
        pictures.setdefault((a, orientation), len(pictures))
        pictures.setdefault((b, "identity"), len(pictures))
    stacked = np.stack([verify.structure_pixels(thumbnails[image_id], orientation, side)
                        for image_id, orientation in pictures])
    side_a = np.array([pictures[(a, orientation)] for _, a, _, orientation, _ in pairs])
    side_b = np.array([pictures[(b, "identity")] for _, _, b, _, _ in pairs])
    extra = {} if percentile is None else {"percentile": percentile}
    return measure(stacked[side_a], stacked[side_b], **extra)


@dataclass(frozen=True)
class SecondLook:
    """A second look at the aligned pairs the signatures rejected for one of ``reasons``: ``measure`` (as in
    ``_Measurer.stream``) fills pairs.``column`` (SQL type ``kind``), and a pair whose value passes
    ``candidate`` (SQL of the value r.value) goes back to pending for the geometric check."""

    name: str
    column: str
    kind: str
    reasons: tuple[str, ...]
    candidate: str
    measure: Callable


SECOND_LOOKS = (
    SecondLook("tone", "tone_fit", "real", ("colour",), "r.value <> 'NaN'::real", _tone_fits),
    # ('layout': no verdict gives it since migration 0030; named as the partial index pairs_overlay_unmeasured_idx
    # names it, so that the look's queries keep using that index)
    SecondLook("overlay", "overlay_cells", "boolean", ("colour", "layout"), "r.value", _overlay_cells),
)
