"""The embedding pairs that ``dbdedup.match_embeddings`` finds through the pgvector index (IVFFlat, the
default, or HNSW, built and searched with dbdedup's settings) are those of an exact nearest-neighbour
search on a small set: the same function with index scans turned off (a scan and a sort per probe)
stores the same pairs with the same similarities. Real images (photos, edited and byte-identical
copies), real database.

On a set this small the planner itself prefers the exact scan; the index search is forced here
(sequential scans off) so that the index's build and search settings are what is compared. IVFFlat
gets the lists its default would give a set of this size (1.5 sqrt(rows)), which it otherwise only
builds from 1,000 vectors on."""

from __future__ import annotations

import shutil

import pytest

from dbdedup import matching
from dbdedup.load import load_paths
from images import brighter, photo, reencoded, resized, save


def _library(root):
    """60 photos, 3 edited copies of each of the first 30, and 3 byte-identical copies of one photo."""
    for seed in range(60):
        original = photo(seed, (192, 144))
        save(original, root / f"o{seed:02d}.jpg", quality=92)
        if seed < 30:
            save(resized(original, 0.6), root / f"o{seed:02d}_small.jpg", quality=80)
            save(brighter(original, 1.15), root / f"o{seed:02d}_bright.png")
            save(reencoded(original, 35), root / f"o{seed:02d}_q35.jpg", quality=95)
    for i in range(3):
        shutil.copy2(root / "o05.jpg", root / f"o05_copy{i}.jpg")


def _embedding_pairs(conn) -> dict[tuple[int, int], float]:
    return {(a, b): round(s, 5) for a, b, s in conn.execute(
        "SELECT image_a, image_b, similarity FROM dbdedup.pairs WHERE hash_kind = 'phash' AND similarity IS NOT NULL")}


def _index_scans(conn) -> int:
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    conn.execute("SELECT 1")  # idle in between: the backend's counters are flushed
    conn.commit()
    row = conn.execute("SELECT idx_scan FROM pg_stat_user_indexes "
                       "WHERE indexrelid = 'dbdedup.image_embeddings_vector_idx'::regclass").fetchone()
    conn.commit()
    return row[0]


@pytest.mark.parametrize("index, built", [("hnsw", "hnsw"), ("ivfflat", "ivfflat (21 lists)")])
@pytest.mark.parametrize("min_similarity, neighbours", [(0.92, 10), (0.75, 4)])
def test_index_search_finds_the_pairs_of_an_exact_search(conn, tmp_path, index, built, min_similarity, neighbours):
    _library(tmp_path / "lib")
    load_paths(conn, [tmp_path / "lib"], workers=2)
    lists = 21 if index == "ivfflat" else None  # round(1.5 * sqrt(203 vectors))
    assert conn.execute("SELECT dbdedup.build_embedding_index(%s, %s)", (index, lists)).fetchone()[0] == built
    conn.commit()
    before = _index_scans(conn)
    conn.execute("SET enable_seqscan = off")
    result = matching.find_pairs(conn, threshold=8, embeddings=True, min_similarity=min_similarity,
                                 neighbours=neighbours, full=True)
    conn.execute("RESET enable_seqscan")
    conn.commit()
    assert result.embeddings.probes == 150  # one image per group of byte-identical files
    assert _index_scans(conn) - before >= result.embeddings.probes  # the index answered every probe
    found = _embedding_pairs(conn)

    with conn.transaction():
        conn.execute("SET LOCAL enable_indexscan = off")
        conn.execute("SET LOCAL enable_bitmapscan = off")
        conn.execute("SELECT * FROM dbdedup.match_embeddings(%s::real, %s, true)", (min_similarity, neighbours))
        exact = _embedding_pairs(conn)

    assert len(exact) >= 60, exact  # the copies pair up: the comparison is not between two empty sets
    assert found == exact
    group = sorted(image_id for image_id, path in conn.execute("SELECT id, path FROM dbdedup.images")
                   if "o05.jpg" in path or "o05_copy" in path)
    paired = {image for pair in found for image in pair}
    assert group[0] in paired and not set(group[1:]) & paired  # copies stand behind the group's first file
