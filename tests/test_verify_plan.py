"""The plan of the checks by pixels (dbdedup.verify_plan): only the pairs the clusters need are checked,
and the clusters are the ones checking every pair gives. The graph logic against a reference greedy
pass on many random graphs; then a report on real files in the embedded PostgreSQL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from PIL import Image, ImageFilter

from dbdedup import clusters, verdicts, verify_plan
from dbdedup.clusters import ClusterSettings
from dbdedup.load import load_paths
from dbdedup.verify_plan import Graph, reopen_unchecked
from dbdedup.verify_workers import verify_pending_pairs
from images import save
from test_verify_workers import add_pending, drawing, loaded, other_colours, textured_photo


def stars(links: set[tuple[int, int]], apart: set[tuple[int, int]] = frozenset()) -> dict[int, int]:
    """The clusters dbdedup.build_clusters computes from linked nodes, round by round: every remaining
    node with no better linked neighbour keeps its linked neighbours, each joining its best keeper
    (one judged ``apart`` from a better one of its keeper's waits for a later round); repeated on the
    rest. Returns {node: keeper} (keepers map to themselves)."""
    neighbours: dict[int, set[int]] = {}
    for a, b in links:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    remaining, assigned = set(neighbours), {}
    while True:
        left = {node: {other for other in neighbours[node] if other in remaining} for node in remaining}
        keepers = [node for node, others in left.items() if others and min(others) > node]
        if not keepers:
            return assigned
        joined: dict[int, int] = {}
        for keeper in keepers:
            for other in left[keeper]:
                joined[other] = min(joined.get(other, keeper), keeper)
        if apart:
            together: dict[int, list[int]] = {}
            for member, keeper in joined.items():
                together.setdefault(keeper, [keeper]).append(member)
            joined = {member: keeper for member, keeper in joined.items()
                      if not any(other < member and (other, member) in apart for other in together[keeper])}
        assigned.update(joined)
        assigned.update((keeper, keeper) for keeper in set(joined.values()))
        remaining -= set(joined) | set(joined.values())


def plan(rows: list[tuple], verdicts: dict[tuple[int, int], tuple[bool, str]], min_batch: int,
         apart: set[tuple[int, int]] = frozenset()) -> set:
    """Run the plan with ``verdicts`` as the checks' outcomes; returns the pairs it checked."""
    graph = Graph.from_rows(rows, apart)
    checked: set = set()
    while needed := graph.next_checks(min_batch):
        assert not checked.intersection(needed), "a pair checked twice"
        checked.update(needed)
        graph.checked([(a, b, *verdicts[(a, b)]) for a, b in needed])
    return checked


def test_the_plan_gives_the_clusters_of_checking_every_pair_and_checks_fewer():
    rng = random.Random(7)
    saved = 0
    for trial in range(300):
        n = rng.randint(2, 40)
        rows, verdicts, linked = [], {}, set()
        for a in range(n):
            for b in range(a + 1, n):
                if rng.random() > 0.35:
                    continue
                pair = (1000 + a, 1000 + b)  # the pair's images (one node each here)
                grey = rng.random() < 0.1
                if rng.random() < 0.3:  # verified before: a link
                    rows.append((a, b, False, None, None, grey))
                    linked.add((a, b))
                else:
                    rows.append((a, b, True, *pair, grey))
                    verified = rng.random() < 0.5
                    reason = rng.choice(["geometry", "signature", "dense"]) if verified else "colour"
                    verdicts[pair] = (verified, reason)
                    if verified and not (grey and reason not in ("geometry", "dense")):
                        linked.add((a, b))
        # reviewers' "not a duplicate" between nodes no pair links (the build drops such pairs)
        paired = {(a, b) for a, b, *_ in rows}
        apart = {(a, b) for a in range(n) for b in range(a + 1, n)
                 if (a, b) not in paired and trial % 2 and rng.random() < 0.05}
        for min_batch in (0, 5):
            checked = plan(rows, verdicts, min_batch, apart)
            known = {(a, b) for a, b, is_open, *_ in rows if not is_open}
            known |= {(a, b) for a, b, is_open, ia, ib, _ in rows
                      if is_open and (ia, ib) in checked and (a, b) in linked}
            # what the plan did not check links nothing in the build, and changes nothing
            assert stars(known, apart) == stars(linked, apart), trial
            if min_batch == 0:
                saved += len(verdicts) - len(checked)
    assert saved > 0


def test_a_family_needs_its_keepers_pairs_and_a_small_round_is_filled_from_the_next_nodes():
    # five copies of one picture, every pair open: the keeper's four pairs decide everything
    rows = [(a, b, True, 10 + a, 10 + b, False) for a in range(5) for b in range(a + 1, 5)]
    graph = Graph.from_rows(rows)
    first = graph.next_checks(min_batch=0)
    assert sorted(first) == [(10, 11), (10, 12), (10, 13), (10, 14)]
    assert graph.open_edges == 10
    graph.checked([(a, b, True, "geometry") for a, b in first])
    assert graph.next_checks(min_batch=0) == []  # the other six decide nothing
    # with a batch to fill, the undecided nodes' other open edges to better nodes come after the needed ones
    filled = Graph.from_rows(rows).next_checks(min_batch=7)
    assert sorted(filled[:4]) == first and set(filled[4:]) == {(11, 12), (11, 13), (12, 13)}
    # the keeper's copy found apart: the copy's next better edge decides whether it is a keeper itself
    graph = Graph.from_rows(rows)
    graph.checked([(10, 11, True, "geometry"), (10, 12, False, "colour"), (10, 13, True, "geometry"),
                   (10, 14, True, "geometry")])
    assert graph.next_checks(min_batch=0) == [(11, 12)]
    # a node with nobody worse to keep needs no verdict on its status: a chain 0-1-2 checks 0-1 only
    graph = Graph.from_rows([(0, 1, True, 10, 11, False), (1, 2, True, 11, 12, False)])
    assert graph.next_checks(min_batch=0) == [(10, 11)]
    graph.checked([(10, 11, True, "signature")])
    assert graph.next_checks(min_batch=0) == []
    # a greyscale keeper verified by its signature does not keep a colour copy (the build drops that link);
    # by an alignment, geometry or dense (a crop or a frame may add the colour), it does
    for aligned in ("geometry", "dense"):
        graph = Graph.from_rows([(0, 1, True, 10, 11, True), (0, 2, True, 10, 12, True), (1, 2, True, 11, 12, False)])
        graph.checked([(10, 11, True, "signature"), (10, 12, True, aligned)])
        assert graph.next_checks(min_batch=0) == []  # 2 joined 0; 1 is alone; 1-2 decides nothing
    # (were 0-2 dropped too, 1-2 would decide whether 1 keeps 2)
    graph = Graph.from_rows([(0, 1, True, 10, 11, True), (0, 2, True, 10, 12, True), (1, 2, True, 11, 12, False)])
    graph.checked([(10, 11, True, "signature"), (10, 12, True, "signature")])
    assert graph.next_checks(min_batch=0) == [(11, 12)]


FAMILY = ["large", "photo", "jpeg", "small", "blurred"]


def _family(tmp_path):
    """A photo in five near-copies (pHash within the threshold: linked under the rule applied without
    embeddings, transforms) and a drawing in two colourways. Returns {name: path}."""
    original = textured_photo(11)
    art = drawing(5)
    return {
        "large": save(original.resize((960, 720), Image.Resampling.BICUBIC), tmp_path / "set" / "large.png"),
        "photo": save(original, tmp_path / "set" / "photo.png"),
        "jpeg": save(original, tmp_path / "set" / "photo-q40.jpg", quality=40),
        "small": save(original.resize((320, 240), Image.Resampling.LANCZOS), tmp_path / "set" / "small.jpg",
                      quality=85),
        "blurred": save(original.filter(ImageFilter.GaussianBlur(1)), tmp_path / "set" / "blurred.png"),
        "art": save(art, tmp_path / "set" / "art.png"),
        "art-colours": save(other_colours(art), tmp_path / "set" / "art-colours.png"),
    }


def _loaded_family(conn, tmp_path, pairs: list[tuple[str, str]] | None = None) -> dict[str, int]:
    """_family loaded and clustered once (its settings stored), then its pairs replaced by ``pairs``
    (default: every two of the photo's copies), each waiting for its pixels. Returns {name: image id}."""
    image = loaded(conn, tmp_path / "set", _family(tmp_path))
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)
    conn.execute("DELETE FROM dbdedup.pairs")
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(FAMILY) for b in FAMILY[i + 1:]]
    for a, b in pairs:
        add_pending(conn, image[a], image[b])
    return image


