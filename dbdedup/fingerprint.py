"""What dbdedup computes for one image file: the record a load worker hands to the loader.

One read of the file's bytes gives the SHA-256 and the decode (``dbdedup.decode``); the
decoded working image gives the hashes (``dbdedup.hashes``), optionally the pHash of its
other orientations and of its border-trimmed crop (``dbdedup.variants``), a raw
embedding descriptor (``dbdedup.embedding``) and the verification signals: the hash
quality and the colour signature (``dbdedup.verify``), and when asked the keypoint keys
(``dbdedup.keypoints``). ``file_records`` does this for a chunk of files, hashing images of one
shape together. Pure functions, no database.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from typing import Union

import numpy as np

from .crop_windows import crop_windows_of_thumbnails
from .decode import DEFAULT_MAX_PIXELS, DecodedImage, ImageError, decode_colour, decode_image
from .embedding import Embedder, raw_descriptors
from .hashes import Hashes, hashes_and_dct_block, hashes_of_stack, stackable
from .keypoints import WORKING_SIDE, stored_keys
from .resample import grey_pixels
from .file_access import NotARegularFile, open_regular_file
from .turn_signature import turn_signatures_of_thumbnails
from .variants import stored_variants, stored_variants_many
from .verify import colour_signature, colour_signatures, qualities, quality, structure_thumbnail

# Files larger than this are hashed by streaming and decoded from the file instead
# of being held in memory whole.
IN_MEMORY_LIMIT = 256 * 1024 * 1024

PathLike = Union[str, bytes, os.PathLike]

# An image smaller than this on a side gets no colour signature: its few pixels, stretched over
# the signature's cells, are no colour layout to compare (it then matches only as an exact copy).
MIN_SIGNATURE_SIDE = 4


@dataclass(frozen=True)
class Extras:
    """What a load computes from the decode besides the hashes (each optional).

    ``orientations``: the pHash of the 7 other orientations and of the image with uniform
    borders trimmed (``dbdedup.variants``); ``embedder``: an ``dbdedup.embedding.Embedder``
    whose raw descriptor is stored for the embedding vectors; ``signals``: the hash quality
    and colour signature that verification compares (``dbdedup.verify``; JPEGs are then
    decoded in colour); ``keypoints``: the ORB keypoint keys (``dbdedup.keypoints``) that propose
    crops and rotations as candidate pairs, found on the decode before it is reduced for hashing.
    """

    orientations: bool = False
    embedder: Embedder | None = None
    signals: bool = True
    keypoints: bool = False


@dataclass(frozen=True, slots=True)
class FileRecord:
    """Everything dbdedup stores about one file: its fingerprint, or why it has none.

    A loaded image has ``reason`` None and every image field set (``phash_variants`` when
    orientations were asked for; ``embedder``/``raw_descriptor`` when an embedder was given
    and described it; ``quality`` and ``colour_signature`` when signals were asked for, or
    ``signature_error`` saying why there is no signature). A file that could not be loaded has
    ``reason`` (a key of ``decode.REASONS``) and ``detail``, its image fields None; ``size_bytes``
    and ``mtime_ns`` are 0 and ``device``/``inode`` None when not even its stat was readable.
    """

    path: bytes
    size_bytes: int
    mtime_ns: int
    device: int | None
    inode: int | None
    sha256: bytes | None = None
    format: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    phash: int | None = None
    dhash: int | None = None
    ahash: int | None = None
    phash_variants: list[int] | None = None  # 7 orientations, then trimmed + its 7 (when trimmed)
    embedder: str | None = None
    raw_descriptor: bytes | None = None
    quality: int | None = None
    colour_signature: bytes | None = None  # verify.SIGNATURE_LENGTH float32 values, native byte order
    signature_error: str | None = None
    structure: bytes | None = None  # verify.structure_thumbnail, stored with the colour signature
    # turn_signature.turn_signatures of the structure thumbnail (float32, native byte order), when an
    # embedder described the image: stored beside its embedding
    turn_signature: bytes | None = None
    # crop_windows.window_phashes of the structure thumbnail (empty when it has none of 64x64), likewise
    crop_windows: list[int] | None = None
    reason: str | None = None
    detail: str | None = None
    keypoint_keys: np.ndarray | None = None  # int32 keys, empty when no corners; None when not asked or failed


def _read_file(path: PathLike) -> tuple[bytes | None, bytes, os.stat_result]:
    """Read a file's bytes (or only hash them when huge); returns (data or None, sha256 digest, stat)."""
    try:
        with open_regular_file(path) as handle:
            st = os.fstat(handle.fileno())
            if st.st_size > IN_MEMORY_LIMIT:
                digest = hashlib.sha256()
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
                return None, digest.digest(), st
            data = handle.read()
            return data, hashlib.sha256(data).digest(), st
    except NotARegularFile as exc:  # swapped in since the walk saw a file
        raise ImageError("not_a_file", exc.strerror) from exc
    except PermissionError as exc:
        raise ImageError("permission_denied", f"cannot read the file: {exc.strerror}") from exc
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise ImageError("broken_symlink", "the symbolic link's target does not exist") from exc
        raise ImageError("unreadable", "the file disappeared while loading") from exc
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            raise ImageError("symlink_loop", "the symbolic link leads back to itself") from exc
        raise ImageError("unreadable", f"read error: {exc.strerror or exc}") from exc


