"""`dbdedup review`: the page served by the real command, driven in Debian's headless Chromium.

The command runs as a user runs it (a subprocess on a real database, real images); Chromium
is driven through Playwright with the system's /usr/bin/chromium (no browser download). Without
chromium the browser tests are skipped, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import getpass
import http.client
import os
import re
import select
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import psycopg
import pytest
from markupsafe import escape

from dbdedup import review as rv
from dbdedup import verdicts as vd
from images import photo, resized, save
from test_report_sample import load, make_collection, run_cli
from test_verdicts import cluster, groups, keeper_of

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _missing(reason: str):
    if os.environ.get("CI", "").lower() in ("true", "1"):  # as tests/test_export.py decides
        pytest.fail(f"{reason}; CI (CI=true) requires it")
    pytest.skip(f"{reason}: the review page is not driven in a browser here (CI=true requires it)")


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _missing("chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    yield context.new_page()
    context.close()


@pytest.fixture
def collection(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    cluster(db_dsn)
    return col


class Server:
    def __init__(self, url: str, proc: subprocess.Popen):
        self.url = url
        self.proc = proc
        parts = urllib.parse.urlsplit(url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.host, self.port = parts.hostname, parts.port
        self.token = urllib.parse.parse_qs(parts.query)[rv.TOKEN_PARAM][0]

    def at(self, path: str) -> str:
        return f"{self.base}{path}?{rv.TOKEN_PARAM}={self.token}"

    def request(self, method: str, path: str, body: dict | None = None, host: str | None = None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {"Host": host} if host else {}
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        conn.close()
        return response.status, text


def _start_review(*args: str) -> Server:
    """`dbdedup ARGS review --no-browser ...` started as a user starts it; its Server once it printed the URL."""
    proc = subprocess.Popen([sys.executable, "-m", "dbdedup", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    line = ""
    while time.monotonic() < deadline and not line:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            line = proc.stdout.readline().strip()
        if proc.poll() is not None and not line:
            break
    if not line.startswith("http://127.0.0.1:"):
        proc.kill()
        pytest.fail(f"review did not print its URL: {line!r}\n{proc.stderr.read()}")
    return Server(line, proc)


def _stop(proc: subprocess.Popen) -> str:
    """Stop the review with SIGTERM, as a user's kill does (it exits 0); its stderr."""
    proc.terminate()
    try:
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.stderr.read()


@pytest.fixture
def server(db_dsn, collection, tmp_path):
    """`dbdedup review` started as a user starts it; stopped with SIGTERM as a user's kill does."""
    move_to = tmp_path / "removed"
    s = _start_review("--db", db_dsn, "review", "--no-browser", "--move-to", str(move_to))
    s.move_to = move_to
    yield s
    _stop(s.proc)


def _cluster_id(dsn: str, name: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT cluster_id FROM dbdedup.cluster_members WHERE path LIKE %s",
                           ("%/" + name,)).fetchone()
    assert row is not None, name
    return row[0]


def _number_on_page(page, name: str) -> str:
    return page.locator(f'figure.member[data-name="{name}"]').get_attribute("data-number")


def test_a_request_without_the_token_is_refused(server, db_dsn, browser, page):
    cid = _cluster_id(db_dsn, "o101.jpg")
    with psycopg.connect(db_dsn) as conn:
        image_id = conn.execute("SELECT id FROM dbdedup.images WHERE path LIKE '%/o101_small.jpg'").fetchone()[0]
    form = {"kind": "not_in_cluster", "image": str(image_id), "back": str(cid)}
    for method, path, body in (("GET", "/", None), ("GET", f"/cluster/{cid}", None), ("GET", f"/image/{image_id}", None),
                               ("GET", "/asset/review.js", None), ("GET", "/apply", None), ("GET", "/clusters", None),
                               ("POST", "/verdict", form), ("POST", "/apply", {"fingerprint": "x"})):
        assert server.request(method, path, body)[0] == 403, path
        wrong = path + f"?{rv.TOKEN_PARAM}=" + server.token[:-1] + ("A" if server.token[-1] != "A" else "B")
        assert server.request(method, wrong, body)[0] == 403, wrong
    # the token in the form body works like the one in the URL, but only on this server's host name
    assert server.request("GET", f"/cluster/{cid}?{rv.TOKEN_PARAM}={server.token}", host="evil.example")[0] == 403
    status, text = server.request("GET", f"/cluster/{cid}?{rv.TOKEN_PARAM}={server.token}")
    assert status == 200 and "o101" in text
    with psycopg.connect(db_dsn) as conn:
        assert vd.list_verdicts(conn) == []  # the refused POST wrote nothing
    # in the browser too
    response = page.goto(server.base + f"/cluster/{cid}")
    assert response.status == 403 and "forbidden" in page.content()
    response = page.goto(server.url)
    assert response.status == 200 and page.locator("figure.member").count() == 3