def _reasons(conn, image: dict[str, int]) -> dict[frozenset, tuple]:
    names = {i: n for n, i in image.items()}
    return {frozenset((names[a], names[b])): (v, r) for a, b, v, r in conn.execute(
        "SELECT image_a, image_b, verified, verify_reason FROM dbdedup.pairs WHERE hash_kind = 'phash'")}


def _clusters(conn, image: dict[str, int]) -> set[frozenset[str]]:
    names = {i: n for n, i in image.items()}
    return {frozenset(names[i] for i in ids) for (ids,) in conn.execute(
        "SELECT array_agg(image_id) FROM dbdedup.cluster_members GROUP BY cluster_id")}


def test_a_report_checks_the_keepers_pairs_leaves_the_members_pairs_unchecked_and_verify_can_check_them(
        conn, tmp_path, db_dsn, monkeypatch):
    monkeypatch.setattr(verify_plan, "MIN_BATCH", 0)  # no batch filled up: only what the plan needs
    # every two of the family an embedding pair waiting for its pixels, and the look-alike with both
    image = _loaded_family(conn, tmp_path)
    family = FAMILY
    add_pending(conn, image["art"], image["art-colours"])
    add_pending(conn, image["large"], image["art-colours"], similarity=0.9)  # far by pHash: links nothing

    result = clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=2)

    reasons = _reasons(conn, image)
    keeper_pairs = {frozenset(("large", other)) for other in family[1:]}
    assert all(reasons[pair][0] is True for pair in keeper_pairs), reasons
    members_pairs = {frozenset((a, b)) for i, a in enumerate(family[1:], 1) for b in family[i + 1:]}
    assert {reasons[pair] for pair in members_pairs} == {(False, "unchecked")}
    assert reasons[frozenset(("large", "art-colours"))] == (False, "unchecked")  # no edge under the rule
    assert reasons[frozenset(("art", "art-colours"))] == (False, "colour")  # a keeper's own pair: checked
    assert _clusters(conn, image) == {frozenset(family)}
    assert result.verification.unchecked == len(members_pairs) + 1
    assert result.verification.done == len(keeper_pairs) + 1

    # nothing changed: the next report checks nothing and builds nothing
    again = clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)
    assert again.verification is None and not again.rebuilt

    # every pair checked after all (dbdedup verify --unchecked): the clusters are the same
    command = [sys.executable, "-c", "from dbdedup.cli.main import main; main()", "--db", db_dsn, "verify",
               "--unchecked", "--workers", "1"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    every = len(members_pairs) + 1
    assert run.stderr.strip().splitlines()[-1].startswith(f"checked {every} of {every} pending pairs")
    assert not any(reason == "unchecked" for _, reason in _reasons(conn, image).values())
    # verdicts given since the build: the next command builds again
    assert clusters.current_parameters(conn)["pending_at_build"] == every
    clusters.build_clusters(conn, ClusterSettings())
    assert _clusters(conn, image) == {frozenset(family)}


def test_when_the_keeper_is_gone_the_next_report_checks_the_pairs_it_left_unchecked(conn, tmp_path, monkeypatch):
    monkeypatch.setattr(verify_plan, "MIN_BATCH", 0)
    image = _loaded_family(conn, tmp_path,
                           [("large", "photo"), ("large", "jpeg"), ("photo", "jpeg"), ("photo", "small")])
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)
    # the large copy keeps the photo and the JPEG; the photo's own pairs decide nothing (the small copy joins
    # through the keeper's pair that its unchecked pair with the photo proposes)
    reasons = _reasons(conn, image)
    assert reasons[frozenset(("photo", "small"))] == reasons[frozenset(("photo", "jpeg"))] == (False, "unchecked")
    assert reasons[frozenset(("small", "large"))][0] is True
    assert _clusters(conn, image) == {frozenset({"large", "photo", "jpeg", "small"})}

    # the large copy deleted and the folder loaded again: the photo is the best of what is left
    (tmp_path / "set" / "large.png").unlink()
    summary = load_paths(conn, [tmp_path / "set"], workers=1, embedder=None)
    assert summary.missing == 1
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)
    assert {"photo", "jpeg", "small"} <= next(c for c in _clusters(conn, image) if "photo" in c)
    reasons = _reasons(conn, image)
    assert reasons[frozenset(("photo", "small"))][0] is True and reasons[frozenset(("photo", "jpeg"))][0] is True


