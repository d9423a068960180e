"""Exporting clusters: a folder per cluster, or a self-contained HTML contact sheet.

Both take clusters as ``dbdedup.results.iter_clusters`` yields them; neither needs
the database. Files are opened by their exact path bytes, so names that are not
UTF-8 work.
"""

from __future__ import annotations

import errno
import html
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from .errors import DbdedupError, file_problem, user_error
from .file_access import GROUP_AND_OTHERS_READ, ReadAccess, open_regular_file
from .clusters import ClusterSettings
from .report import human_bytes
from .results import Cluster, Member, Summary
from .scan import MARKER_NAME, mark_as_made
from .terminal import printable
from .thumbnails import DEFAULT_THUMBNAIL_SIZE, ThumbnailMaker, data_uri
from .verdicts import KIND_LABELS, Verdict

EXPORT_MODES = ("copy", "hardlink", "symlink")


@dataclass
class FolderExport:
    """What ``export_folders`` did: one folder per cluster, the files placed, the files skipped."""

    root: Path
    mode: str
    folders: list[tuple[int, str]] = field(default_factory=list)  # (cluster id, folder name)
    placed: list[tuple[bytes, bytes]] = field(default_factory=list)  # (source path, exported path)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source path for display, reason)


# The longest file name most file systems take (ext4, XFS, btrfs, tmpfs: NAME_MAX, in bytes).
NAME_MAX = 255


def _shortened(stem: bytes, room: int) -> bytes:
    """``stem`` cut to at most ``room`` bytes; a UTF-8 stem is cut between characters, not inside one."""
    cut = stem[:max(room, 0)]
    try:
        stem.decode("utf-8")
    except UnicodeDecodeError:
        return cut
    return cut.decode("utf-8", "ignore").encode("utf-8")


class _UniqueNames:
    """Hands out names not used yet in one directory: 'a.jpg', 'a (2).jpg', ...

    Comparison ignores case, so the layout also works on case-insensitive file systems. A suffixed name
    that would pass NAME_MAX has its stem shortened (the extension kept), so a 255-byte name's twin fits."""

    def __init__(self) -> None:
        self._used: set[bytes] = set()

    def take(self, name: bytes) -> bytes:
        stem, ext = os.path.splitext(name)
        candidate, n = name[:NAME_MAX], 1
        while candidate.lower() in self._used:
            n += 1
            suffix = f" ({n})".encode()
            if len(suffix) + len(ext) >= NAME_MAX:  # an "extension" too long to keep: part of the stem
                stem, ext = stem + ext, b""
            candidate = _shortened(stem, NAME_MAX - len(suffix) - len(ext)) + suffix + ext
        self._used.add(candidate.lower())
        return candidate


def folder_name_for(keeper: Member) -> bytes:
    """The folder name for a cluster: the keeper's file name without its extension."""
    base = os.path.basename(keeper.path_bytes.rstrip(b"/"))
    stem = os.path.splitext(base)[0]
    return stem or base or b"cluster"


def _place(source: bytes, target: bytes, mode: str) -> None:
    if mode == "copy":
        # (not shutil.copy2: it refuses a FIFO, but reads a device put where the file was, /dev/zero without end)
        with open_regular_file(source) as src, open(target, "xb") as dst:
            try:
                shutil.copyfileobj(src, dst, 1 << 20)
                shutil.copystat(source, target)
            except BaseException:  # a full disk, Ctrl-C: no half copy is left under the source's name
                os.unlink(target)
                raise
    elif mode == "hardlink":
        os.link(source, target)
    elif mode == "symlink":
        os.symlink(os.path.abspath(source), target)
    else:
        raise ValueError(f"mode must be one of {EXPORT_MODES}")


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