def test_mark_a_pair_not_a_duplicate_and_the_cluster_splits(server, db_dsn, page):
    cid = _cluster_id(db_dsn, "o102.jpg")
    before = next(g for g in groups(db_dsn) if "o102.jpg" in g)
    assert len(before) == 3
    keeper = keeper_of(db_dsn, "o102.jpg")
    member = sorted(before - {keeper})[0]
    page.goto(server.at(f"/cluster/{cid}"))
    assert page.locator("figure.member").count() == 3
    page.keyboard.press(_number_on_page(page, member))
    assert page.locator(f'figure.member.selected[data-name="{member}"]').count() == 1
    with page.expect_navigation():
        page.keyboard.press("n")
    # the page shows the rebuilt cluster: the keeper without the member
    message = page.locator("#message").inner_text()
    assert f"{member}: not a duplicate of {keeper}" in message and "now in no cluster" in message
    assert page.locator("figure.member").count() == 2
    assert page.locator(f'figure.member[data-name="{member}"]').count() == 0
    after = groups(db_dsn)
    assert frozenset(before - {member}) in after and not any(member in g for g in after)
    with psycopg.connect(db_dsn) as conn:
        (v,) = vd.list_verdicts(conn)
    assert v.kind == "not_duplicate" and v.decided_by == getpass.getuser()
    # the keeper's card now says it was reviewed, and u forgets the verdict: the cluster is whole again
    assert page.locator('figure.keeper li.verdict[data-kind="not_duplicate"]').count() == 1
    page.keyboard.press("1")
    with page.expect_navigation():
        page.keyboard.press("u")
    assert page.locator("figure.member").count() == 3
    assert frozenset(before) in groups(db_dsn)


def test_choose_a_keeper_then_apply_moves_the_right_files(server, db_dsn, collection, page):
    cid = _cluster_id(db_dsn, "o101.jpg")
    small = collection.near["o101_small.jpg"][1]
    assert keeper_of(db_dsn, "o101.jpg") != "o101_small.jpg"
    untouched = {p: p.read_bytes() for p in collection.root.rglob("*") if p.is_file() and "o101" not in p.name}
    page.goto(server.at(f"/cluster/{cid}"))
    page.keyboard.press(_number_on_page(page, "o101_small.jpg"))
    with page.expect_navigation():
        page.keyboard.press("K")
    assert "o101_small.jpg is the chosen keeper" in page.locator("#message").inner_text()
    assert page.locator('figure.keeper').get_attribute("data-name") == "o101_small.jpg"
    assert keeper_of(db_dsn, "o101.jpg") == "o101_small.jpg"

    # a: the dry run, only for the reviewed cluster; nothing moved yet
    with page.expect_navigation():
        page.keyboard.press("a")
    plan = page.locator("#plan").inner_text()
    moving = [collection.originals["o101"], collection.near["o101_copy.jpg"][1]]
    for p in moving:
        assert f"move   {p}  ->  {server.move_to}{p}" in plan
    assert "o102" not in plan and "o103" not in plan and f"move   {small}" not in plan
    assert all(p.exists() for p in moving) and not server.move_to.exists()
    contents = {p: p.read_bytes() for p in moving}

    with page.expect_navigation():
        page.locator("#apply-yes").click()
    assert "moved 2 files" in page.locator("#applied").inner_text()
    for p in moving:
        assert not p.exists()
        assert (Path(str(server.move_to) + str(p))).read_bytes() == contents[p]
    assert small.exists()
    for p, data in untouched.items():
        assert p.read_bytes() == data
    # the manifest the page names undoes it, through apply's own undo
    manifest = page.locator("#manifest").inner_text()
    assert page.locator("#undo").inner_text() == f"dbdedup undo {manifest}"
    run_cli(db_dsn, "undo", manifest)
    assert all(p.read_bytes() == contents[p] for p in moving)