def _pair_counts(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT count(*) FILTER (WHERE verified), count(*) FILTER (WHERE verified IS NULL), "
                         "count(*) FILTER (WHERE verify_reason = 'unchecked') FROM dbdedup.pairs").fetchone()


@pytest.mark.slow
def test_killing_dbdedup_report_mid_plan_and_reporting_again_gives_the_clusters_of_every_pair_checked(
        db_dsn, conn, tmp_path):
    """`kill -9 PID` of a real `dbdedup report` while it checks the pairs its clusters need (800 images: the
    first batch, the keepers' 640 pairs, is written in more than one transaction): the next
    report finishes the plan (pending and unchecked pairs alike), and its clusters are the ones
    checking every pair gives."""
    root = tmp_path / "families"
    families, sizes = 160, ((480, 360), (420, 315), (360, 270), (300, 225), (240, 180))
    for f in range(families):
        original = textured_photo(300 + f)
        for k, size in enumerate(sizes):
            save(original.resize(size, Image.Resampling.LANCZOS), root / f"{f:03d}-{k}.png")
    load_paths(conn, [root], workers=2, embedder=None)
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=2)
    # every two images of a family a pair waiting for its pixels (1,600 pairs; the clusters need 640)
    conn.execute("DELETE FROM dbdedup.pairs")
    conn.execute("INSERT INTO dbdedup.pairs (image_a, image_b, hash_kind, distance, is_exact, similarity) "
                 "SELECT x.id, y.id, 'phash', bit_count((x.phash # y.phash)::bit(64)), false, 0.9 "
                 "FROM dbdedup.images x JOIN dbdedup.images y ON x.id < y.id "
                 "AND left(split_part(x.path, '/', -1), 3) = left(split_part(y.path, '/', -1), 3)")
    conn.commit()
    built = conn.execute("SELECT built_at FROM dbdedup.cluster_parameters").fetchone()[0]
    conn.commit()
    command = [sys.executable, "-c", "from dbdedup.cli.main import main; main()", "--db", db_dsn, "report",
               "--format", "json"]
    log = tmp_path / "stderr.txt"
    with open(log, "wb") as err:
        process = subprocess.Popen(command, start_new_session=True, stderr=err, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while _pair_counts(db_dsn)[0] == 0:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)  # the parent only, as `kill -9 PID` does
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the report must have been killed while it ran"
    verified, pending, unchecked = _pair_counts(db_dsn)
    assert verified > 0 and pending + unchecked > 0, (verified, pending, unchecked)
    # killed before its build: the clusters say they are stale (the pairs the plan took from pending)
    stale_since, stale = conn.execute("SELECT built_at, pending_at_build FROM dbdedup.cluster_parameters").fetchone()
    conn.commit()
    assert stale_since == built and stale > 0

    result = clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=2)
    assert result.rebuilt
    names = dict(conn.execute("SELECT id, path FROM dbdedup.images"))
    found = [frozenset(Path(names[i]).name[:3] for i in ids) for (ids,) in conn.execute(
        "SELECT array_agg(image_id) FROM dbdedup.cluster_members GROUP BY cluster_id")]
    assert all(len(names_of) == 1 for names_of in found)  # nothing mixed
    assert sorted(min(names_of) for names_of in found) == [f"{f:03d}" for f in range(families)]  # a cluster a family
    assert _pair_counts(db_dsn)[1] == 0
    planned = set(conn.execute("SELECT image_id, cluster_id FROM dbdedup.cluster_assignments").fetchall())
    assert len(planned) == families * len(sizes)
    # every pair checked after all: the same clusters
    reopen_unchecked(conn)
    verify_pending_pairs(conn, workers=2)
    clusters.build_clusters(conn, ClusterSettings())
    assert set(conn.execute("SELECT image_id, cluster_id FROM dbdedup.cluster_assignments").fetchall()) == planned