def _read_and_decode(path: PathLike, max_pixels: int, extras: Extras | None
                     ) -> tuple[bytes, os.stat_result, DecodedImage, np.ndarray | None]:
    data, digest, st = _read_file(path)
    if st.st_size == 0:
        raise ImageError("empty_file", "the file is empty (0 bytes)")
    wanted = bool(extras and extras.keypoints)

    def decoded_from(source) -> DecodedImage:
        return decode_image(source, max_pixels=max_pixels, colour=bool(extras and extras.signals),
                            detail_side=WORKING_SIDE if wanted else 0)

    if data is not None:
        decoded = decoded_from(data)
    else:  # too large to hold: decoded from the file again, which must still be the one hashed
        try:
            with open_regular_file(path) as handle:
                now = os.fstat(handle.fileno())  # (an inode freed may be taken again at once: not by itself)
                if (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) != (st.st_dev, st.st_ino, st.st_size,
                                                                              st.st_mtime_ns):
                    raise ImageError("unreadable", "the file was replaced while loading")
                decoded = decoded_from(handle)
        except NotARegularFile as exc:
            raise ImageError("not_a_file", exc.strerror) from exc
        except OSError as exc:
            raise ImageError("unreadable", f"read error: {exc.strerror or exc}") from exc
    keys = None
    if wanted:
        # now, not with the chunk's hashes: the detail pixels are larger than the rest of the record
        keys = keypoint_keys(decoded, data, max_pixels)
        decoded = replace(decoded, detail=None)
    return digest, st, decoded, keys


def keypoint_keys(decoded: DecodedImage, source, max_pixels: int) -> np.ndarray | None:
    """The keypoint keys of a decoded image (int32, empty when it has no corners); never raises:
    None when they could not be computed (the load goes on, the image just has no keys).

    Found on ``decoded.detail``; a JPEG the hashes' decode drafted below the keypoints' working
    side is drafted again at that side (from the bytes already read): its pixels are not in the
    first decode."""
    try:
        detail = decoded.detail
        if detail is None:
            if not isinstance(source, bytes):
                return None  # a JPEG above IN_MEMORY_LIMIT: not read whole a second time
            detail = decode_colour(source, side=WORKING_SIDE, max_pixels=max_pixels)
        return stored_keys(detail)
    except Exception:
        return None


def verification_signals(decoded: DecodedImage) -> tuple[int | None, np.ndarray | None, str | None]:
    """(hash quality, colour signature, why there is no signature) of a decoded image; never raises.

    The quality is measured on the image the hashes are computed from, the signature on its colour
    twin. A failure of either measure is the image's ``signature_error``: it must not cost the
    file its hashes.
    """
    try:
        measured = quality(decoded.image)
    except Exception as exc:
        return None, None, f"error: quality: {exc.__class__.__name__}: {exc}"[:200]
    if min(decoded.width, decoded.height) < MIN_SIGNATURE_SIDE:
        return measured, None, (f"too_small: {decoded.width}x{decoded.height} pixels, "
                                f"fewer than {MIN_SIGNATURE_SIDE} a side")
    if decoded.colour is None:
        return measured, None, "no_colour: the colour decode failed"
    try:
        signature = colour_signature(decoded.colour)
    except Exception as exc:
        return measured, None, f"error: {exc.__class__.__name__}: {exc}"[:200]
    if not np.isfinite(signature).all():
        return measured, None, "error: the signature has values that are not finite"
    return measured, signature, None