def test_the_yes_applies_only_the_plan_it_confirmed(server, db_dsn, collection, page):
    cid = _cluster_id(db_dsn, "o103.jpg")
    page.goto(server.at(f"/cluster/{cid}"))
    page.keyboard.press("2")
    with page.expect_navigation():
        page.keyboard.press("K")
    with page.expect_navigation():
        page.keyboard.press("a")
    assert page.locator("#apply-yes").count() == 1
    # the clusters change behind the dry run's back: someone else keeps the other member
    with psycopg.connect(db_dsn) as conn:
        (other,) = {collection.originals["o103"], collection.near["o103_large.png"][1]} - {
            Path(p) for (p,) in conn.execute("SELECT path FROM dbdedup.cluster_members WHERE is_keeper "
                                             "AND path LIKE '%/o103%'")}
        vd.choose_keeper(conn, vd.resolve_image(conn, other), by="someone else")
        vd.recluster(conn)
    with page.expect_navigation():
        page.locator("#apply-yes").click()
    assert page.locator("#changed").count() == 1
    assert all(p.exists() for p in collection.root.rglob("*"))
    assert not server.move_to.exists()


def test_keys_move_between_clusters(server, db_dsn, page):
    ids = sorted({_cluster_id(db_dsn, n) for n in ("o101.jpg", "o102.jpg", "o103.jpg")})
    page.goto(server.url)
    assert page.url.endswith(f"/cluster/{ids[0]}?{rv.TOKEN_PARAM}={server.token}")
    for expected in ids[1:]:
        with page.expect_navigation():
            page.keyboard.press("j")
        assert f"/cluster/{expected}?" in page.url
    page.keyboard.press("j")  # the last one: nowhere to go
    with page.expect_navigation():
        page.keyboard.press("k")
    assert f"/cluster/{ids[1]}?" in page.url
    page.keyboard.press("c")
    assert page.locator("#compare").is_visible()
    # the member's picture is fetched when the pane opens: wait for it to load (a timeout fails the test)
    page.wait_for_function("() => { const img = document.querySelector('#compare-member');"
                           " return img !== null && img.complete && img.naturalWidth > 0; }", timeout=10_000)
    page.keyboard.press("Escape")
    assert not page.locator("#compare").is_visible()


def _marks(html: str) -> dict[int, str | None]:
    """The cluster list's mark of each cluster on a list page: "yours", "others" or None."""
    out = {}
    for cluster_id, row in re.findall(r">(\d+)</a></td>(.*?)</tr>", html, re.S):
        found = re.search(r'<span class="mark (\w+)"', row)
        out[int(cluster_id)] = found.group(1) if found else None
    return out


def test_cluster_list_pages_by_keyset(db_dsn, collection, monkeypatch):
    monkeypatch.setattr(rv, "PAGE_SIZE", 2)
    with psycopg.connect(db_dsn) as conn:
        vd.add(conn, "keeper", vd.resolve_image(conn, collection.originals["o103"]).sha256, by="me")
        vd.recluster(conn)
        ids = sorted({_cluster_id(db_dsn, n) for n in ("o101.jpg", "o102.jpg", "o103.jpg")})
        reviewed = _cluster_id(db_dsn, "o103.jpg")
        client = rv.create_app(conn, rv.ReviewSettings(token="tok", user="me")).test_client()
        first = client.get("/clusters?t=tok").get_data(as_text=True)
        assert [f">{i}</a>" in first for i in ids] == [True, True, False]
        assert 'id="next-page"' in first and 'id="previous-page"' not in first
        second = client.get(f"/clusters?t=tok&after={ids[1]}").get_data(as_text=True)
        assert f">{ids[2]}</a>" in second
        assert 'id="next-page"' not in second and 'id="previous-page"' in second
        # o103's cluster is marked reviewed by me (my verdict names its keeper), the others are not
        assert {**_marks(first), **_marks(second)} == {i: "yours" if i == reviewed else None for i in ids}
        beyond = client.get(f"/clusters?t=tok&after={ids[2]}")
        assert beyond.status_code == 200 and "No clusters here." in beyond.get_data(as_text=True)
        assert client.get("/clusters").status_code == 403


