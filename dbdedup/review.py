"""`dbdedup review`: a local web page to go through the clusters and record verdicts.

The page is served on 127.0.0.1 only, and every request must carry the random token of the URL
``dbdedup review`` prints (``?t=...``); anything else gets 403, as does a request whose Host
header is not this server (a page elsewhere cannot reach it through DNS rebinding). Files are
reached only through image ids the database recorded: the page never takes a path to read,
and "apply" acts only on the plan ``dbdedup.apply`` builds from the database.

One cluster at a time, read by keyset on its id (the keeper's image id, indexed), so 10,000
clusters cost what one does. Each verdict is written with ``dbdedup.verdicts`` and the
clusters are rebuilt at once (``verdicts.recluster``), so the page shows what the verdict did.
"Apply what I reviewed" moves the duplicates of the clusters the reviewer decided on, through
``dbdedup.apply`` (re-checks, manifest, ``dbdedup undo``), after a dry run shown first. What the
reviewer decided on is the database's to say (``reviewed_clusters``): each verdict given here is
stored with the members of the cluster it was given on, so a restarted page counts the same clusters,
and the cluster list's mark is the same rule.

Flask (Werkzeug's threaded server, its routing and Jinja's autoescaping) does the HTTP; one
database connection serves every request, one request at a time (a lock), while thumbnails
are made outside the lock. Each request ends its transaction under the lock; a connection that
broke (the server stopped or restarted) is replaced by the next request, so the page recovers
once the database is back. Werkzeug's request log never shows the token.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from . import verdicts as vd
from .errors import DbdedupError, user_error
from .report import human_bytes
from .sqlfiles import named_queries
from .terminal import printable

TOKEN_PARAM = "t"
PAGE_SIZE = 50
THUMBNAIL_SIZES = {"small": 260, "large": 1024}
ASSETS = {"review.js": "text/javascript", "review.css": "text/css"}
# what the cluster list's marks say (their title, and the legend under the list)
MARK_TITLES = {
    "yours": 'reviewed by you: a verdict of yours names a member, or you gave one in this page on the cluster '
             'these members were in (taking a member out, say); "apply what I reviewed" acts on it',
    "others": 'a verdict by someone else names a member: the clustering honours it, but "apply what I reviewed" '
              'leaves this cluster alone',
}
_BIGINT_MAX = 2**63 - 1
# the token's value in a logged request line (the query string, or a form body echoed in an error)
_TOKEN_IN_LOG = re.compile(r"(?<=[?&;]" + TOKEN_PARAM + r"=)[^&;\s\"']+")


def _queries() -> dict[str, str]:
    return named_queries("queries/review.sql")


def new_token() -> str:
    """A fresh random token for the page's URL."""
    return secrets.token_urlsafe(24)


@dataclass
class ReviewSettings:
    """What a review page serves with: its token, where apply moves duplicates (None: apply is
    off), and who the verdicts are by."""

    token: str
    move_to: bytes | None = None
    user: str = "unknown"
    port: int | None = None  # the Host header must name it (set by serve)


# ---------------------------------------------------------------- reading the database


def _scalar(conn: psycopg.Connection, name: str, params: dict[str, Any]) -> Any:
    row = conn.execute(_queries()[name], params).fetchone()
    return row[0] if row else None


def first_cluster(conn: psycopg.Connection) -> int | None:
    """The first cluster id, or None when there is no cluster."""
    return _scalar(conn, "first_cluster", {})


def cluster_of(conn: psycopg.Connection, image_id: int) -> int | None:
    """The cluster an image is in now, or None."""
    return _scalar(conn, "cluster_of", {"image_id": image_id})


