"""Build the accuracy evaluation set from real images that nobody here made.

Sources are Debian packages, fetched with `apt-get download` and unpacked with
`dpkg-deb -x` into bench/out/accuracy/debs/ (no root needed, nothing installed
system-wide): photos of objects (tuxpaint-stamps-default), painted portraits
and art (wesnoth-1.16-data), desktop wallpapers (gnome/mate/ukui/sway/plasma
backgrounds), scikit-image's sample photos (python3-skimage) and clipart
(openclipart-png).

The set, under bench/out/accuracy/ (git-ignored):

    images/o0001.png               an original (alpha flattened on white, long side <= 1024 px)
    images/o0001__jpeg_q10.jpg     its copies, one per transform
    images/x0001.png               distractors: other images from the packages, no duplicate anywhere
    truth.csv                      file, group, transform, source   (group empty for distractors)
    manifest.json                  seed, package versions, counts, what the near-duplicate filter dropped

Candidates that are already near-duplicates of each other (animation frames,
one wallpaper at several sizes, the same stamp twice) are dropped before the
draw, so the ground truth has no unlabelled duplicate: equal pixels, or
32x32 greyscale thumbnails with correlation >= 0.90, or pHash distance <= 10
with correlation >= 0.70, in any of the 8 orientations (mirrored sprites and
arrow icons are duplicates too). The filter looks at pixels first so that pHash's own
hard negatives (unrelated images with close hashes) stay in the set.

Deterministic: the same seed and package versions give the same files.

Usage:
    .venv/bin/python bench/accuracy/build_set.py [--originals 300] [--distractors 3000] [--seed 5]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from dbdedup.variants import compute_variants

BENCH_OUT = Path(__file__).resolve().parents[1] / "out" / "accuracy"

PACKAGES = [
    "tuxpaint-stamps-default",
    "wesnoth-1.16-data",
    "gnome-backgrounds",
    "mate-backgrounds",
    "ukui-wallpapers",
    "sway-backgrounds",
    "plasma-workspace-wallpapers",
    "python3-skimage",
    "openclipart-png",
]

# the few sources over MAX_SOURCE_PIXELS are skipped before decoding; no need for Pillow's warning
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

MAX_SIDE = 1024  # originals and distractors are scaled down to this long side
MIN_SIDE_ORIGINAL = 96
MIN_SIDE_DISTRACTOR = 48
MAX_SOURCE_PIXELS = 40_000_000

# Near-duplicate filter among candidates (see module docstring).
THUMB = 32
CORR_DUPLICATE = 0.90
CORR_WITH_CLOSE_PHASH = 0.70
PHASH_CLOSE = 10
MIN_THUMB_STD = 4.0  # near-uniform images carry no content to match on

CLIPART_SAMPLE = 3500

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


# ---------------------------------------------------------------- sources


def fetch_packages(debs_dir: Path) -> dict[str, str]:
    """Download and unpack each package once; return {package: version}."""
    debs_dir.mkdir(parents=True, exist_ok=True)
    versions = {}
    for package in PACKAGES:
        unpacked = debs_dir / package
        if not (unpacked / ".done").exists():
            existing = sorted(debs_dir.glob(f"{package}_*.deb"))
            if not existing:
                subprocess.run(["apt-get", "download", package], cwd=debs_dir, check=True,
                               stdout=subprocess.DEVNULL)
                existing = sorted(debs_dir.glob(f"{package}_*.deb"))
            shutil.rmtree(unpacked, ignore_errors=True)
            unpacked.mkdir()
            subprocess.run(["dpkg-deb", "-x", str(existing[-1]), str(unpacked)], check=True)
            (unpacked / ".done").write_text(existing[-1].name)
        deb_name = (unpacked / ".done").read_text()
        versions[package] = deb_name.split("_")[1].replace("%3a", ":")
    return versions


def _images_under(root: Path) -> list[Path]:
    if not root.exists():
        return []
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


@dataclass
class Candidate:
    source: str  # package-relative path, for the CSV
    path: Path
    kind: str  # "photo", "painting", "wallpaper", "clipart", "sprite"


def list_candidates(debs_dir: Path) -> list[Candidate]:
    """Every usable source image, tagged by kind. Excludes what is not a picture
    (alphabets, UI parts, masks) and keeps one file per wallpaper (the packages
    ship each wallpaper at several sizes)."""
    out: list[Candidate] = []

    def add(package: str, paths, kind: str) -> None:
        for p in paths:
            out.append(Candidate(f"{package}:{p.relative_to(debs_dir / package)}", p, kind))

    tux = debs_dir / "tuxpaint-stamps-default/usr/share/tuxpaint/stamps"
    add("tuxpaint-stamps-default",
        [p for p in _images_under(tux) if "/symbols/" not in str(p)], "photo")

    wes = debs_dir / "wesnoth-1.16-data/usr/share/games/wesnoth/1.16/data/core/images"
    add("wesnoth-1.16-data", _images_under(wes / "portraits"), "painting")
    add("wesnoth-1.16-data", _images_under(wes / "story") + _images_under(wes / "maps"), "painting")
    # one still per unit: animation frames (attack1, die2, ...) are near-duplicates of it
    sprites = [p for p in _images_under(wes / "units")
               if not any(ch.isdigit() for ch in p.stem) and "-" not in p.stem]
    add("wesnoth-1.16-data", sprites, "sprite")

    for package in ("gnome-backgrounds", "mate-backgrounds", "ukui-wallpapers", "sway-backgrounds"):
        add(package, _images_under(debs_dir / package / "usr/share"), "wallpaper")
    plasma = debs_dir / "plasma-workspace-wallpapers/usr/share/wallpapers"
    if plasma.exists():
        for wallpaper in sorted(d for d in plasma.iterdir() if d.is_dir()):
            shots = _images_under(wallpaper / "contents" / "images")
            if shots:  # the smallest landscape size is plenty after scaling to 1024
                landscape = [p for p in shots if _size_from_name(p)[0] >= _size_from_name(p)[1]] or shots
                add("plasma-workspace-wallpapers", [min(landscape, key=lambda p: _size_from_name(p)[0])],
                    "wallpaper")

    skdata = debs_dir / "python3-skimage/usr/lib/python3/dist-packages/skimage/data"
    add("python3-skimage", _images_under(skdata), "photo")

    clipart = _images_under(debs_dir / "openclipart-png/usr/share/openclipart/png")
    # the package has 6,900 drawings: a seeded sample is plenty and halves the decoding time
    add("openclipart-png", random.Random(0).sample(clipart, min(len(clipart), CLIPART_SAMPLE)), "clipart")
    return out


def _size_from_name(path: Path) -> tuple[int, int]:
    try:
        w, h = path.stem.split("x")
        return int(w), int(h)
    except ValueError:
        return (0, 0)


# ---------------------------------------------------------------- decoding


def flatten_on_white(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited on white (as dbdedup's loader does)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        return Image.fromarray((array * (255.0 / top)).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def open_source(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_SOURCE_PIXELS:
                return None
            im.draft("RGB", (MAX_SIDE, MAX_SIDE))
            rgb = flatten_on_white(im)
    except Exception:
        return None
    if max(rgb.size) > MAX_SIDE:
        rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    return rgb


@dataclass
class Decoded:
    candidate: Candidate
    size: tuple[int, int]  # after scaling to MAX_SIDE; the pixels are decoded again when saved
    pixel_sha: bytes
    phash: int
    thumb: np.ndarray  # zero-mean, unit-norm 32x32 grey
    thumb_std: float
    oriented_thumbs: np.ndarray  # (8, 1024): the thumbnail under the 8 orientations (identity first)
    oriented_phashes: np.ndarray  # (8,) uint64: pHash under the 8 orientations (identity first)


def describe(candidate: Candidate) -> Decoded | None:
    image = open_source(candidate.path)
    if image is None:
        return None
    grey = np.asarray(image.convert("L").resize((THUMB, THUMB), Image.BILINEAR), dtype=np.float64).ravel()
    std = float(grey.std())
    centred = grey - grey.mean()
    norm = np.linalg.norm(centred) or 1.0
    thumb = (centred / norm).astype(np.float32)
    square = thumb.reshape(THUMB, THUMB)
    oriented = [square, square[:, ::-1], square[::-1, :], np.rot90(square, 1), np.rot90(square, 2),
                np.rot90(square, 3), square.T, np.rot90(square, 2).T]
    phash = int(str(imagehash.phash(image)), 16)
    variants = compute_variants(image).orientations
    return Decoded(
        candidate=candidate,
        size=image.size,
        pixel_sha=hashlib.sha256(image.tobytes() + repr(image.size).encode()).digest(),
        phash=phash,
        thumb=thumb,
        thumb_std=std,
        oriented_thumbs=np.stack([o.ravel() for o in oriented]).astype(np.float32),
        oriented_phashes=np.array([phash] + [v & 0xFFFF_FFFF_FFFF_FFFF for v in variants], dtype=np.uint64),
    )


def drop_near_duplicates(items: list[Decoded], rng: random.Random) -> tuple[list[Decoded], dict]:
    """Keep one image of every near-duplicate group (greedy, in a seeded random order)."""
    order = list(range(len(items)))
    rng.shuffle(order)
    items = [items[i] for i in order]
    thumbs = np.stack([d.thumb for d in items])
    hashes = np.array([d.phash for d in items], dtype=np.uint64)
    kept_idx: list[int] = []
    stats = {"same_pixels": 0, "thumbnail_correlation": 0, "close_phash_and_correlation": 0,
             "flipped_or_rotated": 0}
    seen_sha: set[bytes] = set()
    kept_thumbs = np.zeros_like(thumbs)
    kept_hashes = np.zeros_like(hashes)
    for i, item in enumerate(items):
        if item.pixel_sha in seen_sha:
            stats["same_pixels"] += 1
            continue
        n = len(kept_idx)
        if n:
            corr = kept_thumbs[:n] @ thumbs[i]
            dist = np.bitwise_count(kept_hashes[:n] ^ hashes[i])
            if (corr >= CORR_DUPLICATE).any():
                stats["thumbnail_correlation"] += 1
                continue
            if ((dist <= PHASH_CLOSE) & (corr >= CORR_WITH_CLOSE_PHASH)).any():
                stats["close_phash_and_correlation"] += 1
                continue
            # the same tests against a flipped or rotated candidate: mirrored sprites and icons
            # (left/right arrows, a creature facing both ways) are duplicates by the set's own rules
            corr8 = kept_thumbs[:n] @ item.oriented_thumbs.T
            dist8 = np.bitwise_count(kept_hashes[:n, None] ^ item.oriented_phashes[None, :])
            if (corr8 >= CORR_DUPLICATE).any() or ((dist8 <= PHASH_CLOSE) & (corr8 >= CORR_WITH_CLOSE_PHASH)).any():
                stats["flipped_or_rotated"] += 1
                continue
        seen_sha.add(item.pixel_sha)
        kept_thumbs[n] = thumbs[i]
        kept_hashes[n] = hashes[i]
        kept_idx.append(i)
    return [items[i] for i in kept_idx], stats


# ---------------------------------------------------------------- transforms


def _jpeg(quality: int):
    def apply(im: Image.Image, rng: random.Random):
        return im, "jpg", {"quality": quality}
    return apply


def _scale(factor: float):
    def apply(im: Image.Image, rng: random.Random):
        size = (max(8, round(im.width * factor)), max(8, round(im.height * factor)))
        return im.resize(size, Image.LANCZOS if factor < 1 else Image.BICUBIC), None, {}
    return apply


def _crop(area: float):
    def apply(im: Image.Image, rng: random.Random):
        side = math.sqrt(area)
        w, h = max(8, round(im.width * side)), max(8, round(im.height * side))
        left = rng.randint(0, im.width - w)
        top = rng.randint(0, im.height - h)
        return im.crop((left, top, left + w, top + h)), None, {}
    return apply


def _flip(im, rng):
    return ImageOps.mirror(im), None, {}


def _rotate_90(im, rng):
    return im.transpose(Image.Transpose.ROTATE_90), None, {}


def _rotate_5(im, rng):
    return im.rotate(5, resample=Image.BICUBIC, expand=False, fillcolor=(255, 255, 255)), None, {}


def _enhance(kind, factor):
    def apply(im, rng):
        return kind(im).enhance(factor), None, {}
    return apply


def _greyscale(im, rng):
    return im.convert("L"), None, {}


def _blur(im, rng):
    return im.filter(ImageFilter.GaussianBlur(radius=max(1.5, min(im.size) / 150))), None, {}


def _watermark(im, rng):
    out = im.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=max(10, out.width // 12))
    text = "(c) dbdedup 2026"
    box = draw.textbbox((0, 0), text, font=font)
    x = max(0, out.width - (box[2] - box[0]) - out.width // 30)
    y = max(0, out.height - (box[3] - box[1]) - out.height // 20)
    colour = (255, 255, 255, 170) if rng.random() < 0.5 else (0, 0, 0, 150)
    draw.text((x, y), text, font=font, fill=colour)
    return Image.alpha_composite(out, layer).convert("RGB"), None, {}


def _border(im, rng):
    pad = max(2, round(min(im.size) * 0.08))
    colour = (255, 255, 255) if rng.random() < 0.5 else (0, 0, 0)
    return ImageOps.expand(im, border=pad, fill=colour), None, {}


def _format_webp(im, rng):
    return im, "webp", {"quality": 80}


def _format_swap(im, rng):
    return im, "swap", {}


TRANSFORMS = {
    "jpeg_q10": _jpeg(10),
    "jpeg_q30": _jpeg(30),
    "jpeg_q75": _jpeg(75),
    "downscale_50": _scale(0.5),
    "downscale_25": _scale(0.25),
    "upscale_200": _scale(2.0),
    "crop_90": _crop(0.90),
    "crop_75": _crop(0.75),
    "crop_50": _crop(0.50),
    "flip_h": _flip,
    "rotate_90": _rotate_90,
    "rotate_5": _rotate_5,
    "brightness_up": _enhance(ImageEnhance.Brightness, 1.3),
    "brightness_down": _enhance(ImageEnhance.Brightness, 0.7),
    "contrast_up": _enhance(ImageEnhance.Contrast, 1.4),
    "greyscale": _greyscale,
    "blur": _blur,
    "watermark": _watermark,
    "border": _border,
    "format_webp": _format_webp,
    "format_swap": _format_swap,  # PNG original -> JPEG q90, JPEG original -> PNG
}


def save(image: Image.Image, path_stem: Path, fmt: str, options: dict) -> Path:
    """Write ``image`` as ``fmt`` ('png', 'jpg' or 'webp'); return the path."""
    path = path_stem.with_suffix("." + fmt)
    if fmt == "png":
        image.save(path, "PNG", optimize=False)
    elif fmt == "jpg":
        image.save(path, "JPEG", quality=options.get("quality", 92))
    else:
        image.save(path, "WEBP", quality=options.get("quality", 80), method=4)
    return path


# ---------------------------------------------------------------- the draw


def pick(decoded: list[Decoded], n_originals: int, n_distractors: int, rng: random.Random):
    """Originals favour photos, paintings and wallpapers (photo-like), with some clipart;
    distractors are the rest, drawn from every kind."""
    by_kind: dict[str, list[Decoded]] = {}
    for d in decoded:
        by_kind.setdefault(d.candidate.kind, []).append(d)
    for group in by_kind.values():
        rng.shuffle(group)
    share = {"photo": 0.40, "painting": 0.25, "wallpaper": 0.12, "clipart": 0.18, "sprite": 0.05}
    originals: list[Decoded] = []
    for kind, fraction in share.items():
        pool = [d for d in by_kind.get(kind, []) if min(d.size) >= MIN_SIDE_ORIGINAL]
        take = min(len(pool), round(n_originals * fraction))
        originals += pool[:take]
    chosen = {id(d) for d in originals}
    leftovers = [d for d in decoded if id(d) not in chosen]
    rng.shuffle(leftovers)
    if len(originals) < n_originals:  # a package was missing: fill from what is left
        extra = [d for d in leftovers if min(d.size) >= MIN_SIDE_ORIGINAL][: n_originals - len(originals)]
        originals += extra
        chosen |= {id(d) for d in extra}
        leftovers = [d for d in leftovers if id(d) not in chosen]
    distractors = [d for d in leftovers if min(d.size) >= MIN_SIDE_DISTRACTOR][:n_distractors]
    return originals, distractors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BENCH_OUT)
    parser.add_argument("--originals", type=int, default=300)
    parser.add_argument("--distractors", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    started = time.monotonic()
    out: Path = args.out
    debs_dir = out / "debs"
    versions = fetch_packages(debs_dir)
    candidates = list_candidates(debs_dir)
    print(f"{len(candidates)} candidate images in {len(versions)} packages", file=sys.stderr)

    os.nice(10)  # share the machine: the decode runs on every core, at low priority
    with multiprocessing.Pool(args.workers) as pool:
        decoded = [d for d in pool.map(describe, candidates, chunksize=32) if d is not None]
    undecodable = len(candidates) - len(decoded)
    informative = [d for d in decoded if d.thumb_std >= MIN_THUMB_STD]
    rng = random.Random(args.seed)
    # sort first so the shuffle inside does not depend on the filesystem's order
    informative.sort(key=lambda d: d.candidate.source)
    distinct, dropped = drop_near_duplicates(informative, rng)
    distinct.sort(key=lambda d: d.candidate.source)
    print(f"{len(decoded)} decoded, {len(informative)} informative, {len(distinct)} distinct "
          f"(dropped {dropped})", file=sys.stderr)

    originals, distractors = pick(distinct, args.originals, args.distractors, rng)

    images_dir = out / "images"
    shutil.rmtree(images_dir, ignore_errors=True)
    images_dir.mkdir(parents=True)
    rows = []
    for number, original in enumerate(originals, 1):
        group = f"o{number:04d}"
        base_fmt = "jpg" if original.candidate.path.suffix.lower() in (".jpg", ".jpeg") else "png"
        pixels = open_source(original.candidate.path)
        path = save(pixels, images_dir / group, base_fmt, {"quality": 95})
        rows.append((path.name, group, "original", original.candidate.source))
        for name, transform in TRANSFORMS.items():
            local = random.Random(f"{args.seed}:{group}:{name}")
            image, fmt, options = transform(pixels, local)
            if fmt == "swap":
                fmt, options = ("png", {}) if base_fmt == "jpg" else ("jpg", {"quality": 90})
            fmt = fmt or base_fmt
            path = save(image, images_dir / f"{group}__{name}", fmt, options)
            rows.append((path.name, group, name, original.candidate.source))
    for number, distractor in enumerate(distractors, 1):
        fmt = "jpg" if distractor.candidate.path.suffix.lower() in (".jpg", ".jpeg") else "png"
        path = save(open_source(distractor.candidate.path), images_dir / f"x{number:04d}", fmt, {"quality": 92})
        rows.append((path.name, "", "distractor", distractor.candidate.source))

    with open(out / "truth.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "group", "transform", "source"])
        writer.writerows(rows)

    kinds = lambda items: {k: sum(d.candidate.kind == k for d in items) for k in sorted({d.candidate.kind for d in items})}
    manifest = {
        "seed": args.seed,
        "packages": versions,
        "candidates": len(candidates),
        "undecodable": undecodable,
        "near_uniform_dropped": len(decoded) - len(informative),
        "near_duplicates_dropped": dropped,
        "distinct": len(distinct),
        "originals": len(originals),
        "originals_by_kind": kinds(originals),
        "distractors": len(distractors),
        "distractors_by_kind": kinds(distractors),
        "transforms": list(TRANSFORMS),
        "files": len(rows),
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