def test_a_reviewers_not_a_duplicate_is_followed_by_the_plan_without_checking_every_pair(conn, tmp_path, monkeypatch):
    monkeypatch.setattr(verify_plan, "MIN_BATCH", 0)
    image = _loaded_family(conn, tmp_path)
    sha = dict(conn.execute("SELECT id, sha256 FROM dbdedup.images"))
    verdicts.add(conn, "not_duplicate", sha[image["jpeg"]], sha[image["small"]], by="tester")
    conn.commit()

    result = clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)

    # the two judged apart never share a cluster: the worse-ranked one waits a round, and is then alone
    # (its other pairs were with members already); the members' own pairs are still left unchecked
    found = _clusters(conn, image)
    assert not any({"jpeg", "small"} <= c for c in found)
    assert max(found, key=len) >= {"large", "photo", "blurred"} and len(max(found, key=len)) == 4
    assert result.verification.unchecked > 0
    # and they are the clusters of every pair checked
    planned = set(conn.execute("SELECT image_id, cluster_id FROM dbdedup.cluster_assignments").fetchall())
    reopen_unchecked(conn)
    verify_pending_pairs(conn, workers=1)
    clusters.build_clusters(conn, ClusterSettings())
    assert set(conn.execute("SELECT image_id, cluster_id FROM dbdedup.cluster_assignments").fetchall()) == planned