def cluster_view(conn: psycopg.Connection, cluster_id: int) -> dict[str, Any] | None:
    """One cluster as the page shows it: members (keeper first) with how each matched its keeper
    and the verdicts naming it, its neighbours for j/k, and its position. None when it is gone."""
    q = _queries()
    with conn.cursor(row_factory=dict_row) as cur:
        members = cur.execute(q["members"], {"cluster_id": cluster_id}).fetchall()
        if not members:
            return None
        keeper = members[0]
        named = vd.naming(conn, [bytes(m["sha256"]) for m in members])
        for i, m in enumerate(members, start=1):
            m["number"] = i
            m["sha256"] = bytes(m["sha256"])
            m["name"] = os.path.basename(m["path"])
            m["bytes_text"] = human_bytes(m["size_bytes"])
            m["verdicts"] = [_verdict_view(v, m["sha256"]) for v in named.get(m["sha256"], [])]
            m["chosen_keeper"] = any(v["kind"] == "keeper" for v in m["verdicts"])
            m["pair"] = None
            if not m["is_keeper"]:
                row = cur.execute(q["pair_with_keeper"], {"keeper_sha256": bytes(keeper["sha256"]),
                                                          "member_sha256": m["sha256"]}).fetchone()
                m["pair"] = _pair_view(row["pair"]) if row else None
        position = cur.execute(q["position"], {"cluster_id": cluster_id}).fetchone()
    return {
        "id": cluster_id,
        "members": members,
        "keeper": keeper,
        "previous": _scalar(conn, "previous_cluster", {"before": cluster_id}),
        "next": _scalar(conn, "next_cluster", {"after": cluster_id}),
        "position": (position["before"] or 0) + 1,
        "clusters": position["clusters"] or 0,
        "reclaimable": human_bytes(sum(m["size_bytes"] for m in members
                                       if not m["is_keeper"] and not m["is_protected"] and not m["is_same_file"])),
    }


def _verdict_view(v: vd.Verdict, sha256: bytes) -> dict[str, Any]:
    other = v.other(sha256)
    other_paths: tuple[str, ...] = ()
    if other is not None:
        other_paths = v.paths[v.sha256.index(other)]
    return {"id": v.id, "kind": v.kind, "label": vd.KIND_LABELS[v.kind], "by": v.decided_by,
            "at": v.decided_at.strftime("%Y-%m-%d %H:%M"), "note": v.note,
            "other": ", ".join(os.path.basename(p) for p in other_paths) if other is not None else None,
            "other_missing": other is not None and not other_paths}