@dataclass
class _Made:
    """What one folder export made, so that an export stopped part-way takes away exactly that (a retry,
    such as the hinted ``--mode copy``, then finds TARGET as the user had it) and nothing else."""

    root: bytes
    root_made: bool = False
    root_id: tuple[int, int] | None = None
    parents: list[bytes] = field(default_factory=list)  # folders above root made for it, top first
    marker: tuple[int, int] | None = None
    # a cluster folder (made 0700: nobody else adds to it) by name: its identity, the names placed in it
    folders: dict[bytes, tuple[tuple[int, int], list[bytes]]] = field(default_factory=dict)

    def undo(self) -> list[str]:
        """Remove what was made, deepest first; what cannot be removed safely is left and returned (its path)."""
        left = self._undo_inside() if self.root_id is not None else []
        if self.root_made and left:
            left.append(os.fsdecode(self.root))
            return left
        for folder in ([self.root] if self.root_made else []) + self.parents[::-1]:
            try:
                os.rmdir(folder)
            except OSError:  # not empty (someone else's file) or gone: the folders above stay too
                if folder == self.root:
                    left.append(os.fsdecode(folder))
                break
        return left

    def _undo_inside(self) -> list[str]:
        left: list[str] = []
        dir_flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
        try:
            root_fd = os.open(self.root, dir_flags)
        except OSError:
            return [os.fsdecode(self.root)] if self.folders or self.marker else []
        try:
            if _identity(os.fstat(root_fd)) != self.root_id:  # TARGET is another folder now: touch nothing in it
                return [os.fsdecode(self.root)]
            for name, (made_id, placed) in self.folders.items():
                where = os.fsdecode(os.path.join(self.root, name))
                try:  # (not followed if a link was put in its place)
                    fd = os.open(name, dir_flags | getattr(os, "O_NOFOLLOW", 0), dir_fd=root_fd)
                except OSError:
                    left.append(where)
                    continue
                try:
                    if _identity(os.fstat(fd)) != made_id:
                        left.append(where)
                        continue
                    for entry in placed:
                        try:
                            os.unlink(entry, dir_fd=fd)
                        except OSError:  # gone already; or it stays, and its folder is named below
                            pass
                finally:
                    os.close(fd)
                try:
                    if _identity(os.stat(name, dir_fd=root_fd, follow_symlinks=False)) != made_id:
                        raise FileExistsError
                    os.rmdir(name, dir_fd=root_fd)
                except OSError:  # something not made here is in it (or it was swapped): left, and named
                    left.append(where)
            if self.marker is not None:
                try:
                    if _identity(os.stat(MARKER_NAME, dir_fd=root_fd, follow_symlinks=False)) != self.marker:
                        raise FileExistsError
                    os.unlink(MARKER_NAME, dir_fd=root_fd)
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(os.fsdecode(os.path.join(self.root, MARKER_NAME)))
        finally:
            os.close(root_fd)
        return left


def _missing_parents(folder: Path) -> list[bytes]:
    """The folders above ``folder`` that do not exist yet, the top one first."""
    missing: list[bytes] = []
    parent = folder.absolute().parent
    while not parent.exists() and parent != parent.parent:
        missing.append(os.fsencode(parent))
        parent = parent.parent
    return missing[::-1]


def _require_empty_dir(root: Path, made: _Made) -> None:
    """Make sure ``root`` is an empty folder; ``made`` records whether it (and folders above it) was made here,
    owner-only until the export ends."""
    if root.exists():
        if not root.is_dir():
            raise DbdedupError(f"{root} exists and is not a directory", hint="name a new or empty directory")
        if any(root.iterdir()):
            raise DbdedupError(
                f"{root} is not empty",
                hint="export into a new or empty directory, so earlier exports are never mixed in or overwritten",
            )
    else:
        made.parents = _missing_parents(root)
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            root.mkdir(mode=0o700)
        except BaseException:
            made.undo()  # the folders above it made here
            raise
        made.root_made = True
    made.root_id = _identity(os.stat(root))


