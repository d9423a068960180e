"""Verifying the candidate pairs the SQL step left pending, by their pixels, in worker processes.

The SQL step (``dbdedup.verify_pairs``) settles what it can from the stored quality and colour
signatures; the rest stay ``verified IS NULL``: pairs found through a border-trimmed variant or
an embedding neighbour, aligned pairs their signatures could not settle, and pairs of images
that have no stored signature yet (loaded before the loader computed one). Here:

    the graph of pending pairs -> an order of its images in which each look-alike family's
    images come together (reverse Cuthill-McKee) -> the pending pairs in that order, from a
    server-side cursor (WITH HOLD: it outlives the per-batch commits) -> chunks of pairs (a family's
    pairs in one chunk, up to a limit) to a process pool (a bounded number in flight) ->
    each worker reads the two files at the paths the loader recorded (nothing else), refuses a
    file whose size or mtime changed, decodes in colour, computes a missing quality and
    signature (written back to dbdedup.images), and gives the pair its verdict: the colour
    signature when the pair is aligned, else keypoints (cached per image in the worker, and kept
    for every worker and round of the run in a ``keypoint_store``) and a RANSAC similarity whose
    overlap is compared by colour (for a flat picture with too few keypoints, the pixels aligned
    by ECC instead) -> COPY into a temporary table -> one UPDATE of dbdedup.pairs per batch,
    committed.

Memory: the planned order holds about 40 bytes per pending pair in the parent while it is
planned, and each worker caches CACHED_IMAGES decoded images (about 0.4 MB each); nothing else
grows with the number of pairs. On disk, the keypoint store holds about 20 kB an image checked
(at most keypoint_store.MAX_BYTES), removed when the run ends. A run killed at any moment loses at most the
batch it was writing; the next run continues with the pairs still pending. A file that cannot
be read or decoded gives its pairs ``verified = false`` and ``verify_reason 'error: ...'``; a
worker that dies loses only its own chunks: the one it was checking is checked again one pair at a
time, the one waiting for it as it was (worker_pool.CrashTolerantPool).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import psycopg
from PIL import Image

from . import locks, pg_binary, verify, worker_pool
from .decode import ImageError, decode_colour, decode_image, use_own_pixel_limit
from .fingerprint import verification_signals
from .keypoint_store import KeypointStore, StoreAccess
from .worker_pool import default_workers
from .resample import limit_blas_threads
from .file_access import NotARegularFile, open_regular_file
from .sqlfiles import named_queries
from .structure_check import check_structure
from .variants import trim_box

FETCH_ROWS = 512  # pending pairs fetched from the cursor at a time
EDGE_ROWS = 100_000  # image pairs fetched at a time while the order is planned
CHUNK_PAIRS = 96  # consecutive pairs (in the planned order) per task, at least ...
# ... and up to this many while the next pair shares an image with the chunk: a family's pairs go to one
# worker, which has its images at hand, instead of alternating between workers that each read them all
# (simulated on the accuracy set's 35,390 pairs checked by pixels, 2 workers: 11,160 images read with
# chunks of 96, 9,627 with this cut, 9,465 up to 1,024, 8,503 with one worker; a family of 1,000 pairs
# still keeps two workers busy)
MAX_CHUNK_PAIRS = 512
# ... but no chunk takes more than the pairs left to hand out over GUIDED_SHARES chunks a worker (nor under
# MIN_GUIDED_PAIRS): the run's last chunks get small, so that no worker is left checking a family of hundreds of
# pairs while the other has nothing (guided self-scheduling). A report's plan runs about 45 batches, most of a
# few hundred pairs: on the accuracy set the workers were busy 87% of the batches' time with fixed cuts (a batch of
# 194 pairs on one worker alone), 95% with these (the batches 255 -> 227 s, the report 310-334 -> 287 s, 5% more
# files read; bench/report_phases.py, session 35)
GUIDED_SHARES = 3
MIN_GUIDED_PAIRS = 8
CHUNKS_IN_FLIGHT_PER_WORKER = 3
WRITE_ROWS = 500  # verdicts per COPY + UPDATE transaction
WRITE_SECONDS = 2.0  # ... or fewer, so that a kill loses at most a couple of seconds of work
# decoded images (working pixels, keypoints) a worker keeps, least recently used out: simulated on
# the accuracy set's 51,462 geometric pairs among 7,715 images, 2 workers in the planned order read
# 13,455 images with 256 (24,095 with 96; 51,663 with 96 in image_a order); measured on its
# 44,408 pending pairs, 11,272 with 256 in the planned order against 46,205 before. The checks a
# report plans (verify_plan) come in batches from all over the graph, to workers kept between them:
# 19,288 files read for its 29,553 checks with 256, 15,604 for 25,506 with 1,024 (about 7 s less)
CACHED_IMAGES = 512
RESIZED_IMAGES = 4  # images a worker keeps at a side other than the working one (PairChecker._pixels_at)
# the refusals of an aligned pair that a semi-transparent overlay on one side may explain (PairChecker._unless_overlay)
OVERLAY_REFUSALS = frozenset({"colour", "detail", "structure", "no_geometry"})
ALIGNED_REFUSALS = OVERLAY_REFUSALS - {"no_geometry"}  # ... of a pair the keypoints aligned
# the refusals a JPEG's low quality may explain: its artefacts move colours by blocks and hide thin lines from
# the keypoints and ECC (PairChecker._unless_reencoded)
REENCODE_REFUSALS = OVERLAY_REFUSALS
# levels RMS: a keeper pair that nothing aligned (no hash, no keypoints, no ECC) is one tone edit apart only this
# close, not verify.TONE_MAX_RESIDUAL (PairChecker._unaligned_tone_verdict). Replayed on the pairs two cli_score
# runs refused (bench/accuracy, seeds 5 and 6, session 31), the fit verified 31 keeper pairs of copies and 3 of
# look-alikes (star rings of one family: a reduced copy against a sibling's enlarged keeper), the closest 5.5 off;
# 24 of those copy pairs are under 4.2 (brightened copies among them: a lemon, a dotted square). The
# embedding's neighbours, the nearest look-alikes, fitted as close as 4.7 (46 look-alike pairs): not tried. A pair
# a trimmed variant found keeps the usual bound: 8 copy pairs, none of 816 look-alike pairs tried.
UNALIGNED_TONE_MAX_RESIDUAL = 4.2

# How pairs are routed (aligned or not, settled or not) is set in sql/verification.sql, as verify.py
# reads it: the same rules as the SQL step (dbdedup.verify_pairs).
_MIRRORS = ("flip_h", "flip_v", "transpose", "transverse")  # keypoints are rotation- but not mirror-invariant
KEYPOINTS = "keypoints"  # pairs.transform of a pair only shared keypoint keys found (sql/keypoints.sql)
LINKED = "linked"  # pairs.transform of a keeper's pair proposed through a verified member (sql/clusters.sql)
# pairs.transform of a pair whose pHash is near a window of the other picture, one of its nearest embedding
# neighbours (dbdedup.match_embeddings): a crop and the picture it may be cut from, no whole-frame signal
CROP_WINDOW = "crop_window"


class VerifyProgress:
    """Callbacks ``verify_pending_pairs`` calls as it goes; subclass and override what you need."""

    def pairs_found(self, pending: int) -> None:
        """``pending`` pairs are waiting for verification when the run starts."""

    def pairs_done(self, done: int, errors: int) -> None:
        """``done`` of them have a verdict written; ``errors`` of those could not be checked."""


@dataclass
class VerifySummary:
    """What one call of ``verify_pending_pairs`` did."""

    pending: int = 0  # pairs pending when the run started
    verified: int = 0  # pairs found the same picture
    rejected: int = 0  # pairs found different pictures (or without a verification signal)
    errors: int = 0  # pairs whose files could not be checked (verify_reason 'error: ...')
    reasons: dict[str, int] = field(default_factory=dict)  # verify_reason -> pairs
    backfilled: int = 0  # images whose quality and colour signature this run stored
    structure_failed: int = 0  # signature-verified pairs the structure check left to the geometric check
    tone_candidates: int = 0  # pairs rejected for colour the structure check found close to one tone edit (pending again)
    tones_apart: int = 0  # signature-verified pairs the structure check refused: colours no tone edit explains
    overlay_candidates: int = 0  # pairs rejected for colour or layout whose cells one overlay may explain (pending again)
    images_read: int = 0  # files read and decoded by the workers (an image read by two workers counts twice)
    unchecked: int = 0  # pairs the clusters did not need checked, left so (verify_plan.verify_needed_pairs)
    workers: int = 0
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return self.verified + self.rejected + self.errors

    def as_dict(self) -> dict:
        return {"pending": self.pending, "verified": self.verified, "rejected": self.rejected,
                "errors": self.errors, "reasons": dict(self.reasons), "backfilled": self.backfilled,
                "structure_failed": self.structure_failed, "tone_candidates": self.tone_candidates,
                "tones_apart": self.tones_apart,
                "overlay_candidates": self.overlay_candidates,
                "images_read": self.images_read,
                "unchecked": self.unchecked, "workers": self.workers,
                "seconds": round(self.seconds, 3)}


def merged(first: VerifySummary | None, second: VerifySummary) -> VerifySummary:
    """One summary for two runs of ``verify_pending_pairs`` (``first`` None: ``second``)."""
    if first is None:
        return second
    return VerifySummary(
        pending=first.pending + second.pending, verified=first.verified + second.verified,
        rejected=first.rejected + second.rejected, errors=first.errors + second.errors,
        reasons=dict(Counter(first.reasons) + Counter(second.reasons)),
        backfilled=first.backfilled + second.backfilled,
        structure_failed=first.structure_failed + second.structure_failed,
        tone_candidates=first.tone_candidates + second.tone_candidates,
        tones_apart=first.tones_apart + second.tones_apart,
        overlay_candidates=first.overlay_candidates + second.overlay_candidates,
        images_read=first.images_read + second.images_read, unchecked=second.unchecked,
        workers=max(first.workers, second.workers), seconds=first.seconds + second.seconds)


# ---------------------------------------------------------------- one pair, in a worker


@dataclass(frozen=True)
class ImageInfo:
    """What the database recorded of one image of a pending pair."""

    id: int
    status: str
    path: bytes
    size_bytes: int
    mtime_ns: int
    quality: int | None
    signature: np.ndarray | None
    signature_error: str | None
    width: int | None = None  # as the loader recorded them (EXIF orientation applied)
    height: int | None = None
    format: str | None = None  # images.format: 'JPEG', 'PNG', ...
    bordered: bool | None = None  # whether the loader trimmed a uniform border off it; None: not recorded

    def same_size(self, other: "ImageInfo") -> bool:
        """Whether the two have one size, or that size turned by a quarter (both recorded)."""
        if None in (self.width, self.height, other.width, other.height):
            return False
        return (self.width, self.height) in ((other.width, other.height), (other.height, other.width))


def _as_stored(measure: float) -> float:
    """A measure of dbdedup.pairs (a real) as PostgreSQL compares it with a threshold of verify_settings() (double
    precision): the real itself, widened. (A row brings its text, the shortest decimal that reads back as that real:
    0.7 for the real just below 0.7, which PostgreSQL finds below 0.7.)"""
    return float(np.float32(measure))


@dataclass(frozen=True)
class PendingPair:
    """One pending row of dbdedup.pairs and its two images."""

    hash_kind: str
    image_a: int
    image_b: int
    distance: int
    is_exact: bool
    transform: str | None
    transform_distance: int | None
    similarity: float | None
    a: ImageInfo
    b: ImageInfo
    structure: float | None = None  # pairs.structure: below verify.MIN_SIGNATURE_STRUCTURE, the signatures do not settle it
    tone_fit: float | None = None  # pairs.tone_fit: not NaN when the signatures' cells are close to one tone edit
    region: float | None = None  # pairs.region: below verify.MIN_ORIENTED_REGION, the pixels measure the region again
    # whether one of the two may be the other in a frame (dbdedup.one_in_frame, as dbdedup.verify_pairs asked it:
    # such a pair refused for colour was left pending for the framed check)
    one_framed: bool = False
    # pairs.detail_gap: above verify.DETAIL_GATE, the pixels say whether the two are apart in place
    detail_gap: float | None = None

    @classmethod
    def from_row(cls, row: Sequence) -> "PendingPair":
        """A row of the ``pending_pairs`` query (the signatures in their binary form: ``array_send``)."""
        def image(id_, start, size_at, format_at, bordered_at):
            status, path, size, mtime, quality, signature, error = row[start:start + 7]
            width, height = row[size_at:size_at + 2] if len(row) >= size_at + 2 else (None, None)
            return ImageInfo(id_, status, bytes(path), size, mtime, quality, pg_binary.float4_values(signature), error,
                             width, height, row[format_at] if len(row) > format_at else None,
                             row[bordered_at] if len(row) > bordered_at else None)

        return cls(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], image(row[1], 8, 24, 28, 30),
                   image(row[2], 15, 26, 29, 31), row[22], row[23], row[32] if len(row) > 32 else None,
                   bool(row[33]) if len(row) > 33 else False, row[34] if len(row) > 34 else None)

    # (structure_failed, region_failed and detail_failed are the three terms of dbdedup.left_to_pixels in
    # sql/verification.sql, which routes the same pairs to this check: tests/test_structure_check.py ties them)
    @property
    def structure_failed(self) -> bool:
        """Whether the structure check found the two apart (another drawing in a region, or a copy
        cropped or turned a little at a close pHash): a signature verdict cannot verify it."""
        return self.structure is not None and _as_stored(self.structure) < verify.MIN_SIGNATURE_STRUCTURE

    @property
    def region_failed(self) -> bool:
        """Whether the structure check found a region where the two, compared under a flip or a turn, are both
        drawn and disagree (a mirror drawn again, or a flipped copy against a watermarked one): the pixels decide."""
        return self.region is not None and _as_stored(self.region) < verify.MIN_ORIENTED_REGION

    @property
    def detail_failed(self) -> bool:
        """Whether the structure check found the two, compared unturned, stray from one tone edit in their luma
        thumbnails (``verify.DETAIL_GATE``): the pixels say whether they are apart in place (another suit)."""
        return (self.detail_gap is not None and not math.isnan(self.detail_gap)
                and _as_stored(self.detail_gap) > verify.DETAIL_GATE)

    @property
    def tone_candidate(self) -> bool:
        """Whether the pair, rejected for colour by its signatures, may be one brightness or contrast edit
        (its signatures' cells fit one, dbdedup.structure_check): the files' RGB pixels decide."""
        return self.tone_fit is not None and not math.isnan(self.tone_fit)

    @property
    def may_be_framed(self) -> bool:
        """Whether either picture may be the other in a frame: the loader trimmed a uniform border off it, or
        recorded nothing about one."""
        return self.a.bordered is not False or self.b.bordered is not False

    @property
    def key(self) -> tuple[str, int, int]:
        return self.hash_kind, self.image_a, self.image_b


class FileCheckError(Exception):
    """A recorded file that cannot be checked now: ``reason`` is short, for 'error: <reason>'."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def read_recorded_file(path: bytes, size_bytes: int, mtime_ns: int) -> bytes:
    """The bytes of the file the loader recorded at ``path``, if it is still the file it recorded
    (a regular file of the same size and mtime); FileCheckError otherwise. The file is checked on
    the open descriptor (``file_access.open_regular_file``), so a FIFO put in its place is not read and a
    file swapped between the check and the read is not either."""
    try:
        handle = open_regular_file(path)
    except NotARegularFile:
        raise FileCheckError("not a regular file any more") from None
    except FileNotFoundError:
        raise FileCheckError("file is gone") from None
    except PermissionError:
        raise FileCheckError("permission denied") from None
    except OSError as exc:
        raise FileCheckError(f"unreadable ({exc.strerror or exc.__class__.__name__})") from None
    with handle:
        try:
            st = os.fstat(handle.fileno())
            if st.st_size != size_bytes or st.st_mtime_ns != mtime_ns:
                raise FileCheckError("file changed since it was loaded")
            data = handle.read(size_bytes)
        except OSError as exc:
            raise FileCheckError(f"unreadable ({exc.strerror or exc.__class__.__name__})") from None
    if len(data) != size_bytes:
        raise FileCheckError("file changed since it was loaded")
    return data


class _Unreadable(Exception):
    """An image of the pair whose pixels cannot be had: ``reason`` is the pair's verdict reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Seen:
    """One image as a worker has it: its features, working pixels and keypoints, or why not."""

    __slots__ = ("features", "pixels", "keypoints", "error")

    def __init__(self):
        self.features: verify.Features | None = None
        self.pixels: np.ndarray | None = None
        self.keypoints: dict[str, verify.Keypoints] = {}
        self.error: str | None = None


# The transform seen from the other image of a pair (as dbdedup.inverse_transform, sql/signals.sql): a quarter turn
# one way is a quarter turn the other way; flips, transposes, half turns and trims are their own inverse.
_INVERSE_TRANSFORMS = {"rotate_90": "rotate_270", "rotate_270": "rotate_90",
                       "trim+rotate_90": "trim+rotate_270", "trim+rotate_270": "trim+rotate_90"}


def _order_key(info: ImageInfo) -> tuple[int, int, bytes]:
    return -(info.width or 0) * (info.height or 0), -(info.size_bytes or 0), info.path


def files_ordered(pair: PendingPair) -> PendingPair:
    """The pair with its two images in the order of their files (more pixels first, as a keeper; then the larger
    file, then the path), not of their ids: the alignments of the check by pixels warp image_b onto image_a and are
    not symmetric, while ids follow the order a load wrote the files in. So the same files get the same verdict
    however they were loaded (session 37: swapping the sides of seed 5's 17,596 pairs refused no_geometry verified 60
    copy pairs and 4 look-alike pairs). The verdict belongs to the pair as given."""
    if _order_key(pair.a) <= _order_key(pair.b):
        return pair
    return replace(pair, image_a=pair.image_b, image_b=pair.image_a, a=pair.b, b=pair.a,
                   transform=_INVERSE_TRANSFORMS.get(pair.transform, pair.transform))


class PairChecker:
    """Verdicts for pending pairs, with a bounded cache of the images it has read (one per worker)
    and, when given one, a ``keypoint_store`` shared with the other workers and rounds."""

    def __init__(self, cached_images: int = CACHED_IMAGES, store: StoreAccess | None = None):
        self.cache: OrderedDict[int, _Seen] = OrderedDict()
        self.cached_images = cached_images
        # the last few images read at another side (a pair whose tone fit failed there tries the overlay there next)
        self.resized: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        # how each JPEG read was compressed (None for any other file), for the check of a re-encoded copy
        self.encodings: OrderedDict[int, verify.JpegEncoding | None] = OrderedDict()
        self.store = store or StoreAccess(None)
        self.images_read = 0
        self.backfills: list[tuple] = []  # (image_id, size, mtime, quality, signature list, error), taken by the caller

    def _seen(self, info: ImageInfo, need_pixels: bool) -> _Seen:
        seen = self.cache.get(info.id)
        if seen is not None:
            self.cache.move_to_end(info.id)
        else:
            seen = _Seen()
            if info.quality is not None and info.signature is not None \
                    and len(info.signature) == verify.SIGNATURE_LENGTH:
                seen.features = verify.Features(int(info.quality), info.signature)
            self.cache[info.id] = seen
            while len(self.cache) > self.cached_images:
                self.cache.popitem(last=False)
        if seen.error is None and (seen.features is None or (need_pixels and seen.pixels is None)):
            self._read(info, seen, need_pixels)
        return seen

    def _read(self, info: ImageInfo, seen: _Seen, need_pixels: bool) -> None:
        self.images_read += 1
        try:
            data = read_recorded_file(info.path, info.size_bytes, info.mtime_ns)
            self._note_encoding(info, data)
            if seen.features is None:
                # measured as the loader measures them (its decode, its working images): the
                # values an image loaded today would have
                quality, signature, why = verification_signals(decode_image(data, colour=True, max_pixels=0))
                self.backfills.append((info.id, info.size_bytes, info.mtime_ns, quality,
                                       None if signature is None else [float(v) for v in signature], why))
                if signature is None:
                    seen.error = "no_signature"
                    return
                seen.features = verify.Features(int(quality), signature)
            if need_pixels:
                seen.pixels = pixels_of_file(data)
        except FileCheckError as exc:
            seen.error = f"error: {exc.reason}"
        except ImageError as exc:
            seen.error = f"error: {exc.reason}"

    def _pixels_at(self, info: ImageInfo, side: int) -> np.ndarray:
        """The image's pixels at ``side`` on its long side (read again, for the few pairs compared at another
        scale than the working one; the last RESIZED_IMAGES kept); _Unreadable when it cannot be read."""
        key = (info.id, side)
        pixels = self.resized.get(key)
        if pixels is None:
            try:
                pixels = pixels_of_file(read_recorded_file(info.path, info.size_bytes, info.mtime_ns), side)
            except (FileCheckError, ImageError) as exc:
                raise _Unreadable(f"error: {exc.reason}") from exc
            self.resized[key] = pixels
            while len(self.resized) > RESIZED_IMAGES:
                self.resized.popitem(last=False)
        return pixels

    def _pixels(self, info: ImageInfo) -> np.ndarray:
        """The image's working pixels (read when not cached); _Unreadable when it cannot be read."""
        seen = self._seen(info, True)
        if seen.error is not None:
            raise _Unreadable(seen.error)
        return seen.pixels

    def _keypoints(self, info: ImageInfo, orientation: str) -> verify.Keypoints:
        """The image's keypoints under ``orientation``: from this worker's cache, else the store, else
        found on its pixels (read when needed; _Unreadable when they cannot be) and stored."""
        seen = self._seen(info, False)
        if seen.error is not None:
            raise _Unreadable(seen.error)
        found = seen.keypoints.get(orientation)
        if found is None:
            found = self.store.load(info.id, info.size_bytes, info.mtime_ns, orientation)
            if found is None:
                pixels = self._pixels(info)
                found = verify.keypoints_of_pixels(verify.orient_pixels(pixels, orientation))
                self.store.save(info.id, info.size_bytes, info.mtime_ns, orientation, found)
            seen.keypoints[orientation] = found
        return found

    def verdict(self, pair: PendingPair) -> verify.Verdict:
        """The verdict for one pending pair (never raises for a file or image problem: that is a
        verdict with reason 'error: ...'). The two images are taken in the order of their files (``files_ordered``)."""
        pair = files_ordered(pair)
        for info in (pair.a, pair.b):
            if info.status != "ok":
                return verify.Verdict(False, 0.0, f"error: image {info.id} is {info.status}")
        if pair.is_exact:
            return verify.Verdict(True, 1.0, "exact")
        if pair.a.signature_error is not None or pair.b.signature_error is not None:
            return verify.Verdict(False, 0.0, "no_signature")
        try:
            verdict = self._verdict(pair)
            return verdict if verdict.verified else self._unless_reencoded(pair, verdict)
        except _Unreadable as exc:
            return verify.Verdict(False, 0.0, exc.reason)

    def _verdict(self, pair: PendingPair) -> verify.Verdict:
        # a pair only keypoint keys found (a crop, a rotation) is never settled by its signatures or
        # its similarity: geometry and the colours of the overlap decide
        by_keys = pair.transform == KEYPOINTS
        orientation = None if by_keys else orientation_of(pair)
        if orientation is None and not by_keys and not (pair.transform or "").startswith("trim") \
                and pair.similarity is not None and pair.similarity < verify.GEOMETRY_MIN_SIMILARITY:
            return verify.Verdict(False, 0.0, "weak_embedding")
        seen_a, seen_b = self._seen(pair.a, False), self._seen(pair.b, False)
        for seen in (seen_a, seen_b):
            if seen.error is not None:
                return verify.Verdict(False, 0.0, seen.error)
        fa, fb = seen_a.features, seen_b.features
        if min(fa.quality, fb.quality) < verify.MIN_QUALITY:
            # no hash signal of its own: only the same pixels (at one size) verify it
            if pair.a.same_size(pair.b):
                return verify.same_pixels_verdict(self._pixels(pair.a), self._pixels(pair.b))
            return verify.Verdict(False, 0.0, "low_quality")
        aligned = orientation is not None
        settled = None
        if aligned:
            settled = aligned_verdict(fa, fb, orientation, closest_distance(pair))
            if settled is not None and settled.verified and settled.reason == "signature" \
                    and verify.tones_apart(fa.signature, fb.signature, orientation):
                # (as the structure check refuses such a verdict of the SQL step: colours no tone edit explains)
                settled = verify.Verdict(False, settled.score, "colour")
            if settled is not None and settled.reason == "colour" and pair.one_framed:
                # one of the two in a frame (a mat, a black edge) that moves the whole signatures apart: what the
                # frame held, aligned by ECC, is compared with the other (dbdedup.verify_pairs leaves such pairs
                # pending; replayed on cli_score runs' pairs refused for colour, session 36 with exactly one side
                # bordered: 82 of 130 copy pairs verified, none of 679 look-alike pairs; session 37 with both
                # bordered and one trimmed near the other whole: 29 of 80 and none of 275)
                framed = framed_verdict(fa, fb, verify.orient_pixels(self._pixels(pair.a), orientation),
                                        self._pixels(pair.b), verify.MIN_STRUCTURE)
                if framed is not None and framed.verified:
                    return framed
            if (settled is None or settled.reason == "colour") \
                    and converted_candidate(fa, fb, orientation, closest_distance(pair)):
                # (its signature converts the colours cell by cell, where the copy converted each pixel)
                converted = verify.converted_verdict(verify.orient_pixels(self._pixels(pair.a), orientation),
                                                     self._pixels(pair.b))
                if converted is not None:
                    return converted
            if settled is not None and settled.reason == "colour" and pair.tone_candidate:
                # (clipping bends the signatures: the pixels say whether one edit of the tones explains it)
                toned = self._tone_verdict(pair, orientation)
                return toned if toned is not None else self._unless_overlay(pair, fa, fb, orientation, settled)
            if settled is not None and settled.verified and pair.region_failed:
                # (compared under a flip or a turn, its stored thumbnails disagreed in a region where both are
                # drawn: do its pixels too? a mirror drawn again, its lettering left readable)
                redrawn = unless_redrawn(settled, [self._pixels(pair.a)], [self._pixels(pair.b)], orientation)
                if not redrawn.verified:
                    return redrawn
            if settled is not None and settled.verified and settled.reason == "signature" \
                    and orientation == "identity" and pair.detail_failed and not pair.structure_failed:
                # (its luma thumbnails strayed from one tone edit: another suit or other pips on one card?)
                apart = self._apart_in_place(pair, fa, fb, settled)
                if apart is not None:
                    return apart
            # (the structure check failed it: only a rejection settles it; a verdict of the same picture
            # is the geometric check's, with the structure of the aligned overlap)
            if settled is not None and not (settled.verified and pair.structure_failed):
                return settled if settled.verified else self._unless_overlay(pair, fa, fb, orientation, settled)
        if (pair.transform or "").startswith("trim"):
            # found through a border-trimmed variant: once the uniform borders are cut off, the two
            # are aligned, and their signatures settle it without keypoints (flat-toned photos and
            # drawings in a frame have too few of them); as in dbdedup.verify_pairs, the whole
            # pictures may already agree in the variant's orientation (a soft border trims unevenly)
            pixels_a, pixels_b = self._pixels(pair.a), self._pixels(pair.b)
            orientation = trim_orientation(pair.transform)
            whole = verify.signature_verdict(fa, fb, orientation, closest_distance(pair)) \
                if orientation in verify.ORIENTATIONS else None
            if whole is None:
                whole = trimmed_verdict(fa, fb, pixels_a, pixels_b, pair.transform, closest_distance(pair))
            if whole is not None:
                # (the variant's name does not say which side was trimmed, as in trimmed_verdict: each side as it
                # compares best, trimmed of its uniform border or whole)
                return unless_redrawn(whole, _whole_or_trimmed(pixels_a), _whole_or_trimmed(pixels_b), orientation)
        if aligned:
            # its signatures disagreed (or its structure): more keypoints, and the aligned overlap's detail
            min_inliers = verify.MIN_INLIERS_ALIGNED
        elif pair.transform in (LINKED, CROP_WINDOW) \
                and (verify.drawing_on_white(fa.signature) or verify.drawing_on_white(fb.signature)):
            # no whole-frame signal found this pair, only a member of the keeper's cluster, a near neighbour or
            # a window: a drawing on white needs as many keypoints as an aligned pair (thin drawings of one
            # template agree on 16)
            min_inliers = verify.MIN_INLIERS_ALIGNED
        else:
            min_inliers = verify.MIN_INLIERS
        mirror = geometry_orientation(pair)
        keys_a, keys_b = self._keypoints(pair.a, mirror), self._keypoints(pair.b, "identity")
        # (a pair whose structure check failed: the alignment must explain that)
        min_structure = verify.MIN_STRUCTURE_REALIGNED if pair.structure_failed else verify.MIN_STRUCTURE

        @functools.cache
        def pixels_a() -> np.ndarray:
            # the pixels the keypoints were found on: image_a's under the same mirror (oriented once)
            return verify.orient_pixels(self._pixels(pair.a), mirror)

        def aligned_by_keypoints(max_turn: float | None = None, reverse: bool = False, guided: bool = False
                                 ) -> tuple[verify.GeometricMatch, verify.Verdict]:
            # (``reverse``: image_b's keypoints matched to image_a's, and image_a warped onto image_b; the pixels are
            # read only for an overlap to compare: most pairs end no_geometry on keypoints from the store;
            # ``guided``: each keypoint matched among the other's near its own place, verify.guided_align_keypoints)
            sides = [(pixels_a, keys_a, fa), (lambda: self._pixels(pair.b), keys_b, fb)]
            (first, keys_first, info_first), (second, keys_second, info_second) = sides[::-1] if reverse else sides
            match = verify.guided_align_keypoints(keys_first, keys_second) if guided \
                else verify.align_keypoints(keys_first, keys_second, max_turn=max_turn)
            if verify.overlap_needed(match, min_inliers):  # (below, the verdict is no_geometry whatever the overlap)
                # (aligned under a mirror: a mirror drawn again differs in one region, verify.region_of_pixels)
                match = verify.compare_overlap(match, first(), second(), region=mirror != "identity")
            verdict = verify.geometric_verdict(info_first, info_second, match, min_inliers=min_inliers,
                                               max_detail=verify.MAX_DETAIL_FAR if aligned else None,
                                               min_structure=min_structure)
            # (a verified verdict compared the overlap: the pixels are at hand)
            if verdict.verified and max_turn is None and verify.turn_against_hash(match, first(), second()):
                # the pHashes see the two unturned: only an unturned alignment verifies them (a card nearly
                # symmetric by a half turn aligns both ways; an arrow drawn pointing the other way does not)
                unturned, again = aligned_by_keypoints(max_turn=verify.TURN_MIN_DEGREES, reverse=reverse)
                return (unturned, again) if again.verified else (match, verify.Verdict(False, verdict.score, "turned"))
            return match, verdict

        match, verdict = aligned_by_keypoints()
        if verdict.reason == "turned":
            return verdict
        # (the keypoints aligned the two whole and in place, and the overlap compared apart: a pHash too far for an
        # aligned pair, a copy brightened until it clips, may be one tone edit in place; see _unaligned_tone_verdict)
        keypoints_in_place = mirror if verdict.reason in ALIGNED_REFUSALS \
            and verify.in_place(match, pixels_a().shape, self._pixels(pair.b).shape) else None
        if verdict.reason == "no_geometry":
            # the matches come from a ratio test one way (each of image_b's keypoints against image_a's nearest
            # two), and RANSAC's tolerance is a share of image_a's size: a copy can pass them only from its own
            # side (a few inliers short of min_inliers the other way), so which file is image_a would decide its
            # verdict. The other way is tried, and only its verification is taken (a refusal there does not stop
            # the fallbacks below), turned by less than TURN_MIN_DEGREES: the pair's orientation has taken up a
            # quarter turn already, and an arrow drawn pointing down aligns with one pointing up turned by 175
            # degrees (seed 5's o0068 and o0061: 26 inliers one way, 23 the other)
            turned_back, reversed_verdict = aligned_by_keypoints(reverse=True)
            if reversed_verdict.verified and turned_back.transform is not None \
                    and abs(verify.turn_degrees(turned_back.transform)) < verify.TURN_MIN_DEGREES:
                return reversed_verdict
            if any(m.transform is not None and m.inliers >= verify.GUIDED_MIN_TURNED_INLIERS
                   and abs(verify.turn_degrees(m.transform)) >= verify.TURN_MIN_DEGREES for m in (match, turned_back)):
                # aligned turned by a quarter or more, and not verified: perhaps a picture symmetric by a turn,
                # whose keypoints' twins the ratio test dropped (verify.GUIDED_NEAR); matched again near their own
                # places, each way, only a verification is taken
                for reverse in (False, True):
                    _, guided_verdict = aligned_by_keypoints(reverse=reverse, guided=True)
                    if guided_verdict.verified:
                        return guided_verdict
        fewest_keypoints = min(len(keys_a.points), len(keys_b.points))
        flat = fewest_keypoints < verify.DENSE_MAX_KEYPOINTS
        if verdict.reason == "no_geometry" and dense_candidate(pair, orientation):
            if flat:
                # too few keypoints to tell: align the pixels themselves (flat drawings, see verify.dense_match;
                # a copy the warp turns is compared without its new corners, verify.DENSE_DISC_MIN_TURN). ECC warps
                # one picture onto the other and is not symmetric (a crop aligns onto its original, not always the
                # original onto the crop; files_ordered fixes which is first): one that aligns nothing one way is
                # tried the other way
                dense = {"disc_if_turned": True, "compare_from": verify.DENSE_MIN_CORRELATION}
                verdict = verify.dense_verdict(
                    fa, fb, verify.dense_match(self._pixels(pair.a), self._pixels(pair.b), **dense),
                    min_structure=min_structure)
                if verdict.reason == "no_geometry":
                    verdict = verify.dense_verdict(
                        fb, fa, verify.dense_match(self._pixels(pair.b), self._pixels(pair.a), **dense),
                        min_structure=min_structure)
            if verdict.reason == "no_geometry" and pair.transform == LINKED:
                # a keeper pair no signal found: perhaps a copy turned by 5-20 degrees (its turn signature
                # proposed it), which ECC aligns only from the turn its rings suggest; a picture with keypoints
                # enough, only when they fell short for a turn of a few degrees, and only to verify it
                # (verify.DENSE_TURNED_MIN_CORRELATION)
                turned = turned_verdict(fa, fb, self._pixels(pair.a), self._pixels(pair.b),
                                        None if flat else verify.DENSE_TURNED_MAX_DEGREES, min_structure)
                if flat or turned.verified:
                    verdict = turned
        if verdict.reason == "no_geometry" and window_candidate(pair) \
                and fewest_keypoints < verify.DENSE_WINDOW_MAX_KEYPOINTS:
            # a flat picture's pair found by the embedding or a keeper's windows: perhaps a crop of the other
            # or the other in a frame, which ECC aligns only from the window it was cut from
            verdict = verify.dense_verdict(fa, fb, verify.window_match(self._pixels(pair.a), self._pixels(pair.b)),
                                           min_structure=min_structure)
        if verdict.reason == "no_geometry" and framed_candidate(pair):
            # a keeper pair, or one a trimmed variant found: perhaps one is the other in a uniform frame (a
            # mat, a card's margin), which neither keypoints nor ECC from the whole frame align
            framed = framed_verdict(fa, fb, pixels_a(), self._pixels(pair.b), min_structure)
            if framed is not None:
                verdict = framed
        elif verdict.reason == "structure" and reframed_candidate(pair, mirror):
            # the keypoints may have aligned a framed copy a little off (see reframed_candidate), which ECC aligns
            # from what the frame held; only a verified framed verdict replaces the refusal
            framed = framed_verdict(fa, fb, pixels_a(), self._pixels(pair.b), min_structure)
            if framed is not None and framed.verified:
                verdict = framed
        if not verdict.verified and aligned \
                and (settled is None or (settled.verified and verdict.reason == "structure"
                                         and not verify.drawing_on_white(fa.signature)
                                         and not verify.drawing_on_white(fb.signature))) \
                and verify.tone_worth_reading(fa.signature, fb.signature, orientation):
            # apart in colour, layout or detail, not settled by the signatures, and not aligned otherwise: one
            # edit of the tones may explain it (a copy brightened until it clips, farther in pHash than
            # same_framing; its clipped areas have no keypoints), when the signatures' cells are near one. So may
            # a pair the signatures agreed on whose overlap the keypoints aligned and found apart in structure:
            # a photo brightened until its snow and clouds clip keeps its colours and loses their detail. (Not a
            # drawing on white: two drawings on white fit a line wherever both are white, and their structure
            # decides; the replays of session 39 gave 6 copy pairs and one such look-alike otherwise.)
            toned = self._tone_verdict(pair, orientation)
            if toned is not None:
                return toned
        if not verdict.verified and aligned:
            # (aligned again and refused, the pixels compared: the overlay whatever the cells, see _unless_overlay)
            return self._unless_overlay(pair, fa, fb, orientation, verdict,
                                        cells_gate=verdict.reason not in ALIGNED_REFUSALS)
        if not verdict.verified and verdict.reason in OVERLAY_REFUSALS:
            # a keeper pair no signal found, or one a trimmed variant found, that nothing aligned (or the
            # keypoints aligned in place): a copy brightened until it clips (its pHash moved, its clipped areas
            # have no keypoints) is the other under one edit of the tones, in place
            toned = self._unaligned_tone_verdict(pair, fa, fb, keypoints_in_place)
            if toned is not None:
                return toned
        if not verdict.verified and verdict.reason in ALIGNED_REFUSALS and window_candidate(pair):
            # a keeper pair or an embedding neighbour that the keypoints aligned and found apart in a region: a
            # watermark over a small or dark picture moves its pHash far from the original's, unmirrored. (Not
            # after no_geometry: on the accuracy set 7 look-alike pairs the keypoints could not align fit one
            # overlay, where the aligned ones gave 6 watermarked copies and no look-alike.)
            return self._unless_overlay(pair, fa, fb, "identity", verdict)
        if not verdict.verified and verdict.reason == "no_geometry" and window_candidate(pair) \
                and own_size_side(pair) is not None:
            # such a pair nothing aligned, between pictures of two sizes both larger than the working one (a
            # watermarked copy against its enlarged keeper): the overlay at the smaller one's own size only (at
            # the working size 7 look-alike pairs of the accuracy set fit one)
            return self._unless_overlay(pair, fa, fb, "identity", verdict, own_size_only=True)
        return verdict

    def _apart_in_place(self, pair: PendingPair, fa: verify.Features, fb: verify.Features,
                        settled: verify.Verdict) -> verify.Verdict | None:
        """'detail' (refused) for a pair the signatures verified unturned when its pixels, compared in colour at
        their own scale, are apart somewhere beyond one tone edit (``verify.local_detail_gap``), neither one tone
        edit nor an overlay explains them (see-through, or a mark painted in one colour: ``verify.painted_over``),
        and their keypoints put one onto the other in place, turned by less than ``verify.DETAIL_MAX_TURN``: aligned
        already, they differ in a drawing. None otherwise: the signatures' verdict stands (a copy that needs
        aligning, turned or cropped a little, is not in place)."""
        pixels_a, pixels_b = self._pixels(pair.a), self._pixels(pair.b)
        if not verify.one_framing(pixels_a, pixels_b):
            return None
        sides = _long_sides(pair)
        side = min(verify.DETAIL_SIDE, *sides) if sides is not None else verify.DETAIL_SIDE
        grey = min(verify.chroma(fa.signature), verify.chroma(fb.signature)) < verify.GREY_CHROMA
        if verify.local_detail_gap(pixels_a, pixels_b, side, grey) <= verify.DETAIL_MAX_LOCAL:
            return None
        if self._tone_verdict(pair, "identity") is not None:
            return None
        refused = verify.Verdict(False, settled.score, "detail")
        if self._unless_overlay(pair, fa, fb, "identity", refused, cells_gate=False).verified \
                or verify.painted_over(pixels_a, pixels_b):
            return None
        match = verify.align_keypoints(self._keypoints(pair.a, "identity"), self._keypoints(pair.b, "identity"))
        if match.transform is None or match.inliers < verify.MIN_INLIERS \
                or abs(verify.turn_degrees(match.transform)) >= verify.DETAIL_MAX_TURN \
                or not verify.in_place(match, pixels_a.shape, pixels_b.shape):
            return None
        return refused

    def _tone_verdict(self, pair: PendingPair, orientation: str,
                      max_residual: float = verify.TONE_MAX_RESIDUAL) -> verify.Verdict | None:
        """'tone' when one brightness or contrast edit maps image_a (under ``orientation``) onto image_b within
        ``max_residual`` (``verify.tone_verdict``) at the working size, or else at the smaller picture's own size
        (``own_size_side``); None otherwise."""
        toned = verify.tone_verdict(self._pixels(pair.a), self._pixels(pair.b), orientation, max_residual)
        side = own_size_side(pair)
        if toned is None and side is not None:
            # one is the other enlarged (a keeper is the largest copy): reduced to the working size from two
            # scales, a brightened copy's clipped edges and the keeper's unclipped ones are resampled apart, and
            # no line fits them; at the smaller one's own size both come from one grid (bench/accuracy: 4
            # brightened copies against their 2x upscale, none of the 43 look-alike pairs tried so)
            try:
                toned = verify.tone_verdict(self._pixels_at(pair.a, side), self._pixels_at(pair.b, side), orientation,
                                            max_residual)
            except _Unreadable:
                return None  # (the refusal stands: a file changed since its load is read by the next match)
        return toned

    def _unaligned_tone_verdict(self, pair: PendingPair, fa: verify.Features, fb: verify.Features,
                                keypoints_in_place: str | None = None) -> verify.Verdict | None:
        """'tone' for a pair that is not aligned, when one brightness or contrast edit maps image_a onto image_b in
        place (``_tone_verdict``; the files read only when the signatures' cells are near one edit): a pair a
        trimmed variant found (in that variant's orientation), or a keeper pair no signal found (unturned, and
        within UNALIGNED_TONE_MAX_RESIDUAL: nothing but the fit says the two are one picture), or another pair
        whose keypoints aligned it in place under the mirror ``keypoints_in_place`` (within that bound too).
        None otherwise, and for an embedding neighbour the keypoints did not align so."""
        transform = pair.transform or ""
        if transform.startswith("trim"):
            orientation, max_residual = trim_orientation(transform), verify.TONE_MAX_RESIDUAL
        elif transform == LINKED:
            orientation, max_residual = "identity", UNALIGNED_TONE_MAX_RESIDUAL
        elif keypoints_in_place is not None:
            orientation, max_residual = keypoints_in_place, UNALIGNED_TONE_MAX_RESIDUAL
        else:
            return None
        if orientation not in verify.ORIENTATIONS or not verify.tone_worth_reading(fa.signature, fb.signature, orientation):
            return None
        # (the first side with a fit within max_residual: a closer fit at a finer side is not hidden by a farther
        # one at a coarser; seed 5's brightened magnifier, o0298, is 5.6 levels off at 128 and 2.5 at 256)
        return self._tone_verdict(pair, orientation, max_residual)

    def _unless_reencoded(self, pair: PendingPair, refused: verify.Verdict) -> verify.Verdict:
        """``refused``, or 'reencoded' when it refused the pair for a region, a colour or no alignment and one
        picture is a JPEG saved at a low quality that the other, compressed the same way at its size, comes out
        as (``verify.reencoded_verdict``; unturned pairs only, of the same aspect)."""
        if refused.reason not in REENCODE_REFUSALS or orientation_of(pair) not in (None, "identity"):
            return refused
        for jpeg, other in ((pair.a, pair.b), (pair.b, pair.a)):
            encoding = self._jpeg_encoding(jpeg)
            if encoding is None or not encoding.compressed_again:
                continue
            width, height = encoding.size
            try:
                own = self._pixels_at(jpeg, max(width, height))
                pixels = self._pixels_at(other, max(width, height))
            except _Unreadable:
                return refused  # (the refusal stands: a file changed since its load is read by the next match)
            verified = verify.reencoded_verdict(pixels, own, encoding)
            if verified is not None:
                return verified
        return refused

    def _jpeg_encoding(self, info: ImageInfo) -> verify.JpegEncoding | None:
        """How the image's file was compressed when it is a JPEG (``verify.jpeg_encoding``; its header read
        once a worker), else None."""
        if info.format != "JPEG":
            return None
        if info.id not in self.encodings:
            try:
                self._note_encoding(info, read_recorded_file(info.path, info.size_bytes, info.mtime_ns))
            except FileCheckError:
                return None
        return self.encodings.get(info.id)

    def _note_encoding(self, info: ImageInfo, data: bytes) -> None:
        """Keep how the image's file ``data`` was compressed when it is a JPEG (the last ``cached_images``)."""
        if info.format == "JPEG" and info.id not in self.encodings:
            self.encodings[info.id] = verify.jpeg_encoding(data)
            while len(self.encodings) > self.cached_images:
                self.encodings.popitem(last=False)

    def _unless_overlay(self, pair: PendingPair, fa: verify.Features, fb: verify.Features, orientation: str,
                        refused: verify.Verdict, own_size_only: bool = False, cells_gate: bool = True) -> verify.Verdict:
        """``refused``, or 'overlay' when it refused a pair aligned in ``orientation`` (by its hashes, or by its
        keypoints when unmirrored) for a region that differs (or found nothing to align) and one picture is the
        other under a semi-transparent overlay (a watermark: verify.overlay_verdict). With ``cells_gate``, the
        files are read only when the signatures' cells differ as an overlay would make them. With
        ``own_size_only``, only at the smaller picture's own size (``own_size_side``), not at the working size.

        The gate is for the pairs whose pixels nobody has read yet. A pair the hashes aligned that the keypoints or
        ECC then aligned and refused (ALIGNED_REFUSALS: colour, detail, structure) has had its pixels compared, and its
        cells are no guide: black text on white, enlarged 2x, moves whole rows of 16x16 cells a few levels lighter
        or darker where the lines straddle them, so a watermarked page fails the gate (session 34, the accuracy
        set's o0116). On two cli_score runs' aligned pairs refused so whose cells fail the gate (402 look-alike and 14
        copy pairs on seed 5, 548 and 13 on seed 6), the overlay at either size verified no look-alike and that one
        copy; the fits cost a few seconds of a report."""
        if refused.reason not in OVERLAY_REFUSALS \
                or (cells_gate and not verify.overlay_cells_agree(fa.signature, fb.signature, orientation)):
            return refused
        try:
            covered = None if own_size_only else \
                verify.overlay_verdict(self._pixels(pair.a), self._pixels(pair.b), orientation, closest_distance(pair))
            side = own_size_side(pair)
            if side is None and not own_size_only and orientation == "identity" and pair.transform is None:
                side = small_own_size_side(pair)
            if covered is None and side is not None:
                # one is the other enlarged (a keeper is the largest copy): reduced from different scales to the
                # working size, their textures differ beyond the overlay's noise; at the smaller one's own size
                # they do not (bench/accuracy: 4 watermarked copies against their 2x upscale)
                covered = verify.overlay_verdict(self._pixels_at(pair.a, side), self._pixels_at(pair.b, side),
                                                 orientation, closest_distance(pair))
        except _Unreadable:
            return refused  # (a refusal the signatures gave needs no file: one changed since its load keeps it)
        return refused if covered is None else covered

    def check(self, pairs: Sequence[PendingPair]) -> list[tuple]:
        """(hash_kind, image_a, image_b, verified, score, reason) for each pair; an unexpected
        failure on one pair is its verdict ('error: ...'), and the others go on."""
        out = []
        for pair in pairs:
            try:
                v = self.verdict(pair)
            except Exception as exc:
                v = verify.Verdict(False, 0.0, f"error: {exc.__class__.__name__}: {exc}"[:200])
            out.append((*pair.key, v.verified, float(v.score), v.reason))
        return out


