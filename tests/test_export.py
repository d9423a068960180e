"""`dbdedup export`: the folder layout in its three modes, and the HTML contact sheet in a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from images import photo, resized, save
from test_report_sample import load, make_collection, members, run_cli


def _clusters(dsn: str) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for m in members(dsn):
        out.setdefault(m["cluster_id"], []).append(m)
    return out


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_folder_layout_one_folder_per_cluster(db_dsn, tmp_path, mode):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    target = tmp_path / "export"
    run_cli(db_dsn, "export", str(target), "--layout", "folders", "--mode", mode)
    clusters = _clusters(db_dsn)
    assert len(clusters) == 3
    folders = sorted(p.name for p in target.iterdir() if p.is_dir())
    assert [p.name for p in target.iterdir() if not p.is_dir()] == [".dbdedup-made-this-folder"]
    keepers = sorted(Path(next(m["path"] for m in ms if m["is_keeper"])).stem for ms in clusters.values())
    assert folders == keepers
    for ms in clusters.values():
        keeper = Path(next(m["path"] for m in ms if m["is_keeper"]))
        folder = target / keeper.stem
        assert sorted(p.name for p in folder.iterdir()) == sorted(Path(m["path"]).name for m in ms)
        for m in ms:
            placed = folder / Path(m["path"]).name
            original = Path(m["path"])
            assert placed.read_bytes() == original.read_bytes()
            if mode == "copy":
                assert not placed.is_symlink() and not os.path.samefile(placed, original)
            elif mode == "hardlink":
                assert os.path.samefile(placed, original) and not placed.is_symlink()
            else:
                assert placed.is_symlink() and os.readlink(placed) == str(original)


def test_folder_name_clashes_and_nonempty_target(db_dsn, tmp_path):
    # two unrelated clusters whose keepers are both called IMG_0001.jpg, in different folders
    for i, seed in enumerate((201, 202)):
        base = photo(seed)
        save(base, tmp_path / "photos" / f"cam{i}" / "IMG_0001.jpg", quality=95)
        save(resized(base, 0.5), tmp_path / "photos" / f"cam{i}" / "small" / "IMG_0001.jpg", quality=80)
    load(db_dsn, tmp_path / "photos")
    target = tmp_path / "export"
    run_cli(db_dsn, "export", str(target))  # folders is the default layout for a directory
    assert sorted(p.name for p in target.iterdir() if p.is_dir()) == ["IMG_0001", "IMG_0001 (2)"]
    for folder in filter(Path.is_dir, target.iterdir()):
        # keeper and its copy share a file name: the second gets a suffix
        assert sorted(p.name for p in folder.iterdir()) == ["IMG_0001 (2).jpg", "IMG_0001.jpg"]
    again = run_cli(db_dsn, "export", str(target), ok=False)
    assert again.exit_code == 1 and "not empty" in again.stderr


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail("chromium is required for the HTML test in CI: apt-get install -y chromium")
    pytest.skip("chromium is not installed: the contact sheet is not rendered (apt-get install -y chromium; "
                "CI=true makes this a failure)")


_CHECK = (
    "<script>window.addEventListener('load', function () {"
    " var imgs = [].slice.call(document.images);"
    " document.body.setAttribute('data-images', imgs.length);"
    " document.body.setAttribute('data-loaded', imgs.filter(function (i) {"
    "   return i.complete && i.naturalWidth > 0; }).length);"
    "});</script>"
)


def _images_loaded_in_browser(html_file: Path) -> tuple[int, int]:
    """Open a copy of the page (with a probe script) in headless chromium: (<img> count, loaded)."""
    probe = html_file.with_name("probe-" + html_file.name)
    probe.write_text(html_file.read_text(encoding="utf-8").replace("</body>", _CHECK + "</body>"), encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={profile}",
             "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout
    body = re.search(r'<body data-images="(\d+)" data-loaded="(\d+)"', out)
    assert body, out[:500]
    return int(body.group(1)), int(body.group(2))


def test_html_contact_sheet_renders_in_chromium(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    odd = os.path.join(os.fsencode(col.root / "copies"), b"na\xefve.jpg")  # not UTF-8
    shutil.copyfile(col.originals["o104"], odd)
    load(db_dsn, col.root)
    sheet = tmp_path / "out" / "report.html"
    run_cli(db_dsn, "export", str(sheet))
    text = sheet.read_text(encoding="utf-8")
    assert "src=\"http" not in text and "<link" not in text  # self-contained
    expected = len(members(db_dsn))
    assert text.count("KEEPER") == 4  # three planted clusters and the non-UTF-8 copy's cluster
    assert "na\\xefve.jpg" in text
    images, loaded = _images_loaded_in_browser(sheet)
    assert images == loaded == expected == 10

    # the folder layout keeps the exact bytes of the name
    run_cli(db_dsn, "export", str(tmp_path / "folders"), "--mode", "hardlink")
    placed = [os.path.join(dirpath, name) for dirpath, _, names in os.walk(os.fsencode(tmp_path / "folders"))
              for name in names if name == b"na\xefve.jpg"]
    assert len(placed) == 1 and os.path.samefile(placed[0], odd)

    # the probe can fail: a broken thumbnail is counted as not loaded
    broken = tmp_path / "out" / "broken.html"
    broken.write_text(re.sub(r"base64,[A-Za-z0-9+/]{40}", "base64,AAAA", text, count=1), encoding="utf-8")
    images, loaded = _images_loaded_in_browser(broken)
    assert images == expected and loaded == expected - 1


def test_html_shows_distances_and_sizes(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    sheet = tmp_path / "sheet.html"
    run_cli(db_dsn, "export", str(sheet), "--limit", "1")
    text = sheet.read_text(encoding="utf-8")
    first = json.loads(run_cli(db_dsn, "report", "--format", "json", "--limit", "1").stdout)["clusters"][0]
    assert text.count("<figure") == len(first["members"])
    for m in first["members"]:
        assert f"{m['width']}&times;{m['height']}" in text
        if not m["keeper"] and not m["exact_duplicate"]:
            # the caption says why: what matched the keeper, at what distance, and how it was verified
            matched = f"{m['transform']} {m['distance']}" if m["transform"] else f"pHash {m['distance']}"
            assert matched in text
            assert m["verify_reason"] in ("signature", "geometry", "exact")
            assert {"signature": "colours agree", "geometry": "features align", "exact": "same pixels"}[
                m["verify_reason"]] in text


def test_html_placeholder_for_a_file_gone_since_load(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    run_cli(db_dsn, "report", "--format", "json")  # clusters built while the file is there
    gone = col.near["o101_small.jpg"][1]
    gone.unlink()
    sheet = tmp_path / "sheet.html"
    # the clustering is current (nothing was re-loaded), so the member is still listed
    run_cli(db_dsn, "export", str(sheet))
    text = sheet.read_text(encoding="utf-8")
    assert text.count("no thumbnail") == 1 and text.count("<figure") == 8 and text.count("<img") == 7


@pytest.fixture
def shared_folder():
    """A folder others may search, as a shared collection's is (pytest's own are private, 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="dbdedup-shared-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder)