def export_folders(clusters: Iterable[Cluster], root: str | os.PathLike, *, mode: str = "copy") -> FolderExport:
    """One folder per cluster under ``root``, named after the keeper's file name (clashes get
    ' (2)', ' (3)', ...), holding the keeper and its near-duplicates under their own file names.

    ``mode`` is copy, hardlink (same file system only) or symlink (absolute links to the originals).
    ``root`` must be new or empty. A member whose file cannot be placed (gone, unreadable) is
    skipped and listed in the result; the export goes on. An export that stops (hard links across
    file systems, a full disk, Ctrl-C) takes away what it made, so ``root`` is as it was; what it
    cannot safely remove is named in the DbdedupError.

    Each folder it makes is owner-only while it is filled, then gets the mode a new folder gets under
    the umask less the group and others bits its files do not grant (``ReadAccess``); a ``root`` that
    was there already keeps its mode.
    """
    if mode not in EXPORT_MODES:
        raise DbdedupError(f"unknown export mode {mode!r}", hint=f"use one of {', '.join(EXPORT_MODES)}")
    root_path = Path(root)
    made = _Made(os.fsencode(root_path))
    _require_empty_dir(root_path, made)
    try:
        result, listed = _fill(clusters, root_path, mode, made)
    except BaseException as exc:
        left = made.undo()
        error = user_error(exc) if left and isinstance(exc, Exception) else None
        if error is None:  # (Ctrl-C, or a bug: as it was)
            raise
        error.hint = (f"{error.hint}; " if error.hint else "") + ("the export took away what it made except "
                                                                  + ", ".join(left) + ": remove them before exporting there again")
        if error is exc:
            raise
        raise error from exc
    if made.root_made:  # made owner-only; now what a new folder gets under the umask, less what the files do not grant
        os.chmod(root_path, listed.folder_mode())
    return result


def _fill(clusters: Iterable[Cluster], root_path: Path, mode: str, made: _Made) -> tuple[FolderExport, ReadAccess]:
    """The folders and their files, each folder recorded in ``made`` as it is made; with what the root lists."""
    mark_as_made(made.root)  # a load of a parent folder leaves the copies here out
    try:
        made.marker = _identity(os.stat(os.path.join(made.root, MARKER_NAME), follow_symlinks=False))
    except OSError:  # (an unwritable folder gets no marker)
        pass
    result = FolderExport(root=root_path, mode=mode)
    listed = ReadAccess()  # the root lists the keepers' names and leads to every file
    held = ReadAccess()  # one cluster folder's files at a time (its cache of folder modes kept)
    folder_names = _UniqueNames()
    folder_names.take(MARKER_NAME)  # (a keeper named after the marker gets "... (2)")
    for cluster in clusters:
        folder = folder_names.take(folder_name_for(cluster.keeper))
        folder_path = os.path.join(made.root, folder)
        os.mkdir(folder_path, 0o700)  # it lists the files' names: owner-only while it is filled
        placed: list[bytes] = []
        made.folders[folder] = (_identity(os.stat(folder_path, follow_symlinks=False)), placed)
        result.folders.append((cluster.id, os.fsdecode(folder)))
        listed.add(cluster.keeper.path_bytes)  # its name names the folder, placed or not
        held.bits = GROUP_AND_OTHERS_READ
        file_names = _UniqueNames()
        for member in cluster.members:
            name = file_names.take(os.path.basename(member.path_bytes))
            target = os.path.join(folder_path, name)
            try:
                _place(member.path_bytes, target, mode)
            except OSError as exc:
                if mode == "hardlink" and exc.errno == errno.EXDEV:
                    raise DbdedupError(
                        f"cannot hard-link {member.path} into {root_path}: different file systems",
                        hint="export with --mode copy or --mode symlink, or into a directory on the same file system",
                    ) from exc
                result.skipped.append((member.path, exc.strerror or str(exc)))
                continue
            placed.append(name)
            result.placed.append((member.path_bytes, target))
            listed.add(member.path_bytes)
            held.add(member.path_bytes)
        os.chmod(folder_path, held.folder_mode())
    return result, listed