def test_a_reviewers_duplicate_between_a_greyscale_keeper_and_a_colour_picture_is_planned_as_the_build_keeps_it(
        conn, tmp_path, monkeypatch):
    # The build keeps a reviewer-confirmed link even where the greyscale-keeper rule drops every other
    # verdict (a greyscale picture ranked first, a colour one with colours in its middle): the plan's
    # graph must keep it too, or it plans the colour picture as a keeper of its own and leaves unchecked
    # the pair its copy then needs.
    monkeypatch.setattr(verify_plan, "MIN_BATCH", 0)
    colour, other = textured_photo(22, (640, 480)), textured_photo(23, (640, 480))
    files = {
        "grey": save(textured_photo(21, (960, 720)).convert("L"), tmp_path / "set" / "grey.png"),
        "colour": save(colour, tmp_path / "set" / "colour.png"),
        "copy": save(colour.resize((480, 360), Image.Resampling.LANCZOS), tmp_path / "set" / "copy.png"),
        "copy-of-copy": save(colour.resize((320, 240), Image.Resampling.LANCZOS), tmp_path / "set" / "small.jpg",
                             quality=90),
        "unrelated": save(other, tmp_path / "set" / "unrelated.png"),
    }
    image = loaded(conn, tmp_path / "set", files)
    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)  # matched once: its settings stored
    conn.execute("DELETE FROM dbdedup.pairs")
    add_pending(conn, image["colour"], image["copy"])
    add_pending(conn, image["copy"], image["copy-of-copy"])
    sha = dict(conn.execute("SELECT id, sha256 FROM dbdedup.images"))
    verdicts.add(conn, "duplicate", sha[image["grey"]], sha[image["colour"]], by="tester")
    conn.commit()
    chroma = dict(conn.execute("SELECT id, sqrt((SELECT sum(x * x) / 128 FROM unnest(colour_signature[257:384]) x)) "
                               "FROM dbdedup.images").fetchall())
    assert chroma[image["grey"]] < 1 < chroma[image["colour"]]  # the rule's case: a grey keeper, a colour member

    clusters.ensure_clusters(conn, ClusterSettings(), verify_workers=1)

    # the grey picture keeps the colour one (the reviewer's link); the copy, no longer kept by the colour
    # picture, keeps its own copy: the pair it needs was checked
    found = _clusters(conn, image)
    assert {"grey", "colour"} in found and {"copy", "copy-of-copy"} in found, found
    planned = set(conn.execute("SELECT image_id, cluster_id FROM dbdedup.cluster_assignments").fetchall())
    reopen_unchecked(conn)
    verify_pending_pairs(conn, workers=1)
    clusters.build_clusters(conn, ClusterSettings())
    assert set(conn.execute("SELECT image_id, cluster_id FROM dbdedup.cluster_assignments").fetchall()) == planned