def pixels_of_file(data: bytes, side: int = verify.GEOMETRY_SIDE) -> np.ndarray:
    """A file's RGB pixels at ``side`` on its long side, as every check by pixels reads them (the working pixels
    at the default side)."""
    return verify.working_pixels(decode_colour(data, side=side, max_pixels=0), side=side)


OWN_SIZE_MAX_SIDE = 512  # the overlay and the tone edit are compared again at the smaller picture's own size, up to this


def own_size_side(pair: PendingPair) -> int | None:
    """The long side at which to try the overlay or the tone edit again when both pictures were reduced to the
    working size (``verify.GEOMETRY_SIDE``) from two different sizes: the smaller one's, at most
    OWN_SIZE_MAX_SIDE; None otherwise (one size, sizes not recorded, or a picture at or under the working size:
    a 50-pixel star ring at its own size fits one overlay over another ring on the accuracy set, and a
    190-pixel card one tone edit of the same card of another deck, cream against white)."""
    sides = _long_sides(pair)
    if sides is None:
        return None
    long_a, long_b = sides
    side = min(long_a, long_b, OWN_SIZE_MAX_SIDE)
    return side if long_a != long_b and side > verify.GEOMETRY_SIDE else None


def _long_sides(pair: PendingPair) -> tuple[int, int] | None:
    # the two pictures' long sides, as the loader recorded their sizes (None when it did not)
    a, b = pair.a, pair.b
    if None in (a.width, a.height, b.width, b.height):
        return None
    return max(a.width, a.height), max(b.width, b.height)


