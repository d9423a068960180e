"""Why a file could not be loaded (reason codes) and the pixel limit: the loader's vocabulary.

Apart from ``dbdedup.decode`` so that the command line can show them (``load --help``, ``errors
--reason``) without importing numpy and Pillow: every command pays its imports before it runs.
"""

from __future__ import annotations

# Pillow's own default limit (about 89 million pixels): above it Pillow warns, above twice it raises.
DEFAULT_MAX_PIXELS: int = 89_478_485

# Why a file could not be loaded: reason code -> what it means.
REASONS: dict[str, str] = {
    "empty_file": "the file is empty (0 bytes)",
    "truncated": "the image data ends early (incomplete copy or download)",
    "not_an_image": "the content is not an image format dbdedup reads",
    "unsupported_format": "an image format that needs an optional plugin (pip install 'dbdedup[formats]')",
    "too_many_pixels": "more pixels than --max-pixels (a possible decompression bomb)",
    "decode_error": "the image header is readable but the pixel data is damaged",
    "permission_denied": "no permission to read the file or directory",
    "broken_symlink": "a symbolic link whose target does not exist",
    "symlink_loop": "a symbolic link that points to itself, directly or through other links",
    "unreadable": "the file system returned an error while reading",
    "not_a_file": "named like an image, but a FIFO, socket or device: never opened (reading could block or never end)",
    "worker_crashed": "the process hashing it died, twice (a decoder crash on this file, or out of memory)",
}

# Errors that depend on the environment rather than on the bytes: retried on every
# run even when the file's size and mtime did not change (chmod does not touch mtime).
RETRY_REASONS: tuple[str, ...] = ("permission_denied", "broken_symlink", "symlink_loop", "unreadable")
