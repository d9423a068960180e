"""The wheel: sql/ and migrations/ ship inside it, and an installed copy loads and reports."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from images import photo, save

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_and_runs_load_and_report(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("dbdedup-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in ("dbdedup/sql/tables.sql", "dbdedup/sql/matching.sql", "dbdedup/sql/queries/load.sql",
                    "dbdedup/migrations/env.py", "dbdedup/migrations/versions/0005_schema_definitions.py"):
        assert shipped in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    # The dependencies come from the test's own environment by a plain path entry (no .pth
    # processing there, so the checkout's editable install stays out of the fresh venv).
    fresh_site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                check=True, capture_output=True, text=True).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p, "click").is_dir()]
    Path(fresh_site, "test-deps.pth").write_text("\n".join(deps) + "\n")

    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import dbdedup.sql, dbdedup; print(dbdedup.__file__)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path).stdout.strip()
    assert where.startswith(str(venv)), where

    photos = tmp_path / "photos"
    photos.mkdir()
    save(photo(1), photos / "a.jpg")
    save(photo(1), photos / "b.png")
    save(photo(2), photos / "c.jpg")
    env = {**os.environ, "DBDEDUP_DATA_DIR": str(tmp_path / "pgdata")}
    env.pop("DBDEDUP_DATABASE_URL", None)
    dbdedup = str(venv / "bin" / "dbdedup")
    try:
        done = subprocess.run([dbdedup, "--quiet", "load", str(photos)], capture_output=True, text=True, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        done = subprocess.run([dbdedup, "report", "--format", "json"], capture_output=True, text=True,
                              env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        report = done.stdout
    finally:
        subprocess.run([dbdedup, "db", "stop"], capture_output=True, env=env, cwd=tmp_path)
    assert "a.jpg" in report and "b.png" in report