# A watermarked copy of a small picture (a 160-px smiley) against its 2x keeper: the keeper is reduced to the working
# size and the copy is not, and resampled from two scales their textures differ beyond the overlay's noise; at the
# copy's own size they do not. own_size_side leaves pictures at or under the working size alone (at their own size
# small star rings fit one overlay over another); a pair its pHash aligned unturned is tried there too when the
# smaller picture's long side is OVERLAY_MIN_OWN_SIDE or more. Replayed on every such pair three cli_score runs
# refused (session 40, the rebuilt seeds 5, 6 and 7: 9,120, 11,248 and 9,499 pairs with the smaller picture at
# 100-256 px, two sizes, pHash within 12, unturned): one copy pair verified (seed 7's watermarked smiley) and no
# look-alike; under 100 px (3,753, 5,146 and 4,168 pairs) no copy and two look-alikes (two 50-px star rings of other
# point counts; a 64-px folder against the same folder with an emblem).
OVERLAY_MIN_OWN_SIDE = 100


def small_own_size_side(pair: PendingPair) -> int | None:
    """The side at which to try the overlay again for a pair whose smaller picture is at or under the working size
    (``own_size_side`` leaves it): that picture's long side when it is OVERLAY_MIN_OWN_SIDE or more and the other
    picture's is larger; None otherwise."""
    sides = _long_sides(pair)
    if sides is None:
        return None
    long_a, long_b = sides
    side = min(long_a, long_b)
    return side if long_a != long_b and OVERLAY_MIN_OWN_SIDE <= side <= verify.GEOMETRY_SIDE else None