def test_the_list_marks_what_apply_what_i_reviewed_acts_on(db_dsn, collection, tmp_path):
    """The list's ✓ is "apply what I reviewed"'s rule, for this reviewer: a cluster only a teammate's
    verdict names has another mark (and apply leaves it alone); the rest of a cluster whose member I
    took out has the ✓ though no verdict names it. Each mark says what it means."""
    with psycopg.connect(db_dsn) as conn:
        settings = rv.ReviewSettings(token="tok", move_to=os.fsencode(tmp_path / "removed"), user="me")
        client = rv.create_app(conn, settings).test_client()
        vd.add(conn, "keeper", vd.resolve_image(conn, collection.originals["o101"]).sha256, by="a teammate")
        vd.add(conn, "keeper", vd.resolve_image(conn, collection.originals["o103"]).sha256, by="me")
        vd.recluster(conn)
        response = client.post("/verdict", data={"t": "tok", "kind": "not_in_cluster",
                                                 "image": str(_image_id(conn, "o102_lowq.jpg"))})
        assert response.status_code == 303
        o101, o102, o103 = (_cluster_id(db_dsn, n) for n in ("o101.jpg", "o102.jpg", "o103.jpg"))
        html = client.get("/clusters?t=tok").get_data(as_text=True)
        assert _marks(html) == {o101: "others", o102: "yours", o103: "yours"}
        assert {i for i, mark in _marks(html).items() if mark == "yours"} == rv.reviewed_clusters(conn, "me")
        plan = _planned(client)
        assert "o101" not in plan and "o102" in plan and "o103" in plan
        # what the marks mean is on the page: in their titles and under the list
        assert html.count(f'title="{escape(rv.MARK_TITLES["yours"])}"') >= 3
        assert f'title="{escape(rv.MARK_TITLES["others"])}"' in html
        legend = re.search(r'<p class="legend dim" id="legend">(.*?)</p>', html, re.S).group(1)
        assert "reviewed by you" in legend and "someone else" in legend
        # the cluster's own page says it too; a teammate's cluster does not
        assert 'id="yours"' in client.get(f"/cluster/{o102}?t=tok").get_data(as_text=True)
        assert 'id="yours"' not in client.get(f"/cluster/{o101}?t=tok").get_data(as_text=True)


def test_a_member_taken_out_still_counts_after_the_review_restarts(db_dsn, collection, tmp_path):
    """`dbdedup review` stopped and started again (a new process): the cluster whose member I took out
    is still one I reviewed, for apply and for the list, as long as the verdict is stored."""
    o102 = collection.originals["o102"]
    lowq, bright = collection.near["o102_lowq.jpg"][1], collection.near["o102_bright.jpg"][1]
    move_to = tmp_path / "removed"
    with psycopg.connect(db_dsn) as conn:
        lowq_id = _image_id(conn, "o102_lowq.jpg")
    first = _start_review("--db", db_dsn, "review", "--no-browser", "--move-to", str(move_to))
    try:
        status, _ = first.request("POST", "/verdict", {rv.TOKEN_PARAM: first.token, "kind": "not_in_cluster",
                                                       "image": str(lowq_id)})
        assert status == 303
        status, plan = first.request("GET", f"/apply?{rv.TOKEN_PARAM}={first.token}")
        assert status == 200 and "o102" in plan
    finally:
        assert "Traceback" not in _stop(first.proc)
    assert frozenset({"o102.jpg", "o102_bright.jpg"}) in groups(db_dsn)
    rest = _cluster_id(db_dsn, "o102.jpg")

    again = _start_review("--db", db_dsn, "review", "--no-browser", "--move-to", str(move_to))
    try:
        status, plan = again.request("GET", f"/apply?{rv.TOKEN_PARAM}={again.token}")
        assert status == 200
        assert [p for p in (o102, bright) if f"move   {p}" in plan] in ([o102], [bright])
        assert f"move   {lowq}" not in plan and "o101" not in plan and "o103" not in plan
        status, listed = again.request("GET", f"/clusters?{rv.TOKEN_PARAM}={again.token}")
        assert status == 200 and _marks(listed)[rest] == "yours"
        # forgetting the verdict (from the command line): the cluster is not reviewed any more
        with psycopg.connect(db_dsn) as conn:
            (mine,) = vd.list_verdicts(conn)
        assert mine.decided_by == getpass.getuser()
        run_cli(db_dsn, "verdicts", "remove", str(mine.id))
        status, plan = again.request("GET", f"/apply?{rv.TOKEN_PARAM}={again.token}")
        assert status == 200 and 'id="nothing"' in plan
    finally:
        assert "Traceback" not in _stop(again.proc)