def _pair_view(pair: dict[str, Any]) -> list[tuple[str, str]]:
    """The stored pair's signals as (label, value) rows: the known columns first, then any other
    column the pairs table has (a verification score, for instance) as it is."""
    known = [("hash_kind", "hash_kind"), ("hash distance", "distance"), ("byte-identical", "is_exact"),
             ("variant", "transform"), ("variant distance", "transform_distance"),
             ("embedding similarity", "similarity")]
    rows = []
    shown = set()
    for label, key in known:
        shown.add(key)
        value = pair.get(key)
        if value is None or key == "hash_kind" or (key == "is_exact" and not value):
            continue
        rows.append((label, _fmt(value)))
    for key in sorted(pair):
        if key not in shown and pair[key] is not None:
            rows.append((key.replace("_", " "), _fmt(pair[key])))
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def cluster_page(conn: psycopg.Connection, after: int, limit: int | None = None, *,
                 user: str | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` (PAGE_SIZE) clusters after the keyset mark ``after`` (a cluster id; -1 for the start).
    Each row says whether a verdict, anyone's, names a member (``reviewed``, the JSON report's sense) and,
    for ``user``, whether "apply what I reviewed" acts on it (``yours``, by ``reviewed_clusters``; None
    without a user)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(_queries()["page"], {"after": after, "limit": limit or PAGE_SIZE}).fetchall()
    yours = reviewed_clusters(conn, user, among=[r["cluster_id"] for r in rows]) if user is not None else set()
    for r in rows:
        r["keeper_name"] = os.path.basename(r["keeper_path"])
        r["yours"] = r["cluster_id"] in yours if user is not None else None
    return rows


def page_before(conn: psycopg.Connection, before: int, limit: int | None = None) -> int | None:
    """The keyset mark of the page that ends just before cluster ``before``."""
    first = _scalar(conn, "page_before", {"before": before, "limit": limit or PAGE_SIZE})
    return None if first is None else first - 1


def image_path(conn: psycopg.Connection, image_id: int) -> bytes | None:
    """The recorded path of a loaded image (the only paths the page reads)."""
    value = _scalar(conn, "image_path", {"image_id": image_id})
    return bytes(value) if value is not None else None


# ---------------------------------------------------------------- apply what was reviewed


def reviewed_clusters(conn: psycopg.Connection, user: str, among: Collection[int] | None = None) -> set[int]:
    """The clusters ``user`` reviewed, those "apply what I reviewed" acts on and the cluster list marks
    (of ``among`` only, when given): a cluster with a member a verdict by ``user`` names
    (``decided_by``: the login name the page and ``dbdedup verdicts add`` record), or one that holds
    nothing but members of the cluster a stored verdict of theirs was given on in the page
    (``dbdedup.verdicts.given_on``): so a cluster whose member the reviewer took out (not_in_cluster)
    counts, though no verdict names the rest, after the page restarts too. Verdicts by others
    (imported from a teammate's file, or another login) do not count. The rule is the query's."""
    rows = conn.execute(_queries()["reviewed_clusters"],
                        {"user": user, "among": sorted(among) if among is not None else None}).fetchall()
    return {r[0] for r in rows}


def reviewed_plan(conn: psycopg.Connection, move_to: bytes, *, user: str = "unknown"):
    """apply's plan to move the duplicates, kept to the reviewed clusters (``reviewed_clusters``)."""
    from . import apply as ap
    from .clusters import current_settings

    reviewed = reviewed_clusters(conn, user)
    settings = current_settings(conn)
    full = ap.plan_actions(conn, "move", move_to=move_to, protected_paths=settings.reference_paths)
    kept_paths = set()
    with conn.cursor(row_factory=dict_row) as cur:
        for cluster_id in sorted(reviewed):
            kept_paths.update(r["path"] for r in cur.execute(_queries()["members"], {"cluster_id": cluster_id}))
    return ap.Plan(action=full.action, move_to=full.move_to,
                   actions=[a for a in full.actions if a.cluster_id in reviewed],
                   left_alone=[(p, reason) for p, reason in full.left_alone if p in kept_paths]), settings


def plan_fingerprint(plan) -> str:
    """Names exactly what a plan does: the yes of a dry run applies only to the plan it showed."""
    digest = hashlib.sha256()
    for a in plan.actions:
        digest.update(b"%d\0%s\0%s\0%s\n" % (a.image_id, a.path_bytes, a.sha256, a.destination_bytes or b""))
    return digest.hexdigest()[:32]


# ---------------------------------------------------------------- the database connection


class DatabaseUnreachable(DbdedupError):
    """The page's database connection is gone and cannot be made again (the server is stopped)."""


def _unreachable(detail: str) -> DatabaseUnreachable:
    return DatabaseUnreachable(
        f"the database is not reachable: {detail}",
        hint="start it again (the embedded server: `dbdedup db url`, with the same --data-dir, starts it; "
             "another server: check it runs and check --db / DBDEDUP_DATABASE_URL), then reload this page")


class _Database:
    """The page's one connection, used by one request at a time (the lock). A request's work ends
    with its transaction, committed, or rolled back when it failed, so the connection is never left
    idle in a transaction between requests; a broken connection (the server stopped or restarted)
    is replaced through ``reconnect`` at the next request, and the ones made so are closed by ``close``."""

    def __init__(self, conn: psycopg.Connection, reconnect: Callable[[], psycopg.Connection] | None):
        self.conn = conn
        self.reconnect = reconnect
        self.lock = threading.Lock()
        self._made: list[psycopg.Connection] = []

    @contextmanager
    def use(self) -> Iterator[psycopg.Connection]:
        with self.lock:
            if self.conn.broken or self.conn.closed:
                self._replace()
            conn = self.conn
            try:
                yield conn
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.commit()
            except Exception as exc:
                if conn.broken or conn.closed:
                    if isinstance(exc, psycopg.Error):
                        raise _unreachable(_first_line(exc)) from exc
                    raise
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    try:
                        conn.rollback()
                    except psycopg.Error:  # (the connection broke meanwhile: the next request replaces it)
                        pass
                raise

    def _replace(self) -> None:
        if self.reconnect is None:
            raise _unreachable("the connection to it was lost")
        try:
            new = self.reconnect()
        except DbdedupError as exc:
            raise _unreachable(exc.message) from exc
        except psycopg.Error as exc:
            raise _unreachable(_first_line(exc)) from exc
        old = self.conn
        if old in self._made:
            self._made.remove(old)
            old.close()
        self.conn = new
        self._made.append(new)

    def close(self) -> None:
        """Close the connections made to replace broken ones (the caller's own stays the caller's)."""
        for conn in self._made:
            conn.close()
        self._made.clear()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else exc.__class__.__name__


def _verdict_ids(values: list[str]) -> list[int]:
    """Verdict ids from a form: ASCII digits within bigint (``str.isdigit`` also takes '²', and
    ``int`` refuses more than 4,300 digits)."""
    ids = []
    for value in values:
        if not (value.isascii() and value.isdigit()) or len(value) > 19 or int(value) > _BIGINT_MAX:
            raise DbdedupError(f"{value[:40]!r} is not a verdict id", hint="reload the page and try again")
        ids.append(int(value))
    return ids


# ---------------------------------------------------------------- the web app


def create_app(conn: psycopg.Connection, settings: ReviewSettings, *,
               reconnect: Callable[[], psycopg.Connection] | None = None):
    """The Flask app of the review page, on a connection the caller owns. With ``reconnect`` (a
    function that opens a new connection), a connection that broke is replaced by the next request."""
    from flask import Flask, Response, abort, redirect, render_template, request, url_for

    from . import apply as ap
    from .thumbnails import thumbnail_jpeg

    here = Path(__file__).parent
    app = Flask("dbdedup.review", root_path=str(here), template_folder="templates", static_folder=None)
    db = _Database(conn, reconnect)
    app.extensions["dbdedup.review.db"] = db

    def link(endpoint: str, **values: Any) -> str:
        return url_for(endpoint, **values, **{TOKEN_PARAM: settings.token})

    app.jinja_env.globals.update(link=link, token=settings.token, token_param=TOKEN_PARAM,
                                 kind_labels=vd.KIND_LABELS, apply_on=settings.move_to is not None,
                                 mark_titles=MARK_TITLES)
    # (a file name's control and direction characters shown escaped, as in the terminal: dbdedup/terminal.py)
    app.jinja_env.filters["printable"] = printable

    @app.before_request
    def only_the_owner():
        given = request.values.get(TOKEN_PARAM, "")
        if not secrets.compare_digest(given.encode(), settings.token.encode()):
            abort(403)
        if settings.port is not None and request.host not in (f"127.0.0.1:{settings.port}",
                                                              f"localhost:{settings.port}"):
            abort(403)

    @app.after_request
    def headers(response):
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(403)
    def forbidden(_error):
        return Response("forbidden: this page answers only the URL `dbdedup review` printed (with its token)\n",
                        status=403, mimetype="text/plain")

    @app.errorhandler(Exception)
    def failure(error):
        from werkzeug.exceptions import HTTPException

        if isinstance(error, HTTPException):
            return error
        problem = user_error(error)
        if problem is None:
            raise error
        # (the transaction was ended under the lock, in db.use: the connection is not touched here)
        status = 503 if isinstance(problem, DatabaseUnreachable) else 400
        return render_template("review/message.html", title="Could not do that", message=problem.message,
                               hint=problem.hint), status

    @app.get("/")
    def index():
        with db.use() as conn:
            first = first_cluster(conn)
        if first is None:
            return render_template("review/message.html", title="Nothing to review",
                                   message="There are no near-duplicate clusters.", hint=None)
        return redirect(link("cluster", cluster_id=first, **_carry(request)))

    @app.get("/cluster/<int:cluster_id>")
    def cluster(cluster_id: int):
        with db.use() as conn:
            view = cluster_view(conn, cluster_id)
            if view is not None:
                view["yours"] = cluster_id in reviewed_clusters(conn, settings.user, among=[cluster_id])
            following = None
            if view is None:  # rebuilt since: the next one by id
                following = _scalar(conn, "next_cluster", {"after": cluster_id}) or first_cluster(conn)
        if view is None:
            if following is None:
                return render_template("review/message.html", title="Nothing to review",
                                       message="There are no near-duplicate clusters any more.", hint=None)
            return redirect(link("cluster", cluster_id=following, **_carry(request)))
        return render_template("review/cluster.html", c=view, message=request.args.get("msg"))

    @app.get("/clusters")
    def clusters():
        after = request.args.get("after", type=int, default=-1)
        with db.use() as conn:
            rows = cluster_page(conn, after, user=settings.user)
            previous = page_before(conn, rows[0]["cluster_id"]) if rows else None
        return render_template("review/clusters.html", rows=rows, after=after, previous=previous,
                               more=len(rows) == PAGE_SIZE)

    @app.get("/image/<int:image_id>")
    def image(image_id: int):
        size = THUMBNAIL_SIZES.get(request.args.get("size", "small"), THUMBNAIL_SIZES["small"])
        with db.use() as conn:
            path = image_path(conn, image_id)
        if path is None:
            abort(404)
        try:
            jpeg = thumbnail_jpeg(path, size)
        except Exception:  # an unreadable or vanished file: the page shows its placeholder
            abort(404)
        return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    @app.get("/asset/<name>")
    def asset(name: str):
        if name not in ASSETS:
            abort(404)
        return Response((here / "templates" / "review" / name).read_bytes(), mimetype=ASSETS[name])

    @app.post("/verdict")
    def verdict():
        form = request.form
        kind = form.get("kind", "")
        back = form.get("back", type=int, default=-1)
        anchor = form.get("anchor", type=int)
        with db.use() as conn:
            image = vd.image_by_id(conn, form.get("image", type=int, default=0))
            other = None
            if kind in vd.PAIR_KINDS:
                if form.get("other"):
                    other = vd.image_by_id(conn, form.get("other", type=int, default=0))
                elif form.get("other_path", "").strip():
                    other = vd.resolve_image(conn, form["other_path"].strip())
                else:
                    raise DbdedupError("name the other image", hint="type its path as loaded")
            # the cluster(s) the verdict is given on, before it changes them (it may take a member out),
            # stored with it: "reviewed by you" counts what remains of them (reviewed_clusters)
            shown = _cluster_sha256s(conn, [i for i in (image, other) if i is not None])
            if kind == "keeper":
                vd.choose_keeper(conn, image, by=settings.user, given_on=shown)
            else:
                vd.add(conn, kind, image.sha256, other.sha256 if other else None, by=settings.user, given_on=shown)
            vd.recluster(conn)
            message = _after_message(conn, kind, image, other)
            target = _follow(conn, image.id if kind == "keeper" else anchor, back)
        return redirect(_cluster_link(link, target, message), code=303)

    @app.post("/verdict/forget")
    def forget():
        form = request.form
        back = form.get("back", type=int, default=-1)
        ids = _verdict_ids(form.getlist("verdict"))
        with db.use() as conn:
            removed = vd.remove(conn, ids)
            vd.recluster(conn)
            target = _follow(conn, form.get("anchor", type=int), back)
        message = f"forgot {len(removed)} verdict{'s' if len(removed) != 1 else ''}"
        return redirect(_cluster_link(link, target, message), code=303)

    def plan_of(conn: psycopg.Connection):
        assert settings.move_to is not None
        return reviewed_plan(conn, settings.move_to, user=settings.user)

    @app.get("/apply")
    def apply_dry_run():
        if settings.move_to is None:
            return render_template("review/message.html", title="Apply is off",
                                   message="This review was started without a place to move duplicates to.",
                                   hint="start it again with: dbdedup review --move-to DIR")
        with db.use() as conn:
            plan, _ = plan_of(conn)
            checks = [(item, ap.quick_check(item)) for item in plan.actions]
        will = [item for item, problem in checks if not problem]
        return render_template("review/apply.html", plan=plan, lines=ap.describe_plan(plan, checks),
                               files=len(will), freed=human_bytes(sum(i.size_bytes for i in will)),
                               fingerprint=plan_fingerprint(plan), move_to=os.fsdecode(settings.move_to),
                               result=None, changed=False)

    @app.post("/apply")
    def apply_now():
        if settings.move_to is None:
            abort(400)
        with db.use() as conn:
            plan, cluster_settings = plan_of(conn)
            if plan_fingerprint(plan) != request.form.get("fingerprint"):
                checks = [(item, ap.quick_check(item)) for item in plan.actions]
                will = [item for item, problem in checks if not problem]
                return render_template("review/apply.html", plan=plan, lines=ap.describe_plan(plan, checks),
                                       files=len(will), freed=human_bytes(sum(i.size_bytes for i in will)),
                                       fingerprint=plan_fingerprint(plan), move_to=os.fsdecode(settings.move_to),
                                       result=None, changed=True), 409
            result = ap.execute_plan(conn, plan, ap.default_manifest_path("move"),
                                     parameters={**cluster_settings.to_json(), "from": "dbdedup review"})
            vd.recluster(conn)
        return render_template("review/apply.html", plan=plan, lines=[], files=len(result.done),
                               freed=human_bytes(result.bytes_freed), fingerprint="", result=result,
                               move_to=os.fsdecode(settings.move_to), changed=False)

    return app


def _cluster_sha256s(conn: psycopg.Connection, images: list[vd.Image]) -> set[bytes]:
    """The images and the members of the clusters they are in now, by SHA-256."""
    found = {i.sha256 for i in images}
    clusters = [c for c in (cluster_of(conn, i.id) for i in images if i.id) if c is not None]
    if clusters:
        rows = conn.execute(_queries()["cluster_sha256s"], {"cluster_ids": clusters}).fetchall()
        found.update(bytes(r[0]) for r in rows)
    return found


def _carry(request) -> dict[str, str]:
    msg = request.args.get("msg")
    return {"msg": msg} if msg else {}


def _cluster_link(link: Callable[..., str], cluster_id: int | None, message: str) -> str:
    if cluster_id is None:
        return link("index", msg=message)
    return link("cluster", cluster_id=cluster_id, msg=message)


def _follow(conn: psycopg.Connection, anchor: int | None, back: int) -> int | None:
    """Where the page goes after a change: the anchor image's cluster now, else the cluster that
    follows the one shown, else the first."""
    if anchor is not None:
        found = cluster_of(conn, anchor)
        if found is not None:
            return found
    return _scalar(conn, "next_cluster", {"after": back}) or first_cluster(conn)


def _after_message(conn: psycopg.Connection, kind: str, image: vd.Image, other: vd.Image | None) -> str:
    name = os.path.basename(image.path)
    where = cluster_of(conn, image.id)
    now = f"now in cluster {where}" if where is not None else "now in no cluster"
    if kind == "keeper":
        return f"{name} is the chosen keeper ({now})"
    if kind == "not_in_cluster":
        return f"{name}: not in its cluster; {now}"
    assert other is not None
    label = "not a duplicate of" if kind == "not_duplicate" else "a duplicate of"
    return f"{name}: {label} {os.path.basename(other.path)}; {now}"


def _listen(port: int) -> socket.socket:
    """A socket listening on 127.0.0.1:``port`` (0: a free one). Bound here rather than by Werkzeug,
    which prints its own text and exits when the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # (as Werkzeug does: a port the previous run left in TIME_WAIT is free; a listening one is not)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise DbdedupError(f"port {port} is in use on 127.0.0.1 by another program",
                               hint="choose another --port, or leave it out (--port 0) for a free one") from exc
        raise DbdedupError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}",
                           hint="choose another --port, or leave it out (--port 0) for a free one") from exc
    return sock


def redact_token(line: str, token: str) -> str:
    """A log line with the page's token taken out (the request line carries it as ``?t=...``)."""
    return _TOKEN_IN_LOG.sub("***", line).replace(token, "***")


def _request_handler(token: str):
    """Werkzeug's request handler, logging each request without the token."""
    from werkzeug.serving import WSGIRequestHandler

    class Handler(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            text = message % args if args else message
            super().log(type, "%s", redact_token(text, token))

    return Handler


def serve(
    conn: psycopg.Connection,
    *,
    port: int = 0,
    token: str | None = None,
    move_to: str | os.PathLike | None = None,
    user: str = "unknown",
    on_ready: Callable[[str], None] | None = None,
    reconnect: Callable[[], psycopg.Connection] | None = None,
) -> None:
    """Serve the review page on 127.0.0.1 (``port`` 0: a free one) until interrupted.
    ``on_ready(url)`` is called with the URL, token included, once the server listens. With
    ``reconnect``, a broken connection is replaced (see ``create_app``)."""
    from werkzeug.serving import make_server

    settings = ReviewSettings(token=token or new_token(), user=user,
                              move_to=os.path.abspath(os.fsencode(os.path.expanduser(move_to))) if move_to else None)
    app = create_app(conn, settings, reconnect=reconnect)
    sock = _listen(port)
    try:
        server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_request_handler(settings.token),
                             fd=sock.fileno())
    finally:
        sock.close()  # (the server works on its own duplicate of the socket)
    settings.port = server.port
    url = f"http://127.0.0.1:{server.port}/?{TOKEN_PARAM}={settings.token}"
    try:
        if on_ready is not None:
            on_ready(url)
        server.serve_forever()
    finally:
        server.server_close()
        app.extensions["dbdedup.review.db"].close()
