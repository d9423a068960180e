"""The keypoint store: the verification workers' keypoints kept on disk for one report, on real images
and the real embedded PostgreSQL."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

from dbdedup import clusters, keypoint_store, verify, verify_workers
from dbdedup.keypoint_store import PREFIX, KeypointStore, StoreAccess, decode, encode, remove_stale
from dbdedup.verify_workers import PairChecker, verify_pending_pairs
from test_verify_workers import add_pending, crop_25, loaded, make_set, pending, textured_photo


def test_stored_keypoints_align_as_the_found_ones_and_only_for_the_file_recorded(tmp_path):
    original = textured_photo(1)
    a, b = verify.keypoints(original), verify.keypoints(crop_25(original))
    back_a, back_b = decode(encode(a)), decode(encode(b))
    for found, back in ((a, back_a), (b, back_b)):
        assert back.pixels is None and back.size == found.size == (192, 256)
        assert np.array_equal(back.points, found.points) and np.array_equal(back.descriptors, found.descriptors)
        assert back.descriptors.dtype == np.float32 and len(found.points) > 50
    whole, again = verify.geometric_match(a, b), verify.align_keypoints(back_a, back_b)
    assert (again.matches, again.inliers, again.scale) == (whole.matches, whole.inliers, whole.scale)
    assert np.array_equal(again.transform, whole.transform) and whole.inliers >= verify.MIN_INLIERS
    # the overlap is compared on the pixels, given apart
    compared = verify.compare_overlap(again, a.pixels, b.pixels)
    assert (compared.overlap, compared.colour, compared.structure) == (whole.overlap, whole.colour, whole.structure)
    assert whole.colour is not None and whole.structure > 0.9
    # ORB keypoints are not kept (binary descriptors; the workers find SIFT's)
    assert encode(verify.keypoints(original, method="orb")) is None
    with KeypointStore(parent=tmp_path) as store:
        access = StoreAccess(store.open())
        access.save(7, 1000, 123, "identity", a)
        assert np.array_equal(access.load(7, 1000, 123, "identity").descriptors, a.descriptors)
        # another size or mtime (the file changed), another orientation, another image: not these keypoints
        for key in ((7, 1000, 124, "identity"), (7, 1001, 123, "identity"), (7, 1000, 123, "flip_h"),
                    (8, 1000, 123, "identity")):
            assert access.load(*key) is None, key
        # beyond its budget a worker stops adding files, and a truncated file is no keypoints
        full = StoreAccess(store.path, budget=access.written)
        full.written = access.written
        full.save(9, 1, 1, "identity", a)
        assert full.load(9, 1, 1, "identity") is None
        name = next(n for n in os.listdir(store.path) if n.startswith("7-"))
        with open(os.path.join(store.path, name), "r+b") as f:
            f.truncate(100)
        assert access.load(7, 1000, 123, "identity") is None


def test_the_store_is_private_made_only_when_used_and_removed_with_what_a_killed_run_left(tmp_path):
    store = KeypointStore(parent=tmp_path)
    assert os.listdir(tmp_path) == []  # nothing made until a check needs it
    path = store.open()
    assert store.open() == path and os.path.dirname(path) == str(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    store.close()
    assert not os.path.exists(path) and store.path is None
    # what a killed process left: its store is removed by the next one; a live process's, another
    # name, and a link named like a store (to a directory elsewhere) are left alone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"{PREFIX}{dead.pid}-abc").mkdir(mode=0o700)
    (tmp_path / f"{PREFIX}{dead.pid}-abc" / "1-2-3-identity").write_bytes(b"x")
    (tmp_path / f"{PREFIX}{os.getpid()}-live").mkdir()
    (tmp_path / "dbdedup-other").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"{PREFIX}{dead.pid}-link").symlink_to(elsewhere)
    assert remove_stale(tmp_path) == 1
    assert sorted(os.listdir(tmp_path)) == sorted([f"{PREFIX}{os.getpid()}-live", "dbdedup-other", "elsewhere",
                                                   f"{PREFIX}{dead.pid}-link"])
    # a store that cannot be made (its parent is a file) only means running without one
    assert KeypointStore(parent=tmp_path / "dbdedup-other" / "missing").open() is None


def test_a_worker_finds_another_workers_keypoints_and_reads_a_file_only_to_compare_an_overlap(conn, tmp_path):
    files = make_set(tmp_path / "set")
    image = loaded(conn, tmp_path / "set", files)
    add_pending(conn, image["photo"], image["crop"])
    add_pending(conn, image["photo"], image["art"])
    crop, unrelated = pending(conn, image["photo"], image["crop"]), pending(conn, image["photo"], image["art"])
    with KeypointStore(parent=tmp_path) as store:
        first = PairChecker(store=StoreAccess(store.open()))
        verdicts = [first.verdict(crop), first.verdict(unrelated)]
        assert [v.reason for v in verdicts] == ["geometry", "no_geometry"] and first.images_read == 3
        # another worker (or the next round): the unrelated pair needs no file, the crop its two again
        second = PairChecker(store=StoreAccess(store.path))
        assert second.verdict(unrelated) == verdicts[1] and second.images_read == 0
        assert second.verdict(crop) == verdicts[0] and second.images_read == 2
        # without the store, a worker finds them again from the files
        alone = PairChecker()
        assert alone.verdict(unrelated) == verdicts[1] and alone.images_read == 2


def test_the_store_holds_at_most_its_limit_across_runs_and_a_failed_write_still_reads(conn, tmp_path, monkeypatch):
    files = make_set(tmp_path / "set")
    image = loaded(conn, tmp_path / "set", files)
    one = len(encode(verify.keypoints(Image.open(files["photo"]))))
    monkeypatch.setattr(keypoint_store, "MAX_BYTES", one)  # (the workers are forked: they see it too)
    with KeypointStore(parent=tmp_path) as store:
        add_pending(conn, image["photo"], image["rotated"])
        verify_pending_pairs(conn, workers=1, keypoints=store)
        stored = sorted(os.listdir(store.path))
        assert len(stored) >= 1 and store.worker_budget(2) == 0
        # a later run (a keeper round) of the same store adds nothing beyond the limit
        add_pending(conn, image["art"], image["art-variant"], similarity=0.95, transform="trim")
        add_pending(conn, image["crop"], image["resized"])
        verify_pending_pairs(conn, workers=2, keypoints=store)
        assert sorted(os.listdir(store.path)) == stored
        # a write that fails stops this worker's writes, not its reads
        monkeypatch.setattr(keypoint_store, "MAX_BYTES", 2 << 30)
        access = StoreAccess(store.path)
        kept = stored[0].split("-")
        found = access.load(int(kept[0]), int(kept[1]), int(kept[2]), kept[3])
        assert found is not None
        os.mkdir(os.path.join(store.path, f".999-1-1-identity.{os.getpid()}"))  # where the write would go
        access.save(999, 1, 1, "identity", found)
        assert access.budget == 0 and access.load(999, 1, 1, "identity") is None
        assert access.load(int(kept[0]), int(kept[1]), int(kept[2]), kept[3]) is not None


def test_the_checks_of_one_report_share_one_store_and_leave_nothing_behind(conn, tmp_path, monkeypatch):
    files = make_set(tmp_path / "set")
    image = loaded(conn, tmp_path / "set", files)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    # two runs with one store: the second reads only the image the first had not
    with KeypointStore() as store:
        add_pending(conn, image["photo"], image["rotated"])
        assert verify_pending_pairs(conn, workers=1, keypoints=store).images_read == 2
        add_pending(conn, image["photo"], image["art"])
        assert verify_pending_pairs(conn, workers=1, keypoints=store).images_read == 1
        assert os.listdir(tmp_path / "tmp") == [os.path.basename(store.path)]
    add_pending(conn, image["photo"], image["art-variant"])
    assert verify_pending_pairs(conn, workers=1).images_read == 2  # a store of its own, gone after
    assert os.listdir(tmp_path / "tmp") == []
    # a report: every check it runs (the pending pairs, the keeper rounds) gets the same store
    used = []
    real = verify_workers.verify_pending_pairs

    def spy(conn, **kwargs):
        used.append((kwargs["keypoints"], kwargs["keypoints"].open()))
        return real(conn, **kwargs)

    monkeypatch.setattr(verify_workers, "verify_pending_pairs", spy)
    clusters.ensure_clusters(conn, full=True)
    assert used and len({id(store) for store, _ in used}) == 1 and len({path for _, path in used}) == 1
    assert used[0][0].path is None and os.listdir(tmp_path / "tmp") == []