def mini_set(root: Path) -> dict[str, Path]:
    """A folder of 8 pictures: two textured photos (p01, p04), each with a copy in a 30 px white border and a crop
    of 10% off each side (pHash 16 to 30 bits away: found by the embeddings, verified by their pixels), and two
    unrelated ones (p00, p02). Returns {stem: path}."""
    import images
    from PIL import ImageOps

    files = {}
    for n in (1, 4):
        picture = images.textured_photo(n)
        w, h = picture.size
        files[f"p0{n}"] = save(picture, root / f"p0{n}.jpg", quality=90)
        files[f"p0{n}_border"] = save(ImageOps.expand(picture, 30, fill="white"), root / f"p0{n}_border.jpg",
                                      quality=90)
        files[f"p0{n}_crop"] = save(picture.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
                                    root / f"p0{n}_crop.jpg", quality=90)
    files["p00"] = save(images.textured_photo(100), root / "p00.jpg", quality=90)
    files["p02"] = save(images.photo(2, (640, 480)), root / "p02.jpg", quality=90)
    return files


def named_clusters(dsn: str) -> set[frozenset[str]]:
    """The clusters of dbdedup.cluster_members as sets of file stems."""
    with psycopg.connect(dsn) as c:
        return {frozenset(Path(p).stem for p in paths) for (paths,) in c.execute(
            "SELECT array_agg(path) FROM dbdedup.cluster_members GROUP BY cluster_id")}


def named_pair(dsn: str, a: str, b: str) -> tuple:
    """(verified, verify_reason) of the pHash pair of the files with stems a and b."""
    with psycopg.connect(dsn) as c:
        return c.execute(
            "SELECT p.verified, p.verify_reason FROM dbdedup.pairs p JOIN dbdedup.images x ON x.id = p.image_a "
            "JOIN dbdedup.images y ON y.id = p.image_b WHERE p.hash_kind = 'phash' "
            "AND ARRAY[split_part(x.path, '/', -1), split_part(y.path, '/', -1)] <@ ARRAY[%s, %s]",
            (f"{a}.jpg", f"{b}.jpg")).fetchone()


def _mini_reported_then_keeper_gone(dsn: str, root: Path) -> None:
    """The mini set loaded and reported, then the keeper of p04's cluster of three deleted and the folder loaded
    again: the pair of the two copies left, which the report did not need, is unchecked."""
    from test_report_sample import run_cli

    mini_set(root)
    run_cli(dsn, "load", "--workers", "1", str(root))
    run_cli(dsn, "report")
    assert {"p04_border", "p04", "p04_crop"} in named_clusters(dsn)
    assert named_pair(dsn, "p04", "p04_crop") == (False, "unchecked")  # a member's pair with a member
    (root / "p04_border.jpg").unlink()
    run_cli(dsn, "load", "--workers", "1", str(root))


def _refresh(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CALL dbdedup.refresh()")


def test_the_cron_route_checks_the_pairs_a_report_left_unchecked_once_their_keeper_is_gone(db_dsn, tmp_path):
    # README's scheduled jobs: CALL dbdedup.refresh() in SQL, then `dbdedup verify` for the pairs that need
    # pixels. The keeper gone, the two copies left are a cluster only once their pair is checked: `dbdedup verify`
    # checks it as a report's plan does, and the next refresh gives the clusters a report gives
    from test_report_sample import run_cli

    _mini_reported_then_keeper_gone(db_dsn, tmp_path / "mini")
    _refresh(db_dsn)
    verify = run_cli(db_dsn, "verify", "--workers", "1")
    assert named_pair(db_dsn, "p04", "p04_crop")[0] is True, verify.stderr
    _refresh(db_dsn)
    cron = named_clusters(db_dsn)
    assert cron == {frozenset({"p01_border", "p01", "p01_crop"}), frozenset({"p04", "p04_crop"})}
    run_cli(db_dsn, "report")
    assert named_clusters(db_dsn) == cron


def test_a_report_after_a_refresh_checks_the_pairs_left_unchecked_once_their_keeper_is_gone(db_dsn, tmp_path):
    # refresh() has no plan of the checks by pixels: it builds with the unchecked pair linking nothing, and the
    # next report must not take that build as current
    from test_report_sample import run_cli

    _mini_reported_then_keeper_gone(db_dsn, tmp_path / "mini")
    _refresh(db_dsn)
    assert {"p04", "p04_crop"} not in named_clusters(db_dsn)
    run_cli(db_dsn, "report")
    assert {"p04", "p04_crop"} in named_clusters(db_dsn)
    assert named_pair(db_dsn, "p04", "p04_crop")[0] is True