def test_the_html_sheet_is_no_more_readable_than_the_pictures_it_shows(db_dsn, tmp_path, shared_folder):
    if any(not folder.stat().st_mode & 0o001 for folder in shared_folder.parents):
        pytest.skip(f"{shared_folder.parent} is not searchable by others on this machine")
    col = make_collection(shared_folder / "photos")
    load(db_dsn, col.root)
    copy = col.near["o101_small.jpg"][1]  # a member of a cluster the sheet shows

    def sheet_mode(name: str, umask: int = 0o022) -> int:
        before = os.umask(umask)
        try:
            run_cli(db_dsn, "export", str(tmp_path / name))
        finally:
            os.umask(before)
        return (tmp_path / name).stat().st_mode & 0o777

    for folder, _, files in os.walk(col.root):  # as a shared collection has them
        os.chmod(folder, 0o755)
        for f in files:
            os.chmod(os.path.join(folder, f), 0o644)
    assert sheet_mode("public.html") == 0o644
    assert sheet_mode("under_umask_077.html", umask=0o077) == 0o600
    os.chmod(copy, 0o640)  # one picture readable by its group only
    assert sheet_mode("group.html") == 0o640
    os.chmod(copy, 0o644)
    os.chmod(copy.parent, 0o700)  # a private folder: its readable files are not readable by others
    assert sheet_mode("private_folder.html") == 0o600
    os.chmod(copy.parent, 0o711)  # searchable: others who know the names can read its files
    assert sheet_mode("searchable_folder.html") == 0o644
    copy.unlink()  # a picture gone since the load is shown as a placeholder: its folder still counts
    os.chmod(copy.parent, 0o750)
    assert sheet_mode("gone.html") == 0o640
    assert "no thumbnail" in (tmp_path / "gone.html").read_text(encoding="utf-8")