def closest_distance(pair: PendingPair) -> int:
    """The pair's smaller distance: its pHash distance or its variant's (as verify_pairs' closest). A keeper
    pair through a member or a keypoints pair stores a transform_distance of 0 that measures nothing."""
    if pair.transform in (LINKED, KEYPOINTS, CROP_WINDOW) or pair.transform_distance is None:
        return pair.distance
    return min(pair.distance, pair.transform_distance)


def routed_transform(pair: PendingPair) -> str | None:
    """The transform whose checks by pixels the pair gets: its own, except for a keypoints pair the embedding
    found too, which gets an embedding neighbour's (None).

    dbdedup.match_keypoints (sql/keypoints.sql) gives an embedding neighbour it finds the transform 'keypoints'
    (its signatures must not refuse it, nor a weak similarity: geometry may align a crop), and keeps a pHash pair
    within the match threshold, or a variant's pair, as it was. So a keypoints pair with a similarity is one the
    embedding found: the routes such a neighbour gets that a pair of keys alone does not (the dense alignment,
    the window, the frame, the overlay) are tried for it too, or `load --keypoints` would lose the copies they
    verify (a flat photo and its copy in a white border: too few keypoints to align, where the embedding's pair is
    verified `dense`). Not below GEOMETRY_MIN_SIMILARITY, which refuses an embedding neighbour before any check.
    (A pHash pair found again by the keys keeps its own transform, so needs nothing here.) A pair the keys alone
    found keeps their routes only: among look-alikes they are many, and each route more costs time and risks
    precision."""
    if pair.transform == KEYPOINTS and pair.similarity is not None \
            and pair.similarity >= verify.GEOMETRY_MIN_SIMILARITY:
        return None
    return pair.transform