def verification_signals_many(decoded: list[DecodedImage]) -> list[tuple[int | None, np.ndarray | None, str | None]]:
    """``verification_signals`` of each image, measured together (the same values); never raises."""
    try:
        measured = qualities([d.image for d in decoded])
        wanted = [k for k, d in enumerate(decoded)
                  if min(d.width, d.height) >= MIN_SIGNATURE_SIDE and d.colour is not None]
        signatures = colour_signatures([decoded[k].colour for k in wanted]) if wanted else []
        finite = np.isfinite(signatures).all(axis=1) if wanted else []
    except Exception:
        return [verification_signals(d) for d in decoded]  # the same values, and each failure its own
    found = {k: signature for k, signature, ok in zip(wanted, signatures, finite) if ok}
    return [(measured[k], found[k], None) if k in found else verification_signals(d) for k, d in enumerate(decoded)]


_NO_SIGNALS = (None, None, None)


def _record(path: PathLike, digest: bytes, st: os.stat_result, decoded: DecodedImage, hashes: Hashes,
            variants: list[int] | None, embedder: Embedder | None, raw: bytes | None,
            signals: tuple[int | None, np.ndarray | None, str | None] = _NO_SIGNALS,
            keys: np.ndarray | None = None) -> FileRecord:
    measured, signature, why = signals
    structure = None
    if signature is not None:
        # the thumbnail goes with the signature: an image with one and not the other would be
        # fingerprinted again by every load (load.sql, files_to_hash)
        try:
            structure = structure_thumbnail(decoded.image)
        except Exception as exc:
            signature, why = None, f"error: structure: {exc.__class__.__name__}: {exc}"[:200]
    return FileRecord(
        path=os.fsencode(path), size_bytes=st.st_size, mtime_ns=st.st_mtime_ns, device=st.st_dev,
        inode=st.st_ino, sha256=digest, format=decoded.format, width=decoded.width, height=decoded.height,
        frames=decoded.frames, phash=hashes.phash, dhash=hashes.dhash, ahash=hashes.ahash,
        phash_variants=variants, embedder=embedder.name if raw is not None else None, raw_descriptor=raw,
        quality=measured, colour_signature=None if signature is None else signature.astype(np.float32).tobytes(),
        signature_error=why, keypoint_keys=keys, structure=structure,
    )


def failed_record(path: PathLike, reason: str, detail: str) -> FileRecord:
    """The record of a file that could not be loaded; size, mtime, device and inode from stat
    (or lstat, for a link whose target is gone) when it can be read."""
    for stat_function in (os.stat, os.lstat):
        try:
            st = stat_function(path)
        except OSError:
            continue
        return FileRecord(path=os.fsencode(path), size_bytes=st.st_size, mtime_ns=st.st_mtime_ns,
                          device=st.st_dev, inode=st.st_ino, reason=reason, detail=detail)
    return FileRecord(path=os.fsencode(path), size_bytes=0, mtime_ns=0, device=None, inode=None,
                      reason=reason, detail=detail)


def hash_image_file(path: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                    extras: Extras | None = None) -> FileRecord:
    """Read ``path`` once and return its SHA-256, size, format, hashes and ``extras``; raise ImageError."""
    digest, st, decoded, keys = _read_and_decode(path, max_pixels, extras)
    hashes, low_block = hashes_and_dct_block(decoded.image)
    variants = stored_variants(decoded.image, low_block) if extras and extras.orientations else None
    embedder = extras.embedder if extras else None
    raw = raw_descriptors(embedder, [decoded.image])[0] if embedder is not None else None
    signals = verification_signals(decoded) if extras and extras.signals else _NO_SIGNALS
    return with_thumbnail_signatures([_record(path, digest, st, decoded, hashes, variants, embedder, raw, signals, keys)])[0]


