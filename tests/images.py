"""Real images for tests, made with Pillow and numpy: photo-like originals and edited copies."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps


def photo(seed: int, size: tuple[int, int] = (256, 192)) -> Image.Image:
    """A deterministic photo-like RGB image: smooth colour fields plus shapes and mild noise.

    Different seeds give unrelated images (pHash distance typically 20-40).
    """
    rng = np.random.default_rng(seed)
    w, h = size
    # low-frequency colour field: upsampled random grid
    grid = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    base = Image.fromarray(grid, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(base, dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(6):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(min(w, h) * 0.08, min(w, h) * 0.3)
        colour = rng.uniform(0, 255, size=3)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
        arr[mask] = arr[mask] * 0.3 + colour * 0.7
    arr += rng.normal(0, 4, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def save(image: Image.Image, path: Path, fmt: str | None = None, **params) -> Path:
    """Save ``image`` to ``path`` (parents created); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt, **params)
    return path


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def same_picture_files(root: Path, count: int, image: Image.Image, *, quality: int = 90, digits: int = 5) -> Path:
    """``count`` JPEG files of one picture under ``root`` (made), 00000.jpg, 00001.jpg...: distinct bytes after the
    end-of-image marker, so distinct files (no exact copies) that decode the same. Returns ``root``."""
    root.mkdir(parents=True)
    data = jpeg_bytes(image, quality=quality)
    for i in range(count):
        (root / f"{i:0{digits}d}.jpg").write_bytes(data + i.to_bytes(4, "big"))
    return root


def resized(image: Image.Image, factor: float) -> Image.Image:
    w, h = image.size
    return image.resize((max(1, int(w * factor)), max(1, int(h * factor))), Image.Resampling.LANCZOS)


def reencoded(image: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(jpeg_bytes(image, quality))).convert("RGB")


def brighter(image: Image.Image, factor: float = 1.2) -> Image.Image:
    return ImageEnhance.Brightness(image).enhance(factor)


def mirrored(image: Image.Image) -> Image.Image:
    return ImageOps.mirror(image)



def scatter_shapes(image: Image.Image, rng, count: int, largest: int = 60, smallest: int = 6,
                   ellipses_below: float = 0.7) -> Image.Image:
    """Draw ``count`` rectangles, ellipses and strokes of random colours over ``image`` (in place; a
    ``random.Random``): corners and blobs, as local features need. Returns the image."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    w, h = image.size
    for _ in range(count):
        x, y = rng.randint(-20, w), rng.randint(-20, h)
        dx, dy = rng.randint(smallest, largest), rng.randint(smallest, largest)
        colour = (rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255))
        shape = rng.random()
        if shape < 0.4:
            draw.rectangle((x, y, x + dx, y + dy), fill=colour)
        elif shape < ellipses_below:
            draw.ellipse((x, y, x + dx, y + dy), fill=colour)
        else:
            draw.line((x, y, x + dx, y + dy), fill=colour, width=rng.randint(1, 4))
    return image


def textured_photo(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A photo-like RGB image with texture: ``photo``'s colour fields under many small shapes and
    strokes of random colours, softened, with mild noise. Corners and blobs everywhere, as local
    features (keypoints) need; different seeds give unrelated pictures."""
    import random

    from PIL import ImageFilter

    image = scatter_shapes(photo(seed, size), random.Random(seed + 7919), 220, largest=50, smallest=5,
                           ellipses_below=0.75)
    arr = np.asarray(image.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32)
    arr += np.random.default_rng(seed + 7919).normal(0, 3, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def star_ring(points: int, step: int, size: int = 100, width: int = 3) -> Image.Image:
    """Line art: a star polygon {points/step} drawn in one black stroke on white, ``width`` pixels at 4x the
    size (openclipart's star rings: star_55pt26step and star_53pt25step are two pictures)."""
    big = Image.new("RGB", (size * 4, size * 4), (255, 255, 255))
    centre, radius = size * 2, size * 1.9
    vertices = [(centre + radius * np.sin(2 * np.pi * k * step / points), centre - radius * np.cos(2 * np.pi * k * step / points))
                for k in range(points + 1)]
    ImageDraw.Draw(big).line(vertices, fill=(0, 0, 0), width=width)
    return big.resize((size, size), Image.Resampling.LANCZOS)


def folder_icon(body: tuple[int, int, int], tab: tuple[int, int, int], mark: tuple[int, int, int], *, seed: int = 0,
                marks: int = 4, radii: tuple[int, int] = (18, 18), area: tuple[int, int, int, int] = (80, 130, 170, 200)
                ) -> Image.Image:
    """A flat folder icon on white, as icon themes draw them (a tab, a body, a pale sheet), with ``marks`` discs in
    ``mark`` on the body (its glyph; radii and centres drawn from ``seed`` within ``radii`` and ``area``: left, top,
    right, bottom). Recoloured, the same drawing is a colour variant of one icon family."""
    import random

    image = Image.new("RGB", (256, 256), "white")
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((8, 20, 110, 70), 12, fill=tab)
    draw.rounded_rectangle((8, 40, 248, 246), 14, fill=body)
    draw.rectangle((24, 52, 232, 96), fill=(235, 235, 235))
    rng = random.Random(seed)
    left, top, right, bottom = area
    for _ in range(marks):
        x, y, r = rng.randint(left, right), rng.randint(top, bottom), rng.randint(*radii)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=mark)
    return image