def window_candidate(pair: PendingPair) -> bool:
    """Whether a pair the keypoints could not align is tried as a picture and a window of it
    (``verify.window_match``): a keeper pair (proposed through a member, a near neighbour or the
    keeper's crop windows), a crop window pair or an embedding neighbour (a keypoints pair too, when the
    embedding found it: ``routed_transform``), not a pair only the pHash or a variant found. (On the
    accuracy set the pHash's flat pairs were 3 in 4 of those no_geometry and brought 9 of the 207 copy pairs
    verified so; a variant's pair has its orientation, which the window does not try.)"""
    transform = routed_transform(pair)
    return transform in (LINKED, CROP_WINDOW) or (transform is None and pair.similarity is not None)


def dense_candidate(pair: PendingPair, orientation: str | None) -> bool:
    """Whether a pair the keypoints could not align (the caller asks only when either picture has few
    keypoints: a flat picture) is worth aligning by its pixels: an unturned pair, found by its pHash or
    its embedding, or a keeper pair through a member. Measured on the accuracy set's pairs that ended
    no_geometry (session 14): of 1,124 copies and 3,000 sampled look-alikes, the dense verdict verifies
    229 copies and none of the look-alikes where either picture has fewer than DENSE_MAX_KEYPOINTS
    keypoints (378 copies and 8 look-alikes without that bound); 228 of those copies had been left
    out by the narrower choice before (an embedding neighbour of similarity 0.92, or an aligned pair
    whose signatures agree in everything but the 16x16 detail or whose structure check failed). A keypoints
    pair the embedding found too is such a neighbour (``routed_transform``); one the keys alone found is not."""
    return routed_transform(pair) in (None, LINKED) and orientation in (None, "identity")