def with_thumbnail_signatures(records: list[FileRecord]) -> list[FileRecord]:
    """The records, each with a raw descriptor and a structure thumbnail given the two signatures stored beside
    its embedding, both from the thumbnail and computed for the list at once (one image's costs as much as a
    few hundred's): its turn signature and its crop windows. Should either fail, the records go without it: the
    projection after the load writes what is missing from the stored thumbnails."""
    wanted = [i for i, r in enumerate(records) if r.raw_descriptor is not None and r.structure is not None]
    if not wanted:
        return records
    changes: dict[int, dict] = {i: {} for i in wanted}
    try:
        signatures = turn_signatures_of_thumbnails([records[i].structure for i in wanted])
    except Exception:  # (a bug here must not cost the files their hashes)
        signatures = [None] * len(wanted)
    for i, signature in zip(wanted, signatures):
        if signature is not None:
            changes[i]["turn_signature"] = signature.astype(np.float32).tobytes()
    try:
        windows = crop_windows_of_thumbnails([records[i].structure for i in wanted])
    except Exception:
        windows = [None] * len(wanted)
    for i, found in zip(wanted, windows):
        if found is not None:
            changes[i]["crop_windows"] = found
    out = list(records)
    for i, change in changes.items():
        if change:
            out[i] = replace(records[i], **change)
    return out


def file_record(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, extras: Extras | None = None) -> FileRecord:
    """``hash_image_file`` that never raises for a bad file: a failure is a record with ``reason``/``detail``."""
    try:
        return hash_image_file(path, max_pixels=max_pixels, extras=extras)
    except Exception as exc:  # also a decoder bug: it must not stop the load, only this file
        if isinstance(exc, ImageError):
            return failed_record(path, exc.reason, exc.detail)
        return failed_record(path, "decode_error", f"unexpected {exc.__class__.__name__}: {exc}")


def file_records(paths: list[bytes], max_pixels: int = DEFAULT_MAX_PIXELS,
                 extras: Extras | None = None) -> list[FileRecord]:
    """``file_record`` of each path, the same records; images of one shape are hashed together.

    Small images of a common size (a folder of thumbnails, a camera's photos) spend most of
    their time in per-call overhead of the resizes, DCT and descriptor; stacking them pays
    it once per group.
    """
    results: list[FileRecord | None] = [None] * len(paths)
    groups: dict[tuple, list[int]] = {}
    decoded: dict[int, tuple] = {}
    for index, path in enumerate(paths):
        try:
            decoded[index] = _read_and_decode(path, max_pixels, extras)
        except Exception:
            results[index] = file_record(path, max_pixels, extras)  # the same failure record
            continue
        image = decoded[index][2].image
        # images that can share the stacked computation: greyscale working images whose
        # shape was already checked to resize exactly with matrices
        key = (image.height, image.width)
        if image.mode != "L" or not stackable(*key):
            key = ("alone", index)
        groups.setdefault(key, []).append(index)
    orientations = bool(extras and extras.orientations)
    embedder = extras.embedder if extras else None
    computed_of: dict[int, tuple] = {}
    for key, members in groups.items():
        images = [decoded[i][2].image for i in members]
        try:
            if key[0] == "alone" or len(members) == 1:
                computed = [hashes_and_dct_block(image) for image in images]
                hashes, blocks = [h for h, _ in computed], [b for _, b in computed]
                variants = ([stored_variants(image, block) for image, block in zip(images, blocks)]
                            if orientations else [None] * len(members))
            else:
                stack = np.stack([grey_pixels(image) for image in images])
                hashes, blocks = hashes_of_stack(stack)
                variants = stored_variants_many(images, stack, blocks) if orientations else [None] * len(members)
            raws = raw_descriptors(embedder, images) if embedder is not None else [None] * len(members)
        except Exception:
            for i in members:
                results[i] = file_record(paths[i], max_pixels, extras)
            continue
        for i, h, v, raw in zip(members, hashes, variants, raws):
            computed_of[i] = (h, v, raw)
    hashed = sorted(computed_of)
    if extras and extras.signals:
        signals = verification_signals_many([decoded[i][2] for i in hashed])
    else:
        signals = [_NO_SIGNALS] * len(hashed)
    for i, measured in zip(hashed, signals):
        digest, st, image, keys = decoded[i]
        h, v, raw = computed_of[i]
        results[i] = _record(paths[i], digest, st, image, h, v, embedder, raw, measured, keys)
    return with_thumbnail_signatures(results)
