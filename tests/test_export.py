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