def aligned_verdict(a: verify.Features, b: verify.Features, orientation: str, closest: int) -> verify.Verdict | None:
    """The verdict for an aligned pair from its two signatures, as the SQL step gives it
    (dbdedup.verify_pairs): 'signature' when every measure is within its limit; 'colour' when
    the colours are apart and that settles it (one framing, colours close enough that aligning
    again would not change them, or too far for any edit: layouts beyond HOPELESS, a spread or chroma
    ratio beyond HOPELESS_GAIN, a greyscale picture beyond HOPELESS_GREY_LIGHT from a colour one);
    None when the pair needs the geometric check (never settled by the layout or the detail alone: a
    copy turned by a few degrees or cropped a little differs in both until it is aligned)."""
    if min(a.quality, b.quality) < verify.MIN_QUALITY:
        return verify.Verdict(False, 0.0, "low_quality")
    d = verify.compare_signatures(verify.orient_signature(a.signature, orientation), b.signature)
    agreed = verify.agreement_verdict(d, closest)
    if agreed is not None:
        return agreed
    score = max(0.0, 1.0 - d.worst)
    if (d.chroma is not None and d.chroma > verify.MAX_CHROMA) or \
            (d.grey_light is not None and d.grey_light > verify.MAX_GREY_LIGHT) or \
            d.gain > d.gain_limit:
        if closest >= verify.SAME_FRAMING and verify.SETTLED < d.worst <= verify.HOPELESS and d.gain <= verify.HOPELESS_GAIN \
                and (d.grey_light is None or d.grey_light <= verify.HOPELESS_GREY_LIGHT):
            return None
        return verify.Verdict(False, score, "colour")
    return None


def converted_candidate(a: verify.Features, b: verify.Features, orientation: str, closest: int) -> bool:
    """Whether an aligned pair may be a greyscale picture and its colour original, whatever their signatures say
    of the colours (``verify.converted_verdict`` decides by the pixels): one greyscale and one in colour, the
    greyscale one's lightness within MAX_GREY_LIGHT of the other's conversion (cell by cell), or their lightness
    layouts and detail within an aligned pair's limits (a saturated picture's L* layout is not its conversion's;
    cells that mix two colours convert apart). dbdedup.verify_pairs leaves such pairs pending."""
    d = verify.compare_signatures(verify.orient_signature(a.signature, orientation), b.signature)
    return d.grey_light is not None and (
        d.grey_light <= verify.MAX_GREY_LIGHT
        or (d.light <= verify.MAX_LIGHT and d.detail <= verify.detail_limit(closest)))


def _trimmed_signature(pixels: np.ndarray) -> np.ndarray | None:
    """The colour signature of the picture with its uniform border cut off; None when it has none."""
    inner = _trimmed_pixels(pixels)
    return None if inner is None else verify.signature_of_pixels(inner)


def _trimmed_pixels(pixels: np.ndarray) -> np.ndarray | None:
    """The picture's pixels with its uniform border cut off; None when it has none."""
    image = Image.fromarray(pixels, "RGB")
    box = trim_box(image.convert("L"))
    return None if box is None else np.asarray(image.crop(box))


# A picture in a uniform frame (a mat in any colour, a white or black border) against the picture alone,
# when keypoints did not align them (a card, a flat drawing): the frame is cut off as the loader cuts it
# for the trimmed pHash, and ECC aligns the rest onto the other (``verify.dense_match``, which takes up a
# pixel or two of trimming), compared as a dense alignment with the 64x64 structure as well. On the no_geometry
# keeper pairs and trimmed-variant pairs of a cli_score run (session 18, 5,689 pairs): 39 of 151 copy pairs
# verified (framed copies against their keeper, most of them) and none of 3,000 look-alike pairs sampled
# (two framed spirographs against other spirographs pass without the 64x64 structure). Only where what the
# frame held has the other picture's aspect: that leaves 726 of 3,000 look-alike pairs to align instead of
# 2,457 (a report's keeper rounds took 50 s longer without it), and 45 of the 279 copy pairs verified
# `dense` among them pass it so. Embedding neighbours too since session 29: of a cli_score run's 4,419 such pairs
# left no_geometry (bench/accuracy/framed_study.py), 65 of the 378 copy pairs verified so and 2 of the 4,041
# look-alike pairs (a star ring in a mat against another ring; one silhouette drawn on two canvases); a pair only
# the pHash found is not tried (6 copy pairs of 68 and a card of another deck: its margin cut off, the other's
# corner ornaments are too thin for the structure). An embedding neighbour is tried only when the loader trimmed a
# border off either picture (or recorded none of its variants): the others' files stay unread when the keypoints
# come from the store, and on both draws of the set no pair verified `dense` without a recorded border needed it.
FRAMED_MAX_ASPECT = 0.06  # |log| of the ratio of the trimmed side's aspect to the other's (a few pixels at 256)
# What a mat held is the picture reduced (a 20% mat: to about 0.7 of the working size), so its sharp edges (a card's
# pips, its rank) are resampled apart from the other's more than an unframed copy's: a card in a wide mat against its
# 2x enlargement, aligned at 0.99 and agreeing in colour and in structure at 32 and 64 pixels, was 0.53 apart in the
# 16x16 detail, over DENSE_MAX_DETAIL. On two cli_score runs' pairs left no_geometry that the framed check is tried
# for (session 30: 10,117 on the accuracy set, 9,749 on the seed-6 draw), the framed alignments that agreed in all but
# the detail were 29 copy pairs (detail 0.51-0.69 for 14 of them) and no look-alike pair: the structure bars keep
# those out, and the detail is held to this looser bound.
FRAMED_MAX_DETAIL = 0.7
# ECC compares the two in the frame of what the frame held (the other picture warped onto it). When the other picture
# is itself a crop, a smaller field of view, its warp leaves part of that frame uncovered, and the colours and the
# detail disagree there though the alignment is right: a copy in a wide mat against a 10% crop, aligned at 0.94-0.99,
# refused `no_geometry`, and verified when the mat's picture is warped onto the crop instead. Swapping the sides of a
# seed-5 run's 17,695 pairs refused `no_geometry` (session 38) verified 19 copy pairs and 2 look-alike pairs so, 17
# copy pairs and one look-alike (a two of diamonds against a two of spades cropped by 10%) after an alignment of 0.85
# or more the first way; such a pair is tried in the other picture's frame too. (Of a sample's 827 framed alignments,
# 263 that did not verify reached 0.85: a third of the framed check's time more, where trying every pair the other
# way would double it.)
FRAMED_OTHER_FRAME_MIN_CORRELATION = 0.85
# The same for the turned route (``turned_verdict``: a keeper pair ECC aligns from the rings' turn), after an alignment
# that would verify an unturned pair (verify.DENSE_MIN_CORRELATION): on a seed-5 run's 5,309 keeper pairs refused
# no_geometry or structure or verified dense, replayed (session 38), the other frame verified 3 copy pairs (a 50% crop
# and two turns of 20 degrees against their 2x keepers, first aligned at 0.976-0.992) and, after a first alignment of
# 0.95, one look-alike (two states' outline maps); from 0.97 the copies only.
TURNED_OTHER_FRAME_MIN_CORRELATION = verify.DENSE_MIN_CORRELATION


def framed_candidate(pair: PendingPair) -> bool:
    """Whether a no_geometry pair is tried as a picture and its framed copy: a keeper pair (no signal
    found it), one found through a trimmed variant, or an embedding neighbour (a mat keeps the picture's
    look: the keeper pair of a framed copy is often found so first, and is then not proposed again as a
    keeper pair) when the loader trimmed a border off either picture or did not record it (the others
    keep their files unread when their keypoints come from the store; a keypoints pair the embedding found
    too is such a neighbour: ``routed_transform``)."""
    if pair.transform == LINKED or (pair.transform or "").startswith("trim"):
        return True
    return window_candidate(pair) and pair.may_be_framed


def reframed_candidate(pair: PendingPair, mirror: str) -> bool:
    """Whether a pair the keypoints aligned and refused for its structure is tried as a picture and its framed copy
    (``framed_verdict``): unmirrored, and the loader trimmed a border off either picture (or recorded none).

    When a framed picture's keypoints all sit in one part of it (the lettering of a banner), RANSAC accepts an
    alignment a pixel or two and a few tenths of a degree off (the accuracy set's seed-6 banner `o0238` against its
    2x keeper: 28 inliers, translation 1.5 px and turn 0.4 degrees off the frame's), which the 32x32 and 64x64
    structure of the whole overlap then refuses (0.36 and 0.17), and ECC from what the frame held does not.
    Replayed on two cli_score runs' pairs refused for structure (session 34, 243 on seed 5 and 283 on seed 6), the
    framed check verified 4 and 9 unmirrored copy pairs (two framed copies' pairs with their 2x keeper among them)
    and no unmirrored look-alike pair; under a mirror it verified two look-alike pairs (a dreidel against its
    mirrored stamp: it does not ask for the region a mirror redraws) and two copy pairs."""
    return mirror == "identity" and pair.may_be_framed


def framed_verdict(a: verify.Features, b: verify.Features, pixels_a: np.ndarray, pixels_b: np.ndarray,
                   min_structure: float) -> verify.Verdict | None:
    """The verdict of the first side whose frame, cut off, leaves the other picture: 'dense' when ECC aligns
    the other picture onto the trimmed side (or, after an alignment to FRAMED_OTHER_FRAME_MIN_CORRELATION that did
    not agree, the trimmed side onto the other, only to verify) and they agree (``verify.dense_verdict`` with the
    64x64 structure, the detail to FRAMED_MAX_DETAIL), its rejection when it aligned but disagreed; None when
    neither side has a frame or neither aligned."""
    refused = None
    for inner, other in ((_trimmed_pixels(pixels_a), pixels_b), (pixels_a, _trimmed_pixels(pixels_b))):
        if inner is None or other is None or min(inner.shape[:2]) < verify.GRID:
            continue
        if abs(math.log(inner.shape[1] * other.shape[0] / (inner.shape[0] * other.shape[1]))) > FRAMED_MAX_ASPECT:
            continue  # (what the frame held has another shape than the other picture: no ECC for it)
        verdict = dense_in_either_frame(a, b, inner, other, FRAMED_OTHER_FRAME_MIN_CORRELATION, {"fine": True},
                                        {"min_structure": min_structure, "max_detail": FRAMED_MAX_DETAIL})
        if verdict.verified:
            return verdict
        if verdict.reason != "no_geometry":
            refused = verdict
    return refused