# ---------------------------------------------------------------- HTML contact sheet

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
.summary { color: #444; margin-bottom: 1.5em; }
.summary td { padding: 0 1em 0 0; }
section.cluster { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 0 0 1.2em 0; padding: 0.6em 0.9em; }
section.cluster h2 { font-size: 1.05em; margin: 0.2em 0 0.6em 0; }
.members { display: flex; flex-wrap: wrap; gap: 0.8em; }
figure { margin: 0; width: %(box)dpx; border: 2px solid #eee; border-radius: 4px; padding: 4px; background: #fff; }
figure.keeper { border-color: #2e7d32; }
figure .frame { width: %(box)dpx; height: %(box)dpx; display: flex; align-items: center; justify-content: center; background: #f0f0f0; }
figure img { max-width: %(box)dpx; max-height: %(box)dpx; }
figcaption { font-size: 0.8em; line-height: 1.35; margin-top: 0.3em; word-break: break-all; }
.badge { display: inline-block; font-size: 0.75em; font-weight: bold; padding: 0 0.4em; border-radius: 3px; color: #fff; }
.badge.keep { background: #2e7d32; } .badge.same { background: #b26a00; } .badge.dup { background: #8a6d00; }
.badge.ref { background: #1565c0; } .badge.reviewed { background: #6a1b9a; }
ul.verdicts { font-size: 0.8em; margin: 0.2em 0 0 0; padding-left: 1.1em; color: #4a148c; }
.missing { font-size: 0.8em; color: #a00; padding: 0.5em; text-align: center; }
.dim { color: #777; }
"""


def _badge(member: Member) -> str:
    if member.is_keeper:
        return '<span class="badge keep">KEEPER</span>'
    if member.is_protected:
        return '<span class="badge ref">reference</span>'
    if member.is_exact_duplicate:
        return '<span class="badge same">exact copy</span>'
    return '<span class="badge dup">near duplicate</span>'


def _verdicts_html(member: Member, verdicts: Mapping[bytes, list[Verdict]] | None) -> str:
    """The verdicts naming a member (reviewers' decisions), as a list under its caption."""
    named = verdicts.get(member.sha256, []) if verdicts and member.sha256 else []
    if not named:
        return ""
    e = html.escape
    items = []
    for v in named:
        text = KIND_LABELS[v.kind]
        other = v.other(member.sha256) if member.sha256 else None
        if other is not None:
            paths = v.paths[v.sha256.index(other)]
            text += " " + (printable(", ".join(os.path.basename(p) for p in paths)) if paths else "an image not loaded now")
        items.append(f'<li data-kind="{v.kind}">{e(text)} <span class="dim">({e(v.decided_by)}, '
                     f'{v.decided_at:%Y-%m-%d})</span>{" &middot; " + e(v.note) if v.note else ""}</li>')
    return '<ul class="verdicts">' + "".join(items) + "</ul>"


def _figure(member: Member, jpeg: bytes | None, error: str | None, threshold: int,
            verdicts: Mapping[bytes, list[Verdict]] | None = None) -> str:
    e = html.escape
    name = e(printable(os.path.basename(member.path)))
    if jpeg is not None:
        picture = f'<img src="{data_uri(jpeg)}" alt="{name}">'
    else:
        picture = f'<div class="missing">no thumbnail<br>{e(error or "")}</div>'
    dims = f"{member.width}&times;{member.height}" if member.width and member.height else "?"
    why = "" if member.is_keeper else f'<span class="why">{e(member.why(threshold))}</span><br>'
    listed = _verdicts_html(member, verdicts)
    reviewed = ' <span class="badge reviewed">reviewed</span>' if listed else ""
    return (
        f'<figure class="{"keeper" if member.is_keeper else "member"}" data-distance="{member.distance}">'
        f'<div class="frame">{picture}</div>'
        f"<figcaption>{_badge(member)}{reviewed} <b>{name}</b><br>{why}{dims} &middot; "
        f'{e(human_bytes(member.size_bytes)).replace(" ", "&nbsp;")}<br><span class="dim" title="{e(printable(member.path))}">{e(printable(member.path))}</span>'
        f"{listed}</figcaption></figure>"
    )


def render_html(
    settings: ClusterSettings,
    summary: Summary,
    clusters: Iterable[Cluster],
    *,
    thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE,
    verdicts: Mapping[bytes, list[Verdict]] | None = None,
    maker: ThumbnailMaker | None = None,
) -> Iterable[str]:
    """The contact sheet as chunks of HTML: one self-contained page (inline CSS, thumbnails as data URIs).
    ``verdicts`` (``dbdedup.verdicts.all_by_image``) marks the members reviewers decided on; ``maker``
    (else one of its own) makes the thumbnails and counts who else may read the files shown."""
    e = html.escape
    yield "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    yield "<title>dbdedup contact sheet</title>\n"
    yield f"<style>{_CSS % {'box': thumbnail_size}}</style>\n</head>\n<body>\n"
    yield "<h1>dbdedup: near-duplicate clusters</h1>\n<table class=\"summary\">"
    rows = [
        ("images", f"{summary.images:,}"),
        ("near-duplicate clusters", f"{summary.near_duplicate_clusters:,} ({summary.images_in_clusters:,} images)"),
        ("exact-duplicate groups", f"{summary.exact_duplicate_groups:,}"),
        ("removable images", f"{summary.removable_images:,}"),
        ("bytes reclaimable", human_bytes(summary.reclaimable_bytes)),
        ("matched with", f"{settings.hash_kind} distance &le; {settings.threshold}, rule {e(settings.rule)}, "
                         f"keeper: {e(settings.keeper_rule)}"),
    ]
    if settings.reference_paths:
        rows.append(("reference paths (protected)", e(printable(", ".join(settings.reference_paths)))))
    if verdicts:
        every = {v.id: v for named in verdicts.values() for v in named}.values()
        stale = sum(1 for v in every if v.stale)
        rows.append(("verdicts", f"{len(every):,}" + (f" ({stale:,} stale: an image they name is not loaded)"
                                                      if stale else "")))
    for label, value in rows:
        yield f"<tr><td>{label}</td><td>{value}</td></tr>"
    yield "</table>\n"
    shown = 0
    with maker or ThumbnailMaker(thumbnail_size) as maker:
        for cluster in clusters:
            shown += 1
            yield from _cluster_html(cluster, maker, settings.threshold, verdicts)
    total = summary.near_duplicate_clusters
    if total and shown == 0:  # (only --limit 0 lists none of them)
        yield f"<p>{total:,} near-duplicate clusters, none listed (--limit 0).</p>\n"
    elif shown < total:
        yield f"<p>Showing {shown:,} of {total:,} near-duplicate clusters (--limit {shown}).</p>\n"
    elif shown == 0:
        yield "<p>No near-duplicate clusters at this threshold.</p>\n"
    yield "</body>\n</html>\n"


def _cluster_html(cluster: Cluster, maker: ThumbnailMaker, threshold: int,
                  verdicts: Mapping[bytes, list[Verdict]] | None = None) -> Iterable[str]:
    e = html.escape
    yield (
        f'<section class="cluster" id="cluster-{cluster.id}"><h2>Cluster {cluster.id}: '
        f"{e(printable(os.path.basename(cluster.keeper.path)))}"
        f' <span class="dim">&middot; {len(cluster.members)} images &middot; '
        f"{e(human_bytes(cluster.reclaimable_bytes))} reclaimable</span></h2>\n<div class=\"members\">\n"
    )
    members = list(cluster.members)
    for member, (_, jpeg, error) in zip(members, maker.make([m.path_bytes for m in members])):
        yield _figure(member, jpeg, error, threshold, verdicts) + "\n"
    yield "</div></section>\n"


def export_html(
    settings: ClusterSettings,
    summary: Summary,
    clusters: Iterable[Cluster],
    path: str | os.PathLike,
    *,
    thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE,
    verdicts: Mapping[bytes, list[Verdict]] | None = None,
) -> Path:
    """Write the contact sheet to ``path`` (atomically: a temporary file renamed into place). The sheet
    holds the pictures and their paths, so it is made no more readable than they are: the mode a new file
    gets under the umask, less the group and others read bits that some file shown does not grant."""
    target = Path(path)
    if target.is_dir():
        raise DbdedupError(f"{target} is a directory", hint="name an .html file, or use --layout folders")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".dbdedup-", suffix=".html", dir=target.parent)
    except OSError as exc:  # named by the sheet the user asked for, not by the temporary file's name
        temporary = exc.filename is not None and os.path.basename(os.fsdecode(exc.filename)).startswith(".dbdedup-")
        raise DbdedupError(f"cannot write {target}: " + (exc.strerror if temporary else file_problem(exc)),
                           hint="name a file in a folder that exists or that you may create") from exc
    try:
        maker = ThumbnailMaker(thumbnail_size)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for chunk in render_html(settings, summary, clusters, thumbnail_size=thumbnail_size, verdicts=verdicts,
                                     maker=maker):
                out.write(chunk)
        os.chmod(tmp, maker.access.file_mode())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target