def _a_member_replaced_since_load(db_dsn: str, tmp_path: Path, put_there) -> None:
    """The sample collection loaded and clustered, then one member's file replaced by ``put_there(path)``."""
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    run_cli(db_dsn, "report", "--format", "json")
    swapped = col.near["o101_small.jpg"][1]
    swapped.unlink()
    put_there(swapped)


@pytest.mark.timeout(120)
def test_html_placeholder_for_a_file_swapped_for_a_fifo_since_load(db_dsn, tmp_path):
    _a_member_replaced_since_load(db_dsn, tmp_path, os.mkfifo)  # opened as a file, it would block the export
    sheet = tmp_path / "sheet.html"
    run_cli(db_dsn, "export", str(sheet))
    text = sheet.read_text(encoding="utf-8")
    assert text.count("no thumbnail") == 1 and text.count("<img") == text.count("<figure") - 1
    assert "not a regular file" in text


def test_a_load_of_the_parent_folder_leaves_out_an_export(db_dsn, tmp_path):
    from dbdedup.scan import MARKER_NAME

    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    target = col.root / "review"
    run_cli(db_dsn, "export", str(target), "--layout", "folders", "--mode", "copy")
    assert (target / os.fsdecode(MARKER_NAME)).is_file()
    copies = [p for p in target.rglob("*") if p.is_file() and p.name != os.fsdecode(MARKER_NAME)]
    assert copies
    again = run_cli(db_dsn, "load", str(col.root))
    assert f"left out {target}: dbdedup made it" in again.stderr
    assert "loaded 0 images" in again.stderr


def test_an_exported_folder_is_no_more_readable_than_the_pictures_it_names(db_dsn, tmp_path, shared_folder):
    # the cluster folders list the files' names (and, as links, lead to them): a folder of copies from a
    # private folder was 0755
    if any(not folder.stat().st_mode & 0o001 for folder in shared_folder.parents):
        pytest.skip(f"{shared_folder.parent} is not searchable by others on this machine")
    col = make_collection(shared_folder / "photos")
    load(db_dsn, col.root)
    before = os.umask(0o022)
    try:
        run_cli(db_dsn, "export", str(shared_folder / "public"), "--layout", "folders", "--mode", "symlink")
        os.chmod(col.root / "copies", 0o700)
        run_cli(db_dsn, "export", str(shared_folder / "private"), "--layout", "folders", "--mode", "symlink")
        (shared_folder / "chosen").mkdir(mode=0o750)  # an empty folder of the user's: its mode is theirs
        run_cli(db_dsn, "export", str(shared_folder / "chosen"), "--layout", "folders", "--mode", "symlink")
    finally:
        os.umask(before)
        os.chmod(col.root / "copies", 0o755)
    assert (shared_folder / "public").stat().st_mode & 0o777 == 0o755
    assert (shared_folder / "private").stat().st_mode & 0o777 == 0o700
    assert (shared_folder / "chosen").stat().st_mode & 0o777 == 0o750