def turned_verdict(a: verify.Features, b: verify.Features, pixels_a: np.ndarray, pixels_b: np.ndarray,
                   max_turn: float | None, min_structure: float) -> verify.Verdict:
    """The verdict of a pair aligned by ECC from the turn its rings suggest (``verify.dense_match`` with ``turned``,
    up to ``max_turn`` degrees; ``verify.DENSE_TURNED_MIN_CORRELATION``): image_b warped onto image_a, and after an
    alignment to TURNED_OTHER_FRAME_MIN_CORRELATION that did not agree, image_a onto image_b, only to verify."""
    return dense_in_either_frame(
        a, b, pixels_a, pixels_b, TURNED_OTHER_FRAME_MIN_CORRELATION, {"turned": True, "max_turn": max_turn},
        {"min_structure": min_structure, "min_correlation": verify.DENSE_TURNED_MIN_CORRELATION})


def dense_in_either_frame(a: verify.Features, b: verify.Features, pixels_a: np.ndarray, pixels_b: np.ndarray,
                          min_other_frame: float, match_options: dict, verdict_options: dict) -> verify.Verdict:
    """``verify.dense_verdict`` of ``pixels_b`` aligned onto ``pixels_a`` by ``verify.dense_match`` (with
    ``match_options`` and ``verdict_options``); when that aligned to ``min_other_frame`` or more and was refused
    no_geometry (apart perhaps only where image_b, a crop, does not reach: FRAMED_OTHER_FRAME_MIN_CORRELATION),
    the same with image_a aligned onto image_b, taken only when it verifies."""
    # (an alignment is compared only when it correlates enough for a verdict or for the other frame)
    min_correlation = verdict_options.get("min_correlation", verify.DENSE_MIN_CORRELATION)
    match = verify.dense_match(pixels_a, pixels_b, **match_options, compare_from=min(min_correlation, min_other_frame))
    verdict = verify.dense_verdict(a, b, match, **verdict_options)
    if verdict.reason == "no_geometry" and match.colour is not None and match.correlation >= min_other_frame:
        again = verify.dense_verdict(b, a, verify.dense_match(pixels_b, pixels_a, **match_options,
                                                              compare_from=min_correlation), **verdict_options)
        if again.verified:
            return again
    return verdict


def trim_orientation(transform: str) -> str:
    """The orientation of a trimmed-variant pair's transform ('trim' -> identity, 'trim+flip_h' -> flip_h)."""
    return transform.partition("+")[2] or "identity"


def trimmed_verdict(a: verify.Features, b: verify.Features, pixels_a: np.ndarray, pixels_b: np.ndarray,
                    transform: str, closest: int | None = None) -> verify.Verdict | None:
    """The verdict for a pair found through a border-trimmed variant ('trim', 'trim+flip_h', ...):
    the pictures with their uniform borders cut off (as the loader cuts them for the trimmed
    pHash), compared by colour signature in the variant's orientation; 'signature' when they
    agree, None when the geometric check must decide. The variant matched one image's trimmed
    pHash against the other's own, and the name does not say which was trimmed (a picture on a
    white margin trims too): each side is tried trimmed against the other whole, then both."""
    orientation = trim_orientation(transform)
    if orientation not in verify.ORIENTATIONS:
        return None
    trimmed_a, trimmed_b = _trimmed_signature(pixels_a), _trimmed_signature(pixels_b)
    for x, y in ((trimmed_a, b.signature), (a.signature, trimmed_b), (trimmed_a, trimmed_b)):
        if x is None or y is None:
            continue
        verdict = verify.signature_verdict(verify.Features(a.quality, x), verify.Features(b.quality, y), orientation,
                                           closest)
        if verdict is not None:
            return verdict
    return None


def unless_redrawn(verdict: verify.Verdict, sides_a: list[np.ndarray], sides_b: list[np.ndarray],
                   orientation: str) -> verify.Verdict:
    """``verdict``, or a refusal ('structure') when it verified two pictures under a flip or a turn whose least
    alike region differs (``verify.region_of_pixels`` below MIN_ORIENTED_REGION_PIXELS): a mirror drawn again, its
    lettering left readable. ``sides_a`` and ``sides_b``: each picture's pixels as it may be compared (whole, or
    trimmed too), the region taken of the two as they compare best."""
    if not verdict.verified or orientation == "identity" or orientation not in verify.ORIENTATIONS:
        return verdict
    region = max(verify.region_of_pixels(verify.orient_pixels(x, orientation), y) for x in sides_a for y in sides_b)
    return verdict if region >= verify.MIN_ORIENTED_REGION_PIXELS else verify.Verdict(False, verdict.score, "structure")


def _whole_or_trimmed(pixels: np.ndarray) -> list[np.ndarray]:
    """The picture trimmed of its uniform border, then whole; whole only when it has none."""
    trimmed = _trimmed_pixels(pixels)
    return [pixels] if trimmed is None else [trimmed, pixels]


def orientation_of(pair: PendingPair) -> str | None:
    """The orientation turning image_a into image_b when the pair is aligned (a close pHash, or a
    close orientation variant), else None. A pair found through a trimmed variant is not aligned:
    a frame differs from no frame, so its whole signatures cannot reject it (as in verify_pairs)."""
    if (pair.transform or "").startswith("trim"):
        return None
    if pair.transform in verify.ORIENTATIONS and pair.transform_distance is not None \
            and pair.transform_distance <= verify.ALIGNED_VARIANT and pair.transform_distance < pair.distance:
        return pair.transform
    if pair.distance <= verify.ALIGNED_DISTANCE:
        return "identity"
    return None


def geometry_orientation(pair: PendingPair) -> str:
    """The mirror to apply to image_a before matching keypoints ('identity' when none)."""
    base = (pair.transform or "").split("+")[-1]
    return base if base in _MIRRORS else "identity"


# ---------------------------------------------------------------- worker processes

_checker: PairChecker | None = None


def _init_worker(parent_pid: int, inherited_fds: Sequence[int], store_path: str | None = None,
                 store_budget: int = 0) -> None:
    global _checker
    worker_pool.start_worker(parent_pid, inherited_fds)
    use_own_pixel_limit()  # the files are the ones a load accepted (size and mtime checked)
    limit_blas_threads()
    if "cv2" not in sys.modules:
        # one process per core already: OpenCV's own threads would only compete. Only when this
        # worker imports OpenCV itself: setNumThreads on a thread pool forked from a parent that
        # had used it blocks forever.
        try:
            import cv2

            cv2.setNumThreads(1)
        except ImportError:
            pass
    _checker = PairChecker(store=StoreAccess(store_path, store_budget))


def _check_chunk(pairs: list[PendingPair]) -> tuple[list[tuple], list[tuple], int]:
    assert _checker is not None
    read_before = _checker.images_read
    results = _checker.check(pairs)
    backfills, _checker.backfills = _checker.backfills, []
    return results, backfills, _checker.images_read - read_before


def _new_pool(workers: int, conn: psycopg.Connection, store_path: str | None = None,
              store_budget: int = 0) -> worker_pool.WorkerPool:
    return worker_pool.WorkerPool(workers, _init_worker, (os.getpid(), (conn.fileno(),), store_path, store_budget))


class SharedWorkers:
    """Worker processes kept from one run of ``verify_pending_pairs`` to the next (the batches of a
    plan, verify_plan): the pool's start-up and the images its workers hold are not paid again for
    each batch. A context manager; the pool is stopped at its end."""

    def __init__(self, conn: psycopg.Connection, workers: int, keypoints: KeypointStore):
        self.conn, self.workers, self.keypoints = conn, workers, keypoints
        self.idle: worker_pool.WorkerPool | None = None

    def pool(self, workers: int) -> worker_pool.WorkerPool:
        """The kept pool when it is free and of this size, else a new one (the first run, or a run after
        one that stopped on an error and terminated its pool)."""
        if workers == self.workers and self.idle is not None:
            pool, self.idle = self.idle, None
            return pool
        store_path = self.keypoints.open()
        return _new_pool(workers, self.conn, store_path, self.keypoints.worker_budget(self.workers))

    def give_back(self, pool: worker_pool.WorkerPool) -> None:
        self.idle = pool

    def __enter__(self) -> "SharedWorkers":
        return self

    def __exit__(self, *exc) -> None:
        pool, self.idle = self.idle, None
        if pool is not None:
            pool.shutdown()


# ---------------------------------------------------------------- the run


def _queries() -> dict[str, str]:
    return named_queries("queries/verify_workers.sql")


def stored_pairs_query(where: str) -> str:
    """The pending-pairs query's rows (every column ``PendingPair.from_row`` takes), unordered, for the pairs
    ``where`` selects in place of the pending ones (``p`` the pair, ``a`` and ``b`` its images), whatever
    their verdict: to replay stored pairs as the workers see them."""
    select = _queries()["pending_pairs"].split("WITH pending AS MATERIALIZED (")[1].split("\n)\nSELECT")[0]
    if "WHERE p.verified IS NULL" not in select:
        raise ValueError("the pending_pairs query no longer filters on p.verified IS NULL")
    return select.replace("WHERE p.verified IS NULL", f"WHERE {where}")


def _chunks(conn: psycopg.Connection, cursor: psycopg.ServerCursor, total: int, workers: int):
    """``family_chunks`` of the ``total`` pending pairs the cursor gives, for ``workers`` workers."""
    def pairs():
        while True:
            with conn.transaction():
                rows = cursor.fetchmany(FETCH_ROWS)
            if not rows:
                return
            yield from (PendingPair.from_row(row) for row in rows)

    yield from family_chunks(pairs(), total, workers)


