"""Security: only the owner reaches the embedded server, and starting it widens no folder.

The tests that need a second local user create throwaway system users (as root) and act
as them with ``runuser``; they are skipped, with the reason, when that is not possible.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

from dbdedup import db as dbmod
from dbdedup import embedded

PROBE = "dbdedup-probe"  # the other local user, who must be refused
OWNER = "dbdedup-owner"  # a normal (non-root) user who runs dbdedup
LAYOUTS = {
    "short": lambda base: base / "d" / "pgdata",  # the socket sits in the data directory
    "long": lambda base: base / ("p" * 90) / "pgdata",  # too long for a socket path: the socket goes elsewhere
}


@pytest.fixture(scope="session")
def local_users():
    """Throwaway local users PROBE and OWNER (made here as root, removed at the end)."""
    if shutil.which("runuser") is None:
        pytest.skip("needs runuser (util-linux) to act as another local user")
    made = []
    for name in (PROBE, OWNER):
        try:
            pwd.getpwnam(name)
            continue
        except KeyError:
            pass
        if os.geteuid() != 0:
            pytest.skip(f"acting as another local user needs root (or a user {name} and root for runuser)")
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        made.append(name)
    if os.geteuid() != 0:
        pytest.skip("runuser needs root")
    embedded.server_account()  # the account the embedded server runs as (dbdedup makes it on first use)
    yield
    for name in made:
        subprocess.run(["userdel", name], capture_output=True)


def _as(user: str, *cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", *cmd], capture_output=True, text=True, cwd="/", env=env,
                          timeout=120)


def _psql() -> str:
    """A psql any local user can run (Debian's, else the wheel's)."""
    return "/usr/bin/psql" if os.path.exists("/usr/bin/psql") else str(dbmod.psql_path())


def _open_base(owner: str = "root") -> Path:
    """A folder in /tmp that every user may enter (so a refusal comes from the server, not from the test)."""
    base = Path(tempfile.mkdtemp(prefix="dbdedup-sec-", dir="/tmp"))
    base.chmod(0o755)
    shutil.chown(base, owner)
    return base


@contextmanager
def _fresh_data_dir(layout: str, owner: str = "root", stop=dbmod.stop_embedded) -> Iterator[Path]:
    """A data directory path of ``layout`` in a new open folder; the server is stopped and all removed after."""
    base = _open_base(owner)
    data_dir = LAYOUTS[layout](base)
    try:
        yield data_dir
    finally:
        stop(data_dir)
        shutil.rmtree(base, ignore_errors=True)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k not in ("DBDEDUP_DATABASE_URL", "DBDEDUP_DATA_DIR")}
    env.update(extra)
    return env


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dbdedup", *args], capture_output=True, text=True, env=_clean_env(),
                          timeout=300)


def _refused(result: subprocess.CompletedProcess) -> bool:
    return result.returncode != 0 and ("Permission denied" in result.stderr or "authentication failed" in result.stderr)


def _assert_probe_can_run_psql() -> None:
    version = _as(PROBE, _psql(), "--version")
    assert version.returncode == 0, f"{PROBE} cannot run psql, so a refusal would prove nothing: {version.stderr}"


def _assert_configured_for_its_owner_only(data_dir: Path, uri: str, layout: str) -> Path:
    """No trust line, no TCP, a 0700 socket in a folder only the server's account can enter."""
    hba = [line for line in (data_dir / "pg_hba.conf").read_text().splitlines()
           if line.strip() and not line.startswith("#")]
    assert hba == ["local all all peer map=dbdedup"]
    with psycopg.connect(uri) as conn:
        settings = dict(conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('listen_addresses', 'unix_socket_permissions', 'unix_socket_directories')").fetchall())
    assert settings["listen_addresses"] == "" and settings["unix_socket_permissions"] == "0700"
    socket_dir = Path(settings["unix_socket_directories"].strip('"'))
    assert (socket_dir == data_dir.resolve()) == (layout == "short")
    st = socket_dir.stat()
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert st.st_uid == (pwd.getpwnam(embedded.SERVER_USER).pw_uid if os.geteuid() == 0 else os.geteuid())
    return socket_dir


@pytest.mark.skipif(os.geteuid() == 0, reason="as root, the tests with a second local user check this and more")
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_new_server_is_configured_for_its_owner_only(layout):
    with _fresh_data_dir(layout, pwd.getpwuid(os.geteuid()).pw_name) as data_dir:
        socket_dir = _assert_configured_for_its_owner_only(data_dir, dbmod.start_embedded(data_dir), layout)
    if layout == "long":
        assert not socket_dir.exists()  # the private socket folder goes with the server


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_another_local_user_is_refused_when_root_owns_the_server(layout, local_users):
    with _fresh_data_dir(layout) as data_dir:
        url = _cli("--data-dir", str(data_dir), "db", "url")
        assert url.returncode == 0, url.stderr
        uri = url.stdout.strip()
        owner = subprocess.run([_psql(), uri, "-Atc", "SELECT current_user"], capture_output=True, text=True)
        assert owner.stdout.strip() == "postgres", owner.stderr
        socket_dir = _assert_configured_for_its_owner_only(data_dir, uri, layout)
        _assert_probe_can_run_psql()
        probe = _as(PROBE, _psql(), uri, "-Atc", "SELECT 1")
        assert _refused(probe), probe
        # the server's own account reaches the socket, so this is the authentication refusing
        server = _as(embedded.SERVER_USER, _psql(), uri, "-Atc", "SELECT 1")
        assert server.returncode != 0 and "Peer authentication failed" in server.stderr, server
        owner_psql = _cli("--data-dir", str(data_dir), "db", "psql", "-Atc", "SELECT current_user")
        assert owner_psql.stdout.strip() == "postgres", owner_psql.stderr
    if layout == "long":
        assert not socket_dir.exists()  # the private socket folder goes with the server


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_another_local_user_is_refused_when_a_normal_user_owns_the_server(layout, local_users):
    can_run = _as(OWNER, sys.executable, "-c", "import dbdedup")
    if can_run.returncode != 0:
        pytest.skip(f"{OWNER} cannot run this Python and dbdedup: {can_run.stderr.strip()[-200:]}")
    env = _clean_env(HOME="/tmp")
    as_owner = [sys.executable, "-m", "dbdedup", "--data-dir"]
    with _fresh_data_dir(layout, OWNER, stop=lambda d: _as(OWNER, *as_owner, str(d), "db", "stop", env=env)) as data_dir:
        url = _as(OWNER, *as_owner, str(data_dir), "db", "url", env=env)
        assert url.returncode == 0, url.stderr
        uri = url.stdout.strip()
        owner = _as(OWNER, _psql(), uri, "-Atc", "SELECT current_user", env=env)
        assert owner.stdout.strip() == "postgres", owner.stderr
        _assert_probe_can_run_psql()
        probe = _as(PROBE, _psql(), uri, "-Atc", "SELECT 1")
        assert _refused(probe), probe


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_a_data_dir_made_by_an_older_dbdedup_is_converted(running, local_users):
    """The old layout: trust for every connection, the socket in a folder anyone can enter."""
    server = pwd.getpwnam(embedded.SERVER_USER)
    base = _open_base()
    data_dir, socket_dir = base / "pgdata", Path(tempfile.mkdtemp(prefix="dbdedup-old-socket-", dir="/tmp"))
    socket_dir.chmod(0o777)
    data_dir.mkdir(mode=0o700)
    for folder in (data_dir, socket_dir):
        os.chown(folder, server.pw_uid, server.pw_gid)
    bindir = str(dbmod.psql_path().parent)
    old_uri = f"postgresql://postgres@/postgres?host={socket_dir}"
    try:
        done = _as(embedded.SERVER_USER, f"{bindir}/initdb", "-D", str(data_dir), "--auth=trust", "-U", "postgres")
        assert done.returncode == 0, done.stderr
        done = _as(embedded.SERVER_USER, f"{bindir}/pg_ctl", "-D", str(data_dir), "-w", "-l", str(data_dir / "log"),
                   "-o", f"-k {socket_dir} -h ''", "start")
        assert done.returncode == 0, done.stderr
        with psycopg.connect(old_uri, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept AS SELECT 42 AS answer")
        _assert_probe_can_run_psql()
        hole = _as(PROBE, _psql(), old_uri, "-Atc", "SELECT current_user")
        assert hole.stdout.strip() == "postgres", "the old layout should let anyone in"
        if not running:
            assert _as(embedded.SERVER_USER, f"{bindir}/pg_ctl", "-D", str(data_dir), "-w", "stop").returncode == 0

        uri = dbmod.start_embedded(data_dir)

        assert "trust" not in [w for line in (data_dir / "pg_hba.conf").read_text().splitlines()
                               if not line.startswith("#") for w in line.split()]
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT answer FROM kept").fetchone() == (42,)
        for target in (uri, old_uri):
            probe = _as(PROBE, _psql(), target, "-Atc", "SELECT 1")
            assert probe.returncode != 0, probe.stdout
    finally:
        dbmod.stop_embedded(data_dir)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(socket_dir, ignore_errors=True)


# ---------------------------------------------------------------- never widen a folder's permissions


def _access_state(folder: Path) -> tuple[int, bytes | None]:
    try:
        acl = os.getxattr(folder, "system.posix_acl_access")
    except OSError:
        acl = None
    return stat.S_IMODE(os.stat(folder).st_mode), acl


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another account that needs a grant")
def test_migrate_as_root_keeps_a_private_parent_private(local_users):
    """The server's account needs search on the folders above its data: it alone gets it (an ACL
    entry, or o+x without ACLs), on the one private folder; no other folder changes."""
    private = Path(tempfile.mkdtemp(prefix="dbdedup-private-", dir="/tmp"))  # 0700, root's
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    data_dir = private / "inside" / "pgdata"
    data_dir.parent.mkdir(mode=0o755)
    watched = sorted({*data_dir.parents, *dbmod.psql_path().parents} - {private, data_dir.parent})
    before = {folder: _access_state(folder) for folder in watched}
    try:
        done = _cli("--data-dir", str(data_dir), "migrate")
        assert done.returncode == 0, done.stderr
        assert {folder: _access_state(folder) for folder in watched} == before
        mode, raw_acl = _access_state(private)
        server_uid = pwd.getpwnam(embedded.SERVER_USER).pw_uid
        if raw_acl is not None:
            acl = embedded.read_acl(private)
            named = {key: perm for key, perm in acl.items() if key[0] in (0x02, 0x08)}  # named users and groups
            assert named == {(0x02, server_uid): 0o1}  # search for the server's account, nothing else
            assert acl[(0x04, 0xFFFFFFFF)] == 0 and acl[(0x20, 0xFFFFFFFF)] == 0  # group and others: nothing
            assert mode == 0o710  # the group bits show the ACL mask (--x), not a grant to the group
            assert "granted the user embedded_postgres search (x)" in done.stderr
        else:
            assert mode == 0o701  # no ACLs here: search only, never read
        assert _as(PROBE, "ls", str(private)).returncode != 0
        assert _as(PROBE, "test", "-x", str(private)).returncode != 0 or raw_acl is None
        assert _as(embedded.SERVER_USER, "test", "-x", str(private)).returncode == 0
    finally:
        dbmod.stop_embedded(data_dir)
        shutil.rmtree(private, ignore_errors=True)