def test_a_cluster_counts_by_a_verdict_given_on_it_until_an_unseen_image_joins(db_dsn, collection, tmp_path):
    """The rest of a cluster counts while it holds only images that were in it when the verdict was given;
    a verdict given outside the page (verdicts add) names its image only, as before."""
    with psycopg.connect(db_dsn) as conn:
        settings = rv.ReviewSettings(token="tok", move_to=os.fsencode(tmp_path / "removed"), user="me")
        client = rv.create_app(conn, settings).test_client()
        # from the command line, by the same login name: o101_small out, the rest of o101 not reviewed
        vd.add(conn, "not_in_cluster", vd.resolve_image(conn, collection.near["o101_small.jpg"][1]).sha256, by="me")
        vd.recluster(conn)
        assert frozenset({"o101.jpg", "o101_copy.jpg"}) in groups(db_dsn)
        assert rv.reviewed_clusters(conn, "me") == set()
        # in the page: o102_lowq out, the rest of o102 reviewed
        response = client.post("/verdict", data={"t": "tok", "kind": "not_in_cluster",
                                                 "image": str(_image_id(conn, "o102_lowq.jpg"))})
        assert response.status_code == 303
        assert rv.reviewed_clusters(conn, "me") == {_cluster_id(db_dsn, "o102.jpg")}
        assert rv.reviewed_clusters(conn, "a teammate") == set()

    # a new picture of o102 is loaded and joins that cluster: I never saw it there
    (tmp_path / "later").mkdir()
    save(resized(photo(102), 0.75), tmp_path / "later" / "o102_later.jpg", quality=88)
    load(db_dsn, tmp_path / "later")
    with psycopg.connect(db_dsn) as conn:
        vd.recluster(conn)
        assert frozenset({"o102.jpg", "o102_bright.jpg", "o102_later.jpg"}) in groups(db_dsn)
        assert rv.reviewed_clusters(conn, "me") == set()
        client = rv.create_app(conn, rv.ReviewSettings(token="tok", move_to=os.fsencode(tmp_path / "removed"),
                                                       user="me")).test_client()
        assert 'id="nothing"' in _planned(client)
        assert set(_marks(client.get("/clusters?t=tok").get_data(as_text=True)).values()) == {None}


def _image_id(conn, name: str) -> int:
    return conn.execute("SELECT id FROM dbdedup.images WHERE path LIKE %s", ("%/" + name,)).fetchone()[0]


def test_the_request_log_never_shows_the_token(server, db_dsn):
    cid = _cluster_id(db_dsn, "o101.jpg")
    assert server.request("GET", f"/cluster/{cid}?{rv.TOKEN_PARAM}={server.token}")[0] == 200
    assert server.request("GET", f"/clusters?after=-1&{rv.TOKEN_PARAM}={server.token}")[0] == 200
    assert server.request("GET", f"/nowhere?{rv.TOKEN_PARAM}={server.token}")[0] == 404
    stderr = _stop(server.proc)
    assert f"GET /cluster/{cid}?{rv.TOKEN_PARAM}=*** " in stderr and "GET /clusters?after=-1&t=*** " in stderr
    assert server.token not in stderr


def test_a_lost_connection_is_replaced_by_the_next_request(server, db_dsn):
    """The server ends the page's session (a restart does the same): one request says so, the next works."""
    cid = _cluster_id(db_dsn, "o101.jpg")
    page = f"/cluster/{cid}?{rv.TOKEN_PARAM}={server.token}"
    assert server.request("GET", page)[0] == 200
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        ended = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = current_database() AND application_name = 'dbdedup'").fetchall()
    assert ended == [(True,)]
    status, text = server.request("GET", page)
    assert status == 503 and "the database is not reachable" in text and "hint: start it again" in text
    status, text = server.request("GET", page)
    assert status == 200 and "o101" in text
    assert "Traceback" not in _stop(server.proc)


def test_review_recovers_after_the_embedded_database_stops(tmp_path):
    """`dbdedup db stop` under a running review: a page that says so (no traceback), until the
    database is started again; then the page works again."""
    col = make_collection(tmp_path / "photos")
    data_dir = str(tmp_path / "pgdata")

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "dbdedup", "--data-dir", data_dir, *args],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    try:
        cli("load", str(col.root), "--workers", "1")
        s = _start_review("--data-dir", data_dir, "review", "--no-browser")
        try:
            status, text = s.request("GET", f"/?{rv.TOKEN_PARAM}={s.token}")
            assert status == 302
            cli("db", "stop")
            for _ in range(2):  # the connection lost, then none to be made
                status, text = s.request("GET", f"/?{rv.TOKEN_PARAM}={s.token}")
                assert status == 503 and "the database is not reachable" in text and "dbdedup db url" in text
            cli("db", "url")
            status, text = s.request("GET", f"/?{rv.TOKEN_PARAM}={s.token}")
            assert status == 302
        finally:
            stderr = _stop(s.proc)
        assert "Traceback" not in stderr and "OperationalError" not in stderr
    finally:
        subprocess.run([sys.executable, "-m", "dbdedup", "--data-dir", data_dir, "db", "stop"], capture_output=True)