def family_chunks(pairs: Iterable[PendingPair], total: int | None = None,
                  workers: int = 1) -> Iterator[list[PendingPair]]:
    """Consecutive pairs in chunks of CHUNK_PAIRS, or more while the next pair shares an image with the
    chunk (up to MAX_CHUNK_PAIRS): in the planned order, a family's pairs stay in one chunk. Given the
    ``total`` number of pairs, no chunk takes more than the pairs not yet handed out over GUIDED_SHARES
    chunks for each of the ``workers`` (at least MIN_GUIDED_PAIRS), so that the workers end together."""
    chunk: list[PendingPair] = []
    images: set[int] = set()
    handed_out = 0
    limit = MAX_CHUNK_PAIRS

    def guided_limit() -> int:
        if total is None:
            return MAX_CHUNK_PAIRS
        share = -(-(total - handed_out) // (GUIDED_SHARES * max(1, workers)))
        return min(MAX_CHUNK_PAIRS, max(MIN_GUIDED_PAIRS, share))

    for pair in pairs:
        if len(chunk) >= limit or (
                len(chunk) >= min(CHUNK_PAIRS, limit) and pair.image_a not in images and pair.image_b not in images):
            yield chunk
            handed_out += len(chunk)
            chunk, images = [], set()
        if not chunk:
            limit = guided_limit()
        chunk.append(pair)
        images.update((pair.image_a, pair.image_b))
    if chunk:
        yield chunk


def locality_order(image_a: np.ndarray, image_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An order of the images of a graph of pairs (the edges ``image_a[k]``-``image_b[k]``) in
    which the images each pair joins sit close together: (image ids, their positions 0..n-1).

    Reverse Cuthill-McKee keeps the pairs of a connected family within a narrow band of
    positions, so pairs visited in order of their images' positions reuse the images a worker
    has just decoded instead of reading each one again for every pair it is in."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    ids, index = np.unique(np.concatenate([image_a, image_b]), return_inverse=True)
    n, m = len(ids), len(image_a)
    if n == 0:
        return ids, np.zeros(0, dtype=np.int64)
    rows, cols = index[:m].astype(np.int32), index[m:].astype(np.int32)
    graph = coo_matrix((np.ones(2 * m, dtype=np.int8), (np.concatenate([rows, cols]), np.concatenate([cols, rows]))),
                       shape=(n, n)).tocsr()
    permutation = reverse_cuthill_mckee(graph, symmetric_mode=True)
    positions = np.empty(n, dtype=np.int64)
    positions[permutation] = np.arange(n)
    return ids, positions


def plan_order(conn: psycopg.Connection, q: dict[str, str]) -> int:
    """Fill the session's temporary table dbdedup_verify_order (created by the ``create_order``
    query of ``q``) with locality_order's positions of the pending pairs' images, which the
    ``pending_pairs`` query orders by; returns how many images it placed."""
    image_a, image_b = [], []
    with conn.transaction():
        with conn.cursor("dbdedup_verify_edges") as cursor:
            cursor.execute(q["pending_edges"])
            while rows := cursor.fetchmany(EDGE_ROWS):
                edges = np.array(rows, dtype=np.int64).reshape(-1, 2)
                image_a.append(edges[:, 0])
                image_b.append(edges[:, 1])
    empty = np.zeros(0, dtype=np.int64)
    image_a = np.concatenate(image_a) if image_a else empty
    image_b = np.concatenate(image_b) if image_b else empty
    if len(image_a) <= CHUNK_PAIRS:
        # one chunk: one worker checks every pair and keeps every image (CACHED_IMAGES >= 2 x
        # CHUNK_PAIRS), in any order; no graph to plan (scipy's import alone is about 0.5 s)
        ids = np.unique(np.concatenate([image_a, image_b]))
        positions = np.arange(len(ids), dtype=np.int64)
    else:
        ids, positions = locality_order(image_a, image_b)
    with conn.transaction():
        with conn.cursor() as cur:
            cur.execute(q["clear_order"])
            with cur.copy(q["copy_order"]) as copy:
                for image_id, position in zip(ids.tolist(), positions.tolist()):
                    copy.write_row((image_id, position))
            cur.execute(q["analyze_order"])
    return len(ids)


class _Writer:
    """Verdicts and backfilled features, COPYed and applied once per batch, each batch committed."""

    def __init__(self, conn: psycopg.Connection, summary: VerifySummary, progress: VerifyProgress):
        self.conn = conn
        self.q = _queries()
        self.summary = summary
        self.progress = progress
        self.results: list[tuple] = []
        self.features: list[tuple] = []
        self.reasons: Counter[str] = Counter()
        self.last = time.monotonic()

    def add(self, results: list[tuple], features: list[tuple]) -> None:
        self.results.extend(results)
        self.features.extend(features)

    def write_if_due(self, force: bool = False) -> None:
        if self.results and (force or len(self.results) >= WRITE_ROWS or time.monotonic() - self.last >= WRITE_SECONDS):
            self.write()

    def write(self) -> None:
        results, self.results = self.results, []
        features, self.features = self.features, []
        with self.conn.transaction():
            with self.conn.cursor() as cur:
                with cur.copy(self.q["copy_results"]) as copy:
                    for row in results:
                        copy.write_row(row)
                if features:
                    with cur.copy(self.q["copy_features"]) as copy:
                        for row in features:
                            copy.write_row(row)
                cur.execute(self.q["apply_results"])
                if features:
                    cur.execute(self.q["apply_features"])
                    self.summary.backfilled += cur.rowcount
                cur.execute(self.q["clear_temp_tables"])
        for _, _, _, verified, _, reason in results:
            self.reasons[reason] += 1
            if reason.startswith("error:"):
                self.summary.errors += 1
            elif verified:
                self.summary.verified += 1
            else:
                self.summary.rejected += 1
        self.last = time.monotonic()
        self.progress.pairs_done(self.summary.done, self.summary.errors)


def take_verify_lock(conn: psycopg.Connection, lock_wait: float | None,
                     on_wait: Callable[[str], None] | None) -> None:
    """Commit the caller's open transaction, then take the verification lock (one run at a time per
    database), waiting up to ``lock_wait`` seconds and calling ``on_wait(message)`` once if it is held."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        # each batch must be a transaction of its own (not a savepoint in the caller's), or a kill
        # would lose every batch and not only the last one
        conn.commit()

    def tell(holder: str) -> None:
        if on_wait is not None:
            on_wait(f"waiting for the verification run of {holder}")

    locks.wait_for_lock(conn, locks.VERIFY_LOCK_KEY, "check pairs by their pixels", what="the verification lock",
                        wait=lock_wait, on_wait=tell)


def verify_pending_pairs(conn: psycopg.Connection, *, workers: int | None = None,
                         progress: VerifyProgress | None = None, lock_wait: float | None = None,
                         on_wait: Callable[[str], None] | None = None,
                         keypoints: KeypointStore | None = None,
                         shared: SharedWorkers | None = None) -> VerifySummary:
    """Give every pending pair of dbdedup.pairs (``verified IS NULL``) its verdict by the pixels of
    its two files, in ``workers`` processes (default: all cores), and return a summary.

    Each pair gets ``verified``, ``verify_score`` and ``verify_reason``: 'exact', 'signature' or
    'geometry' (or 'dense': a flat picture aligned by its pixels; 'tone': one brightness or contrast edit maps
    the pixels of one onto the other; 'overlay': one is the other under a see-through watermark; 'reencoded': one
    is a JPEG saved at a low quality that the other, compressed the same way, comes out as; 'converted': one is
    greyscale and the other's greyscale conversion comes out as its pixels; 'pixels': images
    with no hash signal of their own, the same pixels at one size) when the two are
    the same picture; a rejection's reason ('colour', 'detail',
    'structure', 'turned', 'low_quality', 'no_geometry', 'no_overlap', 'no_signature'); or 'error: <why>' (verified
    false) when a file is gone, changed since it was loaded (size or mtime), or cannot be
    decoded. Only the paths the loader recorded are read. Images without a stored quality or
    colour signature get them from this read. Then the signature-verified pairs not measured yet get
    the structure check (``structure_check.check_structure``) first: ``structure_failed`` counts the pairs it
    failed, which this run then checks by their pixels, as it checks the pairs rejected for colour that it
    found close to one tone edit. Commits once per batch of verdicts, so a run that
    is stopped keeps what it wrote and the next run does the rest. One run at a time per database:
    waits up to ``lock_wait`` seconds (``locks.DEFAULT_LOCK_WAIT``) for another one, calling
    ``on_wait(message)`` once, then raises DbdedupError naming it.

    The workers keep the keypoints they find in ``keypoints`` (a ``keypoint_store.KeypointStore``: pass
    one to share them with later runs of the same report, such as the keeper rounds); by default a store
    of this run's own, removed at its end. With ``shared`` (a ``SharedWorkers`` of the same store), the
    run uses its worker processes and leaves them running.
    """
    if keypoints is None:
        with KeypointStore() as store:
            return verify_pending_pairs(conn, workers=workers, progress=progress, lock_wait=lock_wait,
                                        on_wait=on_wait, keypoints=store)
    started = time.monotonic()
    workers = max(1, int(workers or default_workers()))
    progress = progress or VerifyProgress()
    q = _queries()
    take_verify_lock(conn, lock_wait, on_wait)
    summary = VerifySummary(workers=workers)
    cursor = application_name = None
    try:
        application_name = locks.set_application_name(conn, "dbdedup verify")
        with conn.transaction():
            for name in ("create_results", "create_features", "create_order", "clear_temp_tables"):
                conn.execute(q[name])
        # Pairs verified by their colour signatures and not measured yet (by a refresh() in SQL; in a
        # second pass, by this run's workers) get the structure check first: those it fails are pending
        # again, for the geometric check of this run (which never verifies them by their signatures).
        for first_pass in (True, False):
            checked = check_structure(conn, workers)
            summary.structure_failed += checked.failed
            summary.tone_candidates += checked.tone_candidates
            summary.tones_apart += checked.tones_apart
            summary.overlay_candidates += checked.overlay_candidates
            with conn.transaction():
                pending = conn.execute(q["count_pending"]).fetchone()[0]
            summary.pending += pending
            if pending or first_pass:
                progress.pairs_found(summary.pending)
            if not pending:
                break
            if first_pass:
                plan_order(conn, q)  # (a pair pending after the plan comes last)
            cursor = conn.cursor("dbdedup_verify_pending", withhold=True)
            with conn.transaction():
                cursor.execute(q["pending_pairs"])
            if shared is not None:
                _run(conn, cursor, shared.workers, summary, progress, shared, pending)
            else:
                with SharedWorkers(conn, workers, keypoints) as own:
                    _run(conn, cursor, workers, summary, progress, own, pending)
            with conn.transaction():
                cursor.close()
            cursor = None
    finally:
        if cursor is not None and not conn.closed:
            try:
                with conn.transaction():
                    cursor.close()
            except psycopg.Error:
                pass
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            locks.release(conn, application_name, key=locks.VERIFY_LOCK_KEY)
    summary.seconds = time.monotonic() - started
    return summary


def _run(conn: psycopg.Connection, cursor: psycopg.ServerCursor, workers: int, summary: VerifySummary,
         progress: VerifyProgress, shared: SharedWorkers, pending: int) -> None:
    writer = _Writer(conn, summary, progress)

    def take(result: tuple[list[tuple], list[tuple], int]) -> None:
        results, features, read = result
        summary.images_read += read
        writer.add(results, features)

    runner = worker_pool.CrashTolerantPool(
        shared.pool, workers, _check_chunk, take,
        lambda pair: ([(*pair.key, False, 0.0, "error: worker crashed")], [], 0), writer.write_if_due,
        CHUNKS_IN_FLIGHT_PER_WORKER)
    try:
        for chunk in _chunks(conn, cursor, pending, workers):
            runner.submit(chunk)
            runner.collect(block=False)
        shared.give_back(runner.drain())
    except BaseException as exc:
        runner.abandon()
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, SIGTERM: keep the verdicts already in hand
            writer.write_if_due(force=True)
        raise
    writer.write_if_due(force=True)
    reasons = Counter(summary.reasons) + writer.reasons  # (a second pass adds to the first's)
    summary.reasons = dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0])))