@pytest.mark.timeout(60)
def test_a_folder_export_skips_a_file_swapped_for_a_device_since_load(db_dsn, tmp_path):
    _a_member_replaced_since_load(db_dsn, tmp_path, lambda path: path.symlink_to("/dev/zero"))  # copied: no end
    result = run_cli(db_dsn, "export", str(tmp_path / "out"), "--layout", "folders", "--mode", "copy")
    assert "o101_small.jpg" in result.stderr + result.stdout and "not a regular file" in result.stderr + result.stdout
    copied = [p for p in (tmp_path / "out").rglob("*.jpg")]
    assert copied and all(p.stat().st_size < 1_000_000 for p in copied)


def test_each_cluster_folder_is_no_more_readable_than_its_own_files(db_dsn, tmp_path, shared_folder):
    # a cluster folder lists its files' names: copies from a private 0700 folder were listed in a 0755 one
    if any(not folder.stat().st_mode & 0o001 for folder in shared_folder.parents):
        pytest.skip(f"{shared_folder.parent} is not searchable by others on this machine")
    col = make_collection(shared_folder / "photos")
    save(resized(photo(104), 0.5), col.root / "originals" / "o104_small.jpg", quality=90)  # a cluster of public files
    for folder, _, files in os.walk(col.root):
        os.chmod(folder, 0o755)
        for f in files:
            os.chmod(os.path.join(folder, f), 0o644)
    os.chmod(col.root / "copies", 0o700)
    for f in (col.root / "copies").iterdir():
        os.chmod(f, 0o600)
    load(db_dsn, col.root)
    private = {p.name for p in (col.root / "copies").iterdir()}
    (shared_folder / "chosen").mkdir(mode=0o755)  # an empty folder of the user's: its own mode stays theirs
    before = os.umask(0o022)
    try:
        for target in ("chosen", "new"):
            run_cli(db_dsn, "export", str(shared_folder / target), "--layout", "folders", "--mode", "copy")
    finally:
        os.umask(before)
    assert (shared_folder / "chosen").stat().st_mode & 0o777 == 0o755
    assert (shared_folder / "new").stat().st_mode & 0o777 == 0o700  # it lists the private keepers' names
    for target in ("chosen", "new"):
        modes = {f.name: (f.stat().st_mode & 0o777, {p.name for p in f.iterdir()})
                 for f in (shared_folder / target).iterdir() if f.is_dir()}
        assert sorted(modes) == ["o101_copy", "o102", "o103_large", "o104"]
        for name, (mode, files) in modes.items():
            assert mode == (0o700 if files & private else 0o755), (target, name, oct(mode), files)
        assert modes["o104"][0] == 0o755  # not all made private: each folder by its own files


def _reclustered(clusters, fail_after: int, before_failing=None):
    """The clusters as the database gives them, then a failure part-way (as a lost connection would)."""
    from dbdedup.errors import DbdedupError

    for i, cluster in enumerate(clusters):
        if i == fail_after:
            if before_failing:
                before_failing()
            raise DbdedupError("the database went away", hint="run the same command again")
        yield cluster


def test_an_export_that_stops_part_way_takes_away_what_it_made(db_dsn, tmp_path):
    import psycopg

    from dbdedup import results
    from dbdedup.errors import DbdedupError
    from dbdedup.export import export_folders

    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    run_cli(db_dsn, "report", "--format", "json")  # the clustering, current
    chosen = tmp_path / "chosen"
    chosen.mkdir(mode=0o750)
    new = tmp_path / "new" / "deeper" / "export"
    with psycopg.connect(db_dsn) as conn:
        for target in (chosen, new):
            with pytest.raises(DbdedupError, match="went away") as stopped:
                export_folders(_reclustered(results.iter_clusters(conn), 2), target, mode="copy")
            assert "took away" not in (stopped.value.hint or "")  # all of it went: nothing to name
        # what it made is gone; the folder that was there is as it was, the folders made above TARGET too
        assert list(chosen.iterdir()) == [] and chosen.stat().st_mode & 0o777 == 0o750
        assert not (tmp_path / "new").exists()

        # something it did not make, put in a folder it made, stays; the error names what to remove
        def stray() -> None:
            (chosen / next(p for p in chosen.iterdir() if p.is_dir()).name / "mine.txt").write_text("keep me")

        with pytest.raises(DbdedupError) as stopped:
            export_folders(_reclustered(results.iter_clusters(conn), 2, stray), chosen, mode="copy")
    kept = list(chosen.glob("*/mine.txt"))
    assert len(kept) == 1 and kept[0].read_text() == "keep me"
    assert sorted(p.name for p in chosen.iterdir()) == [kept[0].parent.name]  # the rest taken away
    assert f"except {kept[0].parent}: remove them" in stopped.value.hint