def test_a_port_in_use_is_one_line(db_dsn):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "dbdedup", "--db", db_dsn, "-q", "review", "--no-browser",
                               "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    errors = done.stderr.splitlines()
    assert errors[0] == f"dbdedup: error: port {port} is in use on 127.0.0.1 by another program"
    assert errors[1].startswith("hint: choose another --port") and len(errors) == 2, done.stderr


def test_forget_refuses_what_is_not_a_verdict_id(db_dsn, collection):
    with psycopg.connect(db_dsn) as conn:
        keeper = vd.add(conn, "keeper", vd.resolve_image(conn, collection.originals["o103"]).sha256)
        client = rv.create_app(conn, rv.ReviewSettings(token="tok")).test_client()
        for bad in ("\u00b2", "\u0661", "-1", "", str(2**63), "9" * 5000):  # '²' and '١' pass str.isdigit()
            response = client.post("/verdict/forget", data={"t": "tok", "verdict": [str(keeper), bad]})
            text = response.get_data(as_text=True)
            assert response.status_code == 400 and "is not a verdict id" in text, (bad, text)
        assert [v.id for v in vd.list_verdicts(conn)] == [keeper]  # nothing forgotten
        response = client.post("/verdict/forget", data={"t": "tok", "verdict": str(keeper)})
        assert response.status_code == 303 and vd.list_verdicts(conn) == []


def _planned(client) -> str:
    response = client.get("/apply?t=tok")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_apply_after_taking_a_member_out_moves_the_rest_of_its_cluster(db_dsn, collection, tmp_path):
    """not_in_cluster names only the member taken out; the rest of its cluster was reviewed too."""
    o102 = collection.originals["o102"]
    lowq, bright = collection.near["o102_lowq.jpg"][1], collection.near["o102_bright.jpg"][1]
    with psycopg.connect(db_dsn) as conn:
        settings = rv.ReviewSettings(token="tok", move_to=os.fsencode(tmp_path / "removed"), user="me")
        client = rv.create_app(conn, settings).test_client()
        response = client.post("/verdict", data={"t": "tok", "kind": "not_in_cluster",
                                                 "image": str(_image_id(conn, "o102_lowq.jpg"))})
        assert response.status_code == 303
        assert frozenset({"o102.jpg", "o102_bright.jpg"}) in groups(db_dsn)
        plan = _planned(client)  # the cluster's other two, one kept and one moved; not the one taken out
        assert [p for p in (o102, bright) if f"move   {p}" in plan] in ([o102], [bright])
        assert f"move   {lowq}" not in plan and "o101" not in plan and "o103" not in plan

        # forgetting that verdict: the cluster is whole again, and not reviewed any more
        (mine,) = [v.id for v in vd.list_verdicts(conn)]
        assert client.post("/verdict/forget", data={"t": "tok", "verdict": str(mine)}).status_code == 303
        assert 'id="nothing"' in _planned(client)


def test_apply_what_i_reviewed_leaves_the_clusters_only_others_decided_on(db_dsn, collection, tmp_path):
    """A verdict by someone else (as an import of a teammate's file stores it) reviews nothing of
    mine; my own verdict from the command line (the same login name) does."""
    with psycopg.connect(db_dsn) as conn:
        settings = rv.ReviewSettings(token="tok", move_to=os.fsencode(tmp_path / "removed"), user="me")
        client = rv.create_app(conn, settings).test_client()
        vd.add(conn, "keeper", vd.resolve_image(conn, collection.originals["o101"]).sha256, by="a teammate")
        vd.recluster(conn)
        assert 'id="nothing"' in _planned(client)
        vd.add(conn, "keeper", vd.resolve_image(conn, collection.originals["o103"]).sha256, by="me")
        vd.recluster(conn)
        plan = _planned(client)
        assert f"move   {collection.near['o103_large.png'][1]}" in plan and "o101" not in plan
