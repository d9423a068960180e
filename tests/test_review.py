"""`dbdedup review`: the page served by the real command, driven in Debian's headless Chromium.

The command runs as a user runs it (a subprocess on a real database, real images); Chromium
is driven through Playwright with the system's /usr/bin/chromium (no browser download). Without
chromium the browser tests are skipped, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import getpass
import http.client
import os
import select
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import psycopg
import pytest

from dbdedup import review as rv
from dbdedup import verdicts as vd
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


@pytest.fixture
def server(db_dsn, collection, tmp_path):
    """`dbdedup review` started as a user starts it; stopped with SIGTERM as a user's kill does."""
    move_to = tmp_path / "removed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dbdedup", "--db", db_dsn, "review", "--no-browser", "--move-to", str(move_to)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
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
    s = Server(line, proc)
    s.move_to = move_to
    yield s
    proc.terminate()
    try:
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


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
    # the clusters change behind the dry run's back
    with psycopg.connect(db_dsn) as conn:
        vd.choose_keeper(conn, vd.resolve_image(conn, collection.originals["o101"]), by="someone else")
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


def test_cluster_list_pages_by_keyset(db_dsn, collection, monkeypatch):
    monkeypatch.setattr(rv, "PAGE_SIZE", 2)
    with psycopg.connect(db_dsn) as conn:
        vd.add(conn, "keeper", vd.resolve_image(conn, collection.originals["o103"]).sha256)
        vd.recluster(conn)
        ids = sorted({_cluster_id(db_dsn, n) for n in ("o101.jpg", "o102.jpg", "o103.jpg")})
        reviewed = _cluster_id(db_dsn, "o103.jpg")
        client = rv.create_app(conn, rv.ReviewSettings(token="tok")).test_client()
        first = client.get("/clusters?t=tok").get_data(as_text=True)
        assert [f">{i}</a>" in first for i in ids] == [True, True, False]
        assert 'id="next-page"' in first and 'id="previous-page"' not in first
        second = client.get(f"/clusters?t=tok&after={ids[1]}").get_data(as_text=True)
        assert f">{ids[2]}</a>" in second
        assert 'id="next-page"' not in second and 'id="previous-page"' in second
        # o103's cluster is marked reviewed (a verdict names its keeper), the others are not
        pages = first + second
        assert pages.count("&#10003;") == 1
        assert pages.index(f">{reviewed}</a>") < pages.index("&#10003;") < pages.index(f">{reviewed}</a>") + 300
        assert client.get("/clusters").status_code == 403
