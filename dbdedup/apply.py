"""Acting on duplicates, safely: move, delete or hard-link the non-keepers of each cluster, and undo.

The order of work for each file is what makes a crash harmless:

1. re-check the file against the database (size, mtime, SHA-256) and its keeper (still there,
   unchanged); anything different is skipped and reported;
2. append an ``intent`` line to the manifest and fsync it;
3. act with operations that are atomic on POSIX file systems (link + unlink for a move,
   unlink for a delete, link to a temporary name + rename for a hard link);
4. append a ``done`` line and fsync it.

So after a crash every file is either untouched or fully handled, and the manifest says which:
a ``done`` line means handled; an ``intent`` line alone means the crash came during that one
action, and ``undo`` (or ``recover_manifest``) inspects the disk to finish or roll it back.

The manifest is JSON lines. The first line describes the run; then one line per event::

    {"event": "start", "manifest": "dbdedup-apply", "version": 1, "action": "move", "created": "...", ...}
    {"event": "intent", "seq": 1, "action": "move", "path": "...", "path_bytes": "<hex>",
     "destination": "...", "destination_bytes": "<hex>", "size": 123, "mtime_ns": 1, "sha256": "<hex>", ...}
    {"event": "done", "seq": 1}
    {"event": "skip", "path": "...", "path_bytes": "<hex>", "reason": "changed since it was loaded (size)"}
    {"event": "failed", "seq": 2, "error": "Permission denied"}
    {"event": "end", "done": 1, "skipped": 1, "failed": 1, "bytes_freed": 123}
    {"event": "undone", "seq": 1}                       (appended by undo)

Paths are given twice: for display, and as hex of the exact bytes (names that are not UTF-8).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import psycopg
from psycopg.rows import dict_row

from .errors import DbdedupError
from .file_access import as_bigint, open_regular_file
from .scan import display_path, mark_as_made
from .sqlfiles import named_queries

ACTIONS = ("move", "delete", "hardlink")
MANIFEST_KIND = "dbdedup-apply"
MANIFEST_VERSION = 2  # 2: the run is recorded in dbdedup.apply_runs, and the header names it (run_id)


def _queries() -> dict[str, str]:
    return named_queries("queries/report_apply.sql")


def _run_queries() -> dict[str, str]:
    return named_queries("queries/apply_runs.sql")


# ---------------------------------------------------------------- planning


@dataclass(frozen=True)
class PlannedAction:
    """One non-keeper to act on, with what the database knows about it and its keeper."""

    action: str
    cluster_id: int
    image_id: int
    path: str
    path_bytes: bytes
    size_bytes: int
    mtime_ns: int
    sha256: bytes
    distance: int
    is_exact_duplicate: bool
    keeper_path: str
    keeper_path_bytes: bytes
    keeper_size_bytes: int
    keeper_mtime_ns: int
    keeper_sha256: bytes
    destination_bytes: bytes | None = None
    # another path to a file listed before it in its cluster (dbdedup.cluster_members.is_same_file: a hard or
    # symbolic link): acting on it frees no bytes of its own
    same_file: bool = False
    # the paths its cluster keeps (the keeper, files under reference paths): it must not be one of them
    # reached through another path that names the same directory entry (a bind mount)
    kept_paths: tuple[bytes, ...] = ()
    # st_ino of the file and of its keeper when loaded (dbdedup.images.inode; None: not recorded): a path that
    # now names another file (its folder swapped for another) is refused, even with the same bytes and times
    inode: int | None = None
    keeper_inode: int | None = None
    # the roots loads were given and the symbolic links to folders their walks entered (dbdedup.load_runs, as
    # display text): the only symbolic links a path apply acts on may pass through (see ``_unwalked_link``)
    walked_links: frozenset[str] = frozenset()

    @property
    def freed_bytes(self) -> int:
        """The bytes acting on it frees: its size, counted once per file."""
        return 0 if self.same_file else self.size_bytes

    @property
    def destination(self) -> str | None:
        return None if self.destination_bytes is None else display_path(self.destination_bytes)


@dataclass
class Plan:
    """What apply would do: the actions, and the members it leaves alone with the reason."""

    action: str
    move_to: bytes | None
    actions: list[PlannedAction] = field(default_factory=list)
    left_alone: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    @property
    def bytes_to_free(self) -> int:
        return sum(a.freed_bytes for a in self.actions)


def destination_for(path_bytes: bytes, move_to: bytes) -> bytes:
    """Where --move-to puts a file: its absolute path re-created under ``move_to``
    (/photos/a/b.jpg -> MOVE_TO/photos/a/b.jpg), so names never clash and undo is obvious."""
    absolute = os.path.abspath(path_bytes)
    return os.path.join(move_to, absolute.lstrip(b"/"))


def _under(path: bytes, roots: list[bytes]) -> bool:
    return any(path == root or path.startswith(root.rstrip(b"/") + b"/") for root in roots)


def plan_actions(
    conn: psycopg.Connection,
    action: str,
    *,
    move_to: str | os.PathLike | bytes | None = None,
    protected_paths: Iterable[str | os.PathLike | bytes] = (),
) -> Plan:
    """The plan for ``action`` (move, delete, hardlink) over the current clusters' non-keepers.

    Keepers are never in a plan. Members the clustering marks protected (under a reference
    path) are left alone, and so is anything under ``protected_paths`` (checked here again, so
    protection does not rest on the view alone); so are near-duplicates for ``hardlink``, which
    applies to exact duplicates only (a link to the keeper would lose the near-duplicate's own pixels).
    """
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}")
    target: bytes | None = None
    if action == "move":
        if move_to is None:
            raise DbdedupError("--move-to needs a directory", hint="dbdedup apply --move-to ~/dbdedup-removed")
        target = os.path.abspath(os.fsencode(move_to))
    plan = Plan(action=action, move_to=target)
    protected = [os.path.abspath(os.fsencode(p)) for p in protected_paths]
    protected_real = [os.path.realpath(p) for p in protected]

    def is_protected(row: dict) -> bool:
        # by the path as loaded, and by where it leads: a folder loaded through a symbolic link that no stored
        # alias of the reference names is still the reference's
        path = os.path.abspath(bytes(row["path_bytes"]))
        return bool(row["is_protected"]) or _under(path, protected) or (
            bool(protected_real) and _under(os.path.realpath(path), protected_real))

    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_queries()["apply_candidates"]).fetchall()
        entries = cur.execute(named_queries("queries/settings.sql")["loaded_entries"]).fetchall()
    walked = _walked_links(r["entry"] for r in entries)
    keeper_paths = {bytes(r["keeper_path_bytes"]) for r in rows}
    protected_ids = {r["image_id"] for r in rows if is_protected(r)}
    kept: dict[int, list[bytes]] = {}
    for r in rows:
        kept.setdefault(r["cluster_id"], [bytes(r["keeper_path_bytes"])])
        if r["image_id"] in protected_ids:
            kept[r["cluster_id"]].append(bytes(r["path_bytes"]))
    link_to, linked_to = _link_targets(rows) if action == "hardlink" else ({}, set())
    for r in rows:
        path_bytes = bytes(r["path_bytes"])
        if r["image_id"] in protected_ids:
            plan.left_alone.append((r["path"], "chosen as keeper by a reviewer's verdict (protected)"
                                    if r["has_keeper_verdict"] and not r["is_under_reference"] else
                                    "under a reference path (protected)"))
            continue
        if path_bytes in keeper_paths:  # cannot happen with one cluster per image; never risk a keeper
            plan.left_alone.append((r["path"], "is a keeper"))
            continue
        if action == "hardlink" and not r["is_exact_duplicate"]:
            if r["image_id"] not in link_to:
                plan.left_alone.append((r["path"], "kept: its byte-identical copies are linked to it"
                                        if r["image_id"] in linked_to else
                                        f"near-duplicate (distance {r['distance_to_keeper']}), not an exact copy"))
                continue
            r = link_to[r["image_id"]]
        if target is not None and _under(os.path.abspath(path_bytes), [target]):
            plan.left_alone.append((r["path"], "already under the --move-to directory"))
            continue
        plan.actions.append(
            PlannedAction(
                action=action,
                cluster_id=r["cluster_id"],
                image_id=r["image_id"],
                path=r["path"],
                path_bytes=path_bytes,
                size_bytes=r["size_bytes"],
                mtime_ns=r["mtime_ns"],
                sha256=bytes(r["sha256"]),
                distance=int(r["distance_to_keeper"] or 0),
                is_exact_duplicate=bool(r["is_exact_duplicate"]),
                keeper_path=r["keeper_path"],
                keeper_path_bytes=bytes(r["keeper_path_bytes"]),
                keeper_size_bytes=r["keeper_size_bytes"],
                keeper_mtime_ns=r["keeper_mtime_ns"],
                keeper_sha256=bytes(r["keeper_sha256"]),
                destination_bytes=destination_for(path_bytes, target) if target is not None else None,
                same_file=bool(r["is_same_file"]),
                kept_paths=tuple(kept[r["cluster_id"]]),
                inode=r["inode"],
                keeper_inode=r["keeper_inode"],
                walked_links=walked,
            )
        )
    return plan


def _link_targets(rows: list[dict]) -> tuple[dict[int, dict], set[int]]:
    """For --hardlink: copies that are byte-identical to another member of their cluster but not to
    its keeper (a near-duplicate keeper was chosen, say a larger version) are linked to one file of
    their exact group, the first by path, which stays. Returns (image id -> the row to act on, its
    keeper_* fields naming that file; the ids of the files linked to)."""
    groups: dict[tuple[int, bytes], list[dict]] = {}
    for r in rows:
        if not r["is_exact_duplicate"] and r["sha256"] is not None:
            groups.setdefault((r["cluster_id"], bytes(r["sha256"])), []).append(r)
    link_to: dict[int, dict] = {}
    linked_to: set[int] = set()
    for members in groups.values():
        if len(members) < 2:
            continue
        target, *copies = sorted(members, key=lambda m: (bytes(m["path_bytes"]), m["image_id"]))
        for m in copies:
            link_to[m["image_id"]] = {
                **m, "is_exact_duplicate": True, "distance_to_keeper": 0,
                "keeper_path": target["path"], "keeper_path_bytes": target["path_bytes"],
                "keeper_size_bytes": target["size_bytes"], "keeper_mtime_ns": target["mtime_ns"],
                "keeper_sha256": target["sha256"], "keeper_inode": target["inode"],
            }
        linked_to.add(target["image_id"])
    return link_to, linked_to


# ---------------------------------------------------------------- re-checking


def sha256_of(path: bytes) -> bytes:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open_regular_file(path) as f:  # never a FIFO or a device swapped in since the check
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.digest()


def _stat_problem(path: bytes, size: int, mtime_ns: int, what: str, *,
                  follow: bool = False) -> tuple[str | None, os.stat_result | None]:
    """Why the file at ``path`` is not the regular file loaded there (its size and time), with its stat. A keeper
    is stat'ed through a symbolic link (``follow``): apply never acts on it, and the loader followed the link."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return f"{what} is gone", None
    except OSError as exc:
        return f"{what} cannot be read ({exc.strerror})", None
    if stat.S_ISLNK(st.st_mode):
        return f"{what} is a symbolic link (apply acts on regular files only)", None
    if not stat.S_ISREG(st.st_mode):
        return f"{what} is not a regular file", None
    if st.st_size != size:
        return f"{what} changed since it was loaded (size)", None
    if st.st_mtime_ns != mtime_ns:
        return f"{what} changed since it was loaded (modified time)", None
    return None, st


def _walked_links(entries: Iterable[str]) -> frozenset[str]:
    """The paths (display text) a symbolic link on the way to a loaded file may have: the roots loads were
    given and the links to folders their walks entered (``loaded_entries``), and every folder above them
    (a root given through a link, /home -> /usr/home, names its files through it)."""
    walked = set()
    for entry in entries:
        while entry not in walked:
            walked.add(entry)
            entry = os.path.dirname(entry)
    return frozenset(walked)


def _unwalked_link(path: bytes, walked: frozenset[str]) -> bytes | None:
    """The first folder on the way to ``path`` that is a symbolic link no load walked through (None: none).

    Such a folder was swapped for a link after the load (or the path leads through one some other way):
    the files it reaches were never loaded, whatever their size, time and bytes say."""
    chain = []
    folder = os.path.dirname(os.path.abspath(path))
    while True:
        chain.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for folder in reversed(chain):  # from the top down: the first link that leads astray is the one to name
        try:
            st = os.lstat(folder)
        except OSError:
            return None  # the file's own check says it is gone or cannot be read
        if stat.S_ISLNK(st.st_mode) and display_path(folder) not in walked:
            return folder
    return None


def _other_inode(st: os.stat_result, recorded: int | None) -> bool:
    """Whether ``st`` is another file than the one loaded, by its inode (None: not recorded, not checked).

    The inode only, not the device: a removable disk plugged in again may get another st_dev for the same
    files, and a false refusal there would stop every apply on it. A file elsewhere that has this path now
    (its folder swapped) must then have the same inode number, size, modified time and SHA-256; a folder
    swapped for a symbolic link is refused anyway (``_unwalked_link``)."""
    return recorded is not None and as_bigint(st.st_ino) != recorded


def quick_check(item: PlannedAction) -> str | None:
    """Why ``item`` would be skipped, judging by the two files' stats only (no hashing): the dry run, and
    the first and last part of apply's own check (``_Checker.problem``)."""
    problem, st = _stat_problem(item.path_bytes, item.size_bytes, item.mtime_ns, "file")
    if problem:
        return problem
    # (a keeper that is a symbolic link to a file, which the load followed, keeps its cluster's bytes as well as
    # the file it leads to: that one, if a member, is the keeper's own file below; the other members may go)
    problem, keeper_st = _stat_problem(item.keeper_path_bytes, item.keeper_size_bytes, item.keeper_mtime_ns,
                                       "its keeper", follow=True)
    if problem:
        return problem + "; its duplicates are left alone"
    assert st is not None and keeper_st is not None
    if (link := _unwalked_link(item.path_bytes, item.walked_links)) is not None:
        return f"is reached through {display_path(link)}, a symbolic link no load walked through"
    if (link := _unwalked_link(item.keeper_path_bytes, item.walked_links)) is not None:
        return (f"its keeper is reached through {display_path(link)}, a symbolic link no load walked through; "
                "its duplicates are left alone")
    if _other_inode(keeper_st, item.keeper_inode):
        return "its keeper is another file than the one loaded (inode); its duplicates are left alone"
    if item.action == "hardlink" and os.path.samestat(st, keeper_st):
        return "already a hard link to its keeper"
    if _other_inode(st, item.inode):
        return "is another file than the one loaded (inode): it was replaced, or its folder swapped for another"
    if os.path.realpath(item.path_bytes) == os.path.realpath(item.keeper_path_bytes):
        return "is the keeper's own file under another path"
    if (kept := _kept_entry(item)) is not None:
        return kept
    return _link_problem(st, keeper_st) if item.action == "hardlink" else None


def _directory_entry(path: bytes) -> tuple[int, int, bytes] | None:
    """The directory entry ``path`` names: its folder's device and inode, and its name (None: no folder)."""
    try:
        folder = os.stat(os.path.dirname(path) or b".")
    except OSError:
        return None
    return folder.st_dev, folder.st_ino, os.path.basename(path)


def _kept_entry(item: PlannedAction) -> str | None:
    """Why ``item`` must be left: its path names the directory entry of a path its cluster keeps (the same
    folder mounted twice, which realpath does not see), so removing it would remove the kept file. Only
    another path to a file of its cluster (``same_file``: one device and inode) can be one."""
    if not item.same_file:
        return None
    entry = _directory_entry(item.path_bytes)
    for kept in item.kept_paths:
        if entry is not None and _directory_entry(kept) == entry:
            return (f"is {display_path(kept)} itself, reached through another mount of its folder: removing it "
                    "would remove that file")
    return None


def _link_problem(st: os.stat_result, keeper_st: os.stat_result) -> str | None:
    """Why a file cannot become a hard link to its keeper, judging by the two stats."""
    if os.path.samestat(st, keeper_st):
        return "already a hard link to its keeper"
    if st.st_dev != keeper_st.st_dev:
        return "on another file system than its keeper (a hard link cannot cross file systems)"
    if (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) != (keeper_st.st_uid, keeper_st.st_gid,
                                                             stat.S_IMODE(keeper_st.st_mode)):
        # the path would take the keeper's: others could read it, or its owner no longer write it
        # (util-linux hardlink refuses too, unless told to ignore them)
        return "has another owner, group or mode than its keeper (a hard link would give it the keeper's)"
    return None


class _Checker:
    """Full re-check before acting; keeper hashes are computed once per keeper."""

    def __init__(self) -> None:
        self._keeper_hash: dict[bytes, bytes | None] = {}

    def _keeper_sha(self, path: bytes) -> bytes | None:
        if path not in self._keeper_hash:
            try:
                self._keeper_hash[path] = sha256_of(path)
            except OSError:
                self._keeper_hash[path] = None
        return self._keeper_hash[path]

    def problem(self, item: PlannedAction) -> str | None:
        if (problem := quick_check(item)) is not None:
            return problem
        try:
            if sha256_of(item.path_bytes) != item.sha256:
                return "changed since it was loaded (content)"
        except OSError as exc:
            return f"file cannot be read ({exc.strerror})"
        if self._keeper_sha(item.keeper_path_bytes) != item.keeper_sha256:
            return "its keeper changed since it was loaded (content); its duplicates are left alone"
        if item.action == "hardlink" and item.keeper_sha256 != item.sha256:
            return "not an exact copy of its keeper"
        if item.action == "move":
            assert item.destination_bytes is not None
            if os.path.lexists(item.destination_bytes):
                return f"the destination {item.destination} already exists"
        # again, as late as can be: hashing a large file takes a while, and a folder swapped meanwhile must
        # not be acted on
        return quick_check(item)


# ---------------------------------------------------------------- the manifest


class Manifest:
    """An append-only JSON-lines journal; every line is fsynced before the caller goes on."""

    def __init__(self, path: Path, handle) -> None:
        self.path = path
        self._f = handle

    @classmethod
    def create(cls, path: str | os.PathLike, header: dict[str, Any]) -> "Manifest":
        """A new manifest, readable by its owner only (it lists private paths), in a folder
        made owner-only if it has to be made; an existing folder is left as it is."""
        p = Path(path)
        _makedirs_like(os.fsencode(p.parent), None)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise DbdedupError(f"the manifest {p} already exists", hint="name a new file with --manifest") from exc
        manifest = cls(p, os.fdopen(fd, "w", encoding="utf-8"))
        manifest.write(header)
        dir_fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the manifest's own directory entry survives a crash
        finally:
            os.close(dir_fd)
        return manifest

    @classmethod
    def append_to(cls, path: str | os.PathLike) -> "Manifest":
        p = Path(path)
        return cls(p, open(p, "a", encoding="utf-8"))

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def default_manifest_path(action: str) -> Path:
    """A new timestamped manifest under the user's state directory."""
    import platformdirs

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return Path(platformdirs.user_state_dir("dbdedup")) / "manifests" / f"apply-{action}-{stamp}.jsonl"


def read_manifest(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the events of a manifest. A torn last line (a crash while writing it) is ignored.

    DbdedupError when ``path`` is not a manifest apply wrote (another file named by mistake, one edited
    into another shape): each line a JSON object, the first naming the kind, every ``seq`` a number."""
    p = Path(path)
    hint = "give the path `dbdedup apply` printed after `manifest:` (a file named apply-ACTION-TIME.jsonl)"

    def not_a_manifest(why: str) -> DbdedupError:
        return DbdedupError(f"{p} is not a dbdedup apply manifest ({why})", hint=hint)

    try:
        data = p.read_bytes()
    except FileNotFoundError as exc:
        raise DbdedupError(f"no manifest at {p}", hint="`dbdedup apply` prints the manifest's path") from exc
    except OSError as exc:
        raise DbdedupError(f"cannot read the manifest {p} ({exc.strerror or exc})", hint=hint) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise not_a_manifest("it is not UTF-8 text") from None
    lines = text.split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            if i >= len(lines) - 2 and records:  # only the last line can be torn by a crash
                break
            raise not_a_manifest(f"line {i + 1} is not valid JSON") from None
        if not isinstance(record, dict):
            raise not_a_manifest(f"line {i + 1} is not a JSON object")
        if "seq" in record and type(record["seq"]) is not int:
            raise not_a_manifest(f"line {i + 1}: its seq is not a whole number")
        records.append(record)
    if not records or records[0].get("manifest") != MANIFEST_KIND:
        raise not_a_manifest("its first line does not say so")
    return records[0], records[1:]


# ---------------------------------------------------------------- acting


@dataclass
class ApplyResult:
    """What an apply run did."""

    action: str
    manifest: Path
    done: list[PlannedAction] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error)

    @property
    def bytes_freed(self) -> int:
        return sum(a.freed_bytes for a in self.done)


def _partial_name(target: bytes) -> bytes:
    head, tail = os.path.split(target)
    return os.path.join(head, b".dbdedup-" + uuid.uuid4().hex[:12].encode() + b"-" + tail[:100])


def _remove_partial(partial: bytes) -> bool:
    """Remove a temporary file of ours (a ``.dbdedup-`` name) if it is there; True if one was removed.
    A full disk or a kill in the middle of a copy must not leave it behind."""
    if not os.path.basename(partial).startswith(b".dbdedup-"):
        return False
    try:
        os.unlink(partial)
    except FileNotFoundError:
        return False
    return True


def _fsync_dir(path: bytes) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _makedirs_like(folder: bytes, mirrored: bytes | None, own: bool = False,
                   owner: tuple[int, int] | None = None) -> None:
    """Create ``folder`` and its missing parents. Each new folder gets the mode of the folder it
    mirrors, level for level from the bottom (``mirrored`` for ``folder``, its parent for the
    parent, ...), so a private source folder stays private where its files go; a folder that
    mirrors nothing (the --move-to directory itself, a manifest's folder) is made owner-only.
    The mirrored mode keeps its sticky bit: a copy of /tmp's 1777 without it would let anyone who
    reaches the folder rename or delete what apply puts there.
    ``own``: a mirroring folder that exists already (made by an earlier run, or meanwhile) must be a
    real folder of this user, not a symbolic link nor someone else's, or ``_NotOwnFolder`` is raised:
    apply moves files only into folders it could have made itself.
    ``owner``: (uid, gid) to give each new folder (undo, run by root: the folders it puts back are the
    owner's of the file it puts back there, not root's)."""
    mirroring = own and mirrored not in (None, b"/")  # (a level under the --move-to directory)
    if mirroring and _own_folder(folder):
        return
    if os.path.isdir(folder):
        return
    parent = os.path.dirname(folder)
    if mirrored is not None and mirrored != b"/":
        _makedirs_like(parent, os.path.dirname(mirrored), own, owner)
        try:
            mode = stat.S_IMODE(os.stat(mirrored).st_mode) & 0o1777 | stat.S_IRWXU
        except OSError:
            mode = 0o700
    else:
        _makedirs_like(parent, None)
        mode = 0o700
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        if mirroring:
            _own_folder(folder)  # made meanwhile: used only if it is this user's own
        return  # made meanwhile by someone else: left as it is
    if owner is not None:
        os.chown(folder, *owner)  # before the mode: chown clears set-id bits
    os.chmod(folder, mode)  # mkdir's mode passes through the umask; the mirrored mode must not


class _NotOwnFolder(OSError):
    """A folder under the --move-to directory that is a symbolic link or another user's."""


def _own_folder(folder: bytes) -> bool:
    """Whether ``folder`` exists as a real folder owned by this user (False when it does not exist);
    ``_NotOwnFolder`` when something else is there."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid():
        return True
    what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else \
        "another user's folder" if stat.S_ISDIR(st.st_mode) else "not a folder"
    raise _NotOwnFolder(errno.EEXIST, f"{os.fsdecode(folder)} is {what}, not a folder apply made: not used")


def _copy_private(source: bytes, target: bytes) -> None:
    """Copy a file's bytes and metadata to a new ``target`` that nobody else can read while it is written.
    Its owner and group are the source's when this user may give them (root always), as mv keeps them:
    a file of another user moved across file systems and back by root is still that user's."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open_regular_file(source) as src, os.fdopen(fd, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        owner = os.fstat(src.fileno())
        try:
            os.fchown(dst.fileno(), owner.st_uid, owner.st_gid)  # before the mode: chown clears set-id bits
        except PermissionError:
            pass  # not root: the copy is this user's, as mv's would be
        os.fsync(dst.fileno())
    shutil.copystat(source, target)


def _move_file(source: bytes, target: bytes, partial: bytes, own_folders: bool = False) -> None:
    """Move without ever overwriting ``target``: link + unlink on one file system; across file systems
    copy to ``partial`` (fsynced), link it to ``target``, then unlink the source. Folders made on the
    way take the mode of the source's folders they mirror; with ``own_folders`` (apply's moves under the
    --move-to directory, not undo's back to the recorded paths) those that exist must be this user's own."""
    owner = None
    if not own_folders and os.geteuid() == 0:  # undo as root: folders put back are the file's owner's
        st = os.lstat(source)
        owner = (st.st_uid, st.st_gid)
    _makedirs_like(os.path.dirname(target), os.path.dirname(source), own_folders, owner)
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
            raise
        try:
            _copy_private(source, partial)
            os.link(partial, target)
        finally:
            _remove_partial(partial)
    _fsync_dir(os.path.dirname(target))
    try:
        os.unlink(source)
    except OSError:
        os.unlink(target)  # leave the file where it was rather than in two places
        raise
    _fsync_dir(os.path.dirname(source))


def _hardlink_file(keeper: bytes, path: bytes, partial: bytes) -> None:
    """Replace ``path`` by a hard link to ``keeper`` in one atomic rename."""
    os.link(keeper, partial)
    try:
        os.replace(partial, path)
    except OSError:
        os.unlink(partial)
        raise
    _fsync_dir(os.path.dirname(path))


def _intent_record(seq: int, item: PlannedAction, partial: bytes | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event": "intent",
        "seq": seq,
        "action": item.action,
        "cluster_id": item.cluster_id,
        "image_id": item.image_id,
        "path": item.path,
        "path_bytes": item.path_bytes.hex(),
        "size": item.size_bytes,
        "mtime_ns": item.mtime_ns,
        "sha256": item.sha256.hex(),
        "distance": item.distance,
        "keeper": item.keeper_path,
        "keeper_bytes": item.keeper_path_bytes.hex(),
    }
    if item.destination_bytes is not None:
        record["destination"] = item.destination
        record["destination_bytes"] = item.destination_bytes.hex()
    if partial is not None:
        record["partial_bytes"] = partial.hex()
    return record


def _where_it_was(path: bytes) -> dict[str, Any]:
    """For undo: the folder ``path`` is in (device, inode, real path) and the file's mode, just before apply
    acts. Undo puts a file back only into that same folder, not into one swapped in at its path since; and a
    hard-linked file's mode is the keeper's meanwhile, so undo gives it back its own."""
    folder = os.path.dirname(path)
    try:
        folder_st = os.stat(folder)
        mode = stat.S_IMODE(os.lstat(path).st_mode)
    except OSError:
        return {}  # the action fails on its own
    return {"folder_device": folder_st.st_dev, "folder_inode": folder_st.st_ino,
            "folder_real_bytes": os.path.realpath(folder).hex(), "mode": mode}


def _partial_for(item: PlannedAction) -> bytes | None:
    if item.action == "move":
        assert item.destination_bytes is not None
        return _partial_name(item.destination_bytes)
    if item.action == "hardlink":
        return _partial_name(item.path_bytes)
    return None


def _record_run(conn: psycopg.Connection, run_id: uuid.UUID, plan: Plan, manifest_path: str | os.PathLike,
                partials: list[bytes | None]) -> None:
    """Record the run and every action it may take (uncommitted): what ``undo`` will accept."""
    queries = _run_queries()
    conn.execute(queries["record_run"], {
        "id": run_id, "action": plan.action, "move_to": plan.move_to,
        "manifest": display_path(os.path.abspath(os.fsencode(manifest_path))),
    })
    with conn.cursor() as cur, cur.copy(queries["record_actions"]) as copy:
        for seq, (item, partial) in enumerate(zip(plan.actions, partials), start=1):
            copy.write_row((run_id, seq, item.image_id, item.path_bytes, item.destination_bytes, partial,
                            item.size_bytes, item.mtime_ns, item.sha256))


def execute_plan(
    conn: psycopg.Connection,
    plan: Plan,
    manifest_path: str | os.PathLike,
    *,
    parameters: dict[str, Any] | None = None,
    on_event: Callable[[str, str, str], None] | None = None,
) -> ApplyResult:
    """Carry out ``plan``, journaling each action in a new manifest at ``manifest_path``.

    Before the first file is touched, the run and every action it may take are recorded (and
    committed) in dbdedup.apply_runs and dbdedup.apply_actions: ``undo`` reverses only what is
    recorded there. Each file is re-checked first (size, mtime, SHA-256, its keeper) and skipped
    when anything differs. ``on_event(kind, path, detail)`` is called for done/skip/failed. Files
    moved or deleted are marked missing in dbdedup.images (committed at the end).
    """
    run_id = uuid.uuid4()
    header = {
        "event": "start",
        "manifest": MANIFEST_KIND,
        "version": MANIFEST_VERSION,
        "run_id": str(run_id),
        "action": plan.action,
        "created": datetime.now(timezone.utc).isoformat(),
        "parameters": parameters or {},
    }
    if plan.move_to is not None:
        header["move_to"] = display_path(plan.move_to)
        header["move_to_bytes"] = plan.move_to.hex()
    partials = [_partial_for(item) for item in plan.actions]
    _record_run(conn, run_id, plan, manifest_path, partials)
    try:
        manifest = Manifest.create(manifest_path, header)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    result = ApplyResult(action=plan.action, manifest=manifest.path)
    if plan.action == "move" and plan.actions and plan.move_to is not None and not os.path.lexists(plan.move_to):
        # a folder apply makes is marked, so that a load of a parent folder does not take the duplicates in
        # again (one the user chose that exists already may hold other pictures: left as it is)
        try:
            _makedirs_like(plan.move_to, None)
        except OSError:
            pass  # each move then fails with the reason, as it would have
        else:
            mark_as_made(plan.move_to)
    checker = _Checker()
    notify = on_event or (lambda kind, path, detail: None)
    try:
        for seq, item in enumerate(plan.actions, start=1):
            problem = checker.problem(item)
            if problem:
                manifest.write({"event": "skip", "path": item.path, "path_bytes": item.path_bytes.hex(),
                                "reason": problem})
                result.skipped.append((item.path, problem))
                notify("skip", item.path, problem)
                continue
            partial = partials[seq - 1]
            manifest.write({**_intent_record(seq, item, partial), **_where_it_was(item.path_bytes)})
            try:
                if item.action == "delete":
                    os.unlink(item.path_bytes)
                    _fsync_dir(os.path.dirname(item.path_bytes))
                elif item.action == "move":
                    assert item.destination_bytes is not None and partial is not None
                    _move_file(item.path_bytes, item.destination_bytes, partial, own_folders=True)
                else:
                    assert partial is not None
                    _hardlink_file(item.keeper_path_bytes, item.path_bytes, partial)
            except OSError as exc:
                error = exc.strerror or str(exc)
                manifest.write({"event": "failed", "seq": seq, "error": error})
                result.failed.append((item.path, error))
                notify("failed", item.path, error)
                continue
            manifest.write({"event": "done", "seq": seq})
            result.done.append(item)
            notify("done", item.path, item.destination or "")
        manifest.write({"event": "end", "done": len(result.done), "skipped": len(result.skipped),
                        "failed": len(result.failed), "bytes_freed": result.bytes_freed})
    finally:
        manifest.close()
        gone = [a.image_id for a in result.done if a.action in ("move", "delete")]
        if gone:
            conn.execute(_queries()["mark_gone"], {"image_ids": gone})
        conn.commit()
    return result


# ---------------------------------------------------------------- undo


@dataclass
class UndoResult:
    """What undo did with each action of a manifest."""

    manifest: Path
    action: str
    restored: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)  # interrupted actions put back as they were
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cannot_undo: list[str] = field(default_factory=list)  # deleted files


def _same_file(a: bytes, b: bytes) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# (folder path, its inode when apply acted) -> the inode of the folder undo made again there, the first file it
# put back having found the folder gone: the next files of that folder go there too
_Remade = dict[tuple[bytes, int], int]


def _folder_problem(intent: dict[str, Any], path: bytes, remade: _Remade) -> str | None:
    """Why undo must not write ``path``: its folder is not the one the file was in when apply acted (another
    folder moved to its name, or a symbolic link on the way now leading elsewhere). None when it is the same,
    when it is gone (undo makes it again where it was: ``_note_remade``), when it is the one undo made again,
    or when the manifest (older) did not record it.

    Compared by inode and real path, not by device: see ``_other_inode``."""
    if "folder_inode" not in intent or "folder_real_bytes" not in intent:
        return None
    folder = os.path.dirname(path)
    if os.path.realpath(folder) != bytes.fromhex(intent["folder_real_bytes"]):
        return (f"its folder {display_path(folder)} now leads to another place than when apply acted "
                "(a symbolic link on the way): not put back")
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"its folder {display_path(folder)} cannot be read ({exc.strerror})"
    if st.st_ino != intent["folder_inode"] and st.st_ino != remade.get((folder, intent["folder_inode"])):
        return (f"its folder {display_path(folder)} is another folder than when apply acted (inode): "
                "not put back")
    return None


def _note_remade(intent: dict[str, Any], path: bytes, was_there: bool, remade: _Remade) -> None:
    """After undo put ``path`` back: if its folder was gone before, remember the one made again."""
    if not was_there and "folder_inode" in intent:
        try:
            remade[(os.path.dirname(path), intent["folder_inode"])] = os.stat(os.path.dirname(path)).st_ino
        except OSError:
            pass


def _restore_move(intent: dict[str, Any], remade: _Remade) -> tuple[str, str | None]:
    """Put a moved file back. Returns (outcome, reason): outcome restored / rolled_back / skipped / nothing."""
    source = bytes.fromhex(intent["path_bytes"])
    target = bytes.fromhex(intent["destination_bytes"])
    partial = bytes.fromhex(intent["partial_bytes"]) if intent.get("partial_bytes") else None
    if partial and os.path.lexists(partial):
        os.unlink(partial)
    if (problem := _folder_problem(intent, source, remade)) is not None:
        return "skipped", problem
    folder_there = os.path.lexists(os.path.dirname(source))
    source_there = os.path.lexists(source)
    target_there = os.path.lexists(target)
    if source_there and target_there and _same_file(source, target):
        os.unlink(target)  # interrupted between link and unlink: the file never left
        return "rolled_back", None
    if source_there:
        if target_there:
            return "skipped", "a file is at the original path again; the moved copy is left where it is"
        return "nothing", None  # the move never happened
    if not target_there:
        return "skipped", f"the moved file is gone from {intent.get('destination')}"
    st = os.lstat(target)
    if st.st_size != intent["size"] or sha256_of(target) != bytes.fromhex(intent["sha256"]):
        return "skipped", "the moved file changed after it was moved; left where it is"
    _move_file(target, source, _partial_name(source))
    _note_remade(intent, source, folder_there, remade)
    return "restored", None


def _undo_hardlink(intent: dict[str, Any], remade: _Remade) -> tuple[str, str | None]:
    """Give a hard-linked duplicate its own copy of the bytes again (the content was identical)."""
    path = bytes.fromhex(intent["path_bytes"])
    partial = bytes.fromhex(intent["partial_bytes"]) if intent.get("partial_bytes") else None
    if partial and os.path.lexists(partial):
        os.unlink(partial)
    if (problem := _folder_problem(intent, path, remade)) is not None:
        return "skipped", problem
    if not os.path.lexists(path):
        return "skipped", "the file is gone"
    if sha256_of(path) != bytes.fromhex(intent["sha256"]):
        return "skipped", "the file changed after it was linked"
    if os.stat(path).st_nlink < 2:
        return "nothing", None
    copy = _partial_name(path)
    try:
        _copy_private(path, copy)  # the keeper's inode: its times, and its mode
        if isinstance(intent.get("mode"), int):
            # the permission bits apply recorded (a manifest before them: equal to the keeper's when linked);
            # set-id bits only as the keeper's inode has them, never from a line of a file
            os.chmod(copy, stat.S_IMODE(os.stat(copy).st_mode) & ~0o777 | intent["mode"] & 0o777)
        if intent.get("mtime_ns") is not None:
            # its own modified time, as loaded: with the keeper's, the next apply would find it changed
            os.utime(copy, ns=(os.stat(copy).st_atime_ns, intent["mtime_ns"]))
        os.replace(copy, path)
    except BaseException:
        _remove_partial(copy)
        raise
    _fsync_dir(os.path.dirname(path))
    return "restored", None


_INTENT_FIELDS = (  # (manifest key, dbdedup.apply_actions column, how the manifest writes it)
    ("path_bytes", "path_bytes", bytes.hex),
    ("destination_bytes", "destination_bytes", bytes.hex),
    ("partial_bytes", "partial_bytes", bytes.hex),
    ("sha256", "sha256", bytes.hex),
    ("size", "size_bytes", int),
    ("mtime_ns", "mtime_ns", int),
)


# What apply saw just before it acted (``_where_it_was``), in the manifest only (the database records the run
# before any file is touched): checks undo makes on top of the recorded actions, never paths it acts on.
_APPLY_TIME_FIELDS = {"folder_device": int, "folder_inode": int, "folder_real_bytes": bytes.fromhex, "mode": int}


def _apply_time_fields(intent: dict[str, Any]) -> dict[str, Any] | None:
    """The apply-time fields of a manifest's intent line; None when one is malformed."""
    found = {}
    for key, kind in _APPLY_TIME_FIELDS.items():
        if key not in intent:
            continue
        value = intent[key]
        if kind is int and (type(value) is not int or value < 0):
            return None
        if kind is bytes.fromhex:
            try:
                bytes.fromhex(value)
            except (TypeError, ValueError):
                return None
        found[key] = value
    return found


def _as_recorded(row: dict[str, Any]) -> dict[str, Any]:
    """An intent line as apply wrote it for a recorded action."""
    intent: dict[str, Any] = {"seq": row["seq"], "path": display_path(bytes(row["path_bytes"]))}
    for key, column, encode in _INTENT_FIELDS:
        if row[column] is not None:
            intent[key] = encode(bytes(row[column])) if encode is bytes.hex else encode(row[column])
    if row["destination_bytes"] is not None:
        intent["destination"] = display_path(bytes(row["destination_bytes"]))
    return intent


def recorded_intents(conn: psycopg.Connection, manifest_path: str | os.PathLike, header: dict[str, Any],
                     intents: dict[Any, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The manifest's intents, checked against what apply recorded in the database for its run.

    Returns them as recorded; raises DbdedupError, before anything is done, when the manifest
    names no recorded run or one of its actions is not exactly a recorded one (another path,
    destination, temporary name, content, or an action the run never planned).
    """
    name = Path(manifest_path)
    hint = "undo reverses only what `dbdedup apply` recorded in the database it used (--db / --data-dir)"
    try:
        run_id = uuid.UUID(str(header["run_id"]))
    except (KeyError, ValueError) as exc:
        raise DbdedupError(f"{name} names no recorded apply run: nothing was undone",
                           hint=hint + " (manifests of version 1 name none)") from exc
    with conn.cursor(row_factory=dict_row) as cur:
        run = cur.execute(_run_queries()["recorded_run"], {"id": run_id}).fetchone()
        rows = cur.execute(_run_queries()["recorded_actions"], {"id": run_id}).fetchall() if run else []
    if run is None:
        raise DbdedupError(f"{name}: its apply run {run_id} is not recorded in this database: nothing was undone",
                           hint=hint)
    move_to = bytes(run["move_to"]).hex() if run["move_to"] is not None else None
    if header.get("action") != run["action"] or header.get("move_to_bytes") != move_to:
        raise DbdedupError(f"{name}: its first line differs from the recorded run {run_id}: nothing was undone",
                           hint=hint)
    recorded = {row["seq"]: _as_recorded(row) for row in rows}
    checked: dict[int, dict[str, Any]] = {}
    for seq, intent in intents.items():
        expected = recorded.get(seq) if isinstance(seq, int) else None
        if expected is None or any(intent.get(key) != expected.get(key) for key, _, _ in _INTENT_FIELDS) \
                or intent.get("action", run["action"]) != run["action"]:
            raise DbdedupError(
                f"{name}: action {seq} ({intent.get('path', '?')}) is not what apply recorded for run {run_id}: "
                "nothing was undone", hint=hint)
        seen = _apply_time_fields(intent)
        if seen is None:
            raise DbdedupError(f"{name}: action {seq} ({intent.get('path', '?')}) has a malformed folder or mode: "
                               "nothing was undone", hint=hint)
        checked[seq] = {**expected, **seen}
    return checked


def undo_manifest(conn: psycopg.Connection, manifest_path: str | os.PathLike) -> UndoResult:
    """Undo an apply run from its manifest: moved files go back to their paths, hard-linked
    duplicates get their own copy again; deleted files are reported as lost. Actions a crash
    interrupted (an intent without done) are rolled back or finished by looking at the disk.
    Safe to run twice: what is undone is recorded in the manifest and skipped next time.

    Only actions recorded in the database for the manifest's run are reversed, with the paths
    recorded there (``recorded_intents``): a manifest edited to name other files is refused whole.
    """
    header, events = read_manifest(manifest_path)
    action = header.get("action")
    intents: dict[Any, dict[str, Any]] = {}
    finished: set[int] = set()
    failed: set[Any] = set()
    undone: set[int] = set()
    for ev in events:
        kind = ev.get("event")
        if kind == "intent":
            intents[ev.get("seq")] = ev
        elif kind == "done":
            finished.add(ev.get("seq"))
        elif kind == "failed":  # the action raised before changing anything (see execute_plan)
            failed.add(ev.get("seq"))
        elif kind == "undone":
            undone.add(ev.get("seq"))
    checked = recorded_intents(conn, manifest_path, header, intents)
    for seq in failed & checked.keys():
        partial = checked.pop(seq).get("partial_bytes")
        if partial:  # a copy the failure cut short (a full disk) that an older dbdedup left behind
            _remove_partial(bytes.fromhex(partial))
    result = UndoResult(manifest=Path(manifest_path), action=action)
    journal = Manifest.append_to(manifest_path)
    remade: _Remade = {}
    try:
        for seq, intent in sorted(checked.items()):
            if seq in undone:
                continue
            path = intent["path"]
            if action == "delete":
                if seq in finished or not os.path.lexists(bytes.fromhex(intent["path_bytes"])):
                    result.cannot_undo.append(path)
                continue
            outcome, reason = _restore_move(intent, remade) if action == "move" else _undo_hardlink(intent, remade)
            if outcome == "skipped":
                result.skipped.append((path, reason or ""))
                continue
            if outcome == "restored" and seq in finished:
                result.restored.append(path)
            elif outcome in ("restored", "rolled_back") or (outcome == "nothing" and seq not in finished):
                # the action a crash interrupted (intent without done), whatever state it reached
                result.rolled_back.append(path)
            journal.write({"event": "undone", "seq": seq, "outcome": outcome})
            if outcome == "restored":
                # the file undo put back may be a new inode (a copy across file systems, a hard link's own copy):
                # recorded, or the next apply would take it for another file than the one loaded
                path_bytes = bytes.fromhex(intent["path_bytes"])
                st = os.lstat(path_bytes)
                conn.execute(_queries()["mark_restored"], {
                    "path_bytes": path_bytes, "size_bytes": intent["size"], "mtime_ns": intent["mtime_ns"],
                    "sha256": bytes.fromhex(intent["sha256"]), "device": as_bigint(st.st_dev),
                    "inode": as_bigint(st.st_ino),
                })
    finally:
        journal.close()
        conn.commit()
    return result


def describe_plan(plan: Plan, checks: Iterable[tuple[PlannedAction, str | None]] | None = None) -> list[str]:
    """Lines for the dry run: one per action (with the reason it would be skipped, if known)."""
    verbs = {"move": "move", "delete": "delete", "hardlink": "link"}
    lines = []
    pairs = checks if checks is not None else ((a, None) for a in plan.actions)
    for item, problem in pairs:
        what = f"{verbs[item.action]:<6} {item.path}"
        if item.action == "move":
            what += f"  ->  {item.destination}"
        elif item.action == "hardlink":
            what += f"  =>  {item.keeper_path}"
        else:
            what += f"  (keeper: {item.keeper_path})"
        if problem:
            what += f"   [will be skipped: {problem}]"
        lines.append(what)
    for path, reason in plan.left_alone:
        lines.append(f"keep   {path}   [{reason}]")
    return lines