def test_the_hinted_retry_of_a_hard_link_export_across_file_systems_works(db_dsn, tmp_path):
    other = Path("/dev/shm")
    if not other.is_dir() or not os.access(other, os.W_OK) or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no writable file system other than the temporary folder's at /dev/shm")
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    target = Path(tempfile.mkdtemp(dir=other)) / "export"
    try:
        failed = run_cli(db_dsn, "export", str(target), "--mode", "hardlink", ok=False)
        assert failed.exit_code == 1 and "different file systems" in failed.stderr and "--mode copy" in failed.stderr
        assert not target.exists()
        run_cli(db_dsn, "export", str(target), "--mode", "copy")  # as the hint says
        assert len([p for p in target.iterdir() if p.is_dir()]) == 3
    finally:
        shutil.rmtree(target.parent)


def test_names_at_the_length_limit_get_their_suffix_within_it(db_dsn, tmp_path):
    from dbdedup.export import _UniqueNames

    long = "k" * 255  # no extension, as a camera's or a tool's may be
    for i, seed in enumerate((201, 202)):
        base = photo(seed)
        save(base, tmp_path / "photos" / f"cam{i}" / long, quality=95, fmt="JPEG")
        save(resized(base, 0.5), tmp_path / "photos" / f"cam{i}" / "small" / long, quality=80, fmt="JPEG")
    load(db_dsn, tmp_path / "photos")
    target = tmp_path / "export"
    run_cli(db_dsn, "export", str(target))
    twin = "k" * 251 + " (2)"
    assert sorted(p.name for p in target.iterdir() if p.is_dir()) == [twin, long]
    for folder in filter(Path.is_dir, target.iterdir()):
        assert sorted(p.name for p in folder.iterdir()) == [twin, long]

    names = _UniqueNames()  # the extension is kept, and a UTF-8 name is not cut inside a character
    name = ("é" * 125 + ".jpeg").encode()
    assert len(name) == 255 and names.take(name) == name
    assert names.take(name) == ("é" * 123 + " (2).jpeg").encode()
    assert names.take(name.upper()) == ("é" * 123 + " (3).JPEG").encode()  # (bytes: ASCII letters' case only)


def test_html_with_limit_says_how_many_clusters_it_leaves_out(db_dsn, tmp_path):
    col = make_collection(tmp_path / "photos")
    load(db_dsn, col.root)
    written = run_cli(db_dsn, "export", str(tmp_path / "none.html"), "--limit", "0")
    assert f"wrote {tmp_path / 'none.html'} (0 of 3 clusters, " in written.stderr
    text = (tmp_path / "none.html").read_text(encoding="utf-8")
    assert "<section" not in text and "No near-duplicate clusters" not in text
    assert "3 near-duplicate clusters, none listed (--limit 0)" in text
    run_cli(db_dsn, "export", str(tmp_path / "one.html"), "--limit", "1")
    text = (tmp_path / "one.html").read_text(encoding="utf-8")
    assert text.count("<section") == 1 and "Showing 1 of 3 near-duplicate clusters" in text
    written = run_cli(db_dsn, "export", str(tmp_path / "all.html"))
    assert f"wrote {tmp_path / 'all.html'} (3 clusters, " in written.stderr
    text = (tmp_path / "all.html").read_text(encoding="utf-8")
    assert text.count("<section") == 3 and "Showing" not in text and "none listed" not in text
