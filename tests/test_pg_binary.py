"""dbdedup.pg_binary: real[] in PostgreSQL's binary form, read back from a real server as the checks read it."""

from __future__ import annotations

import numpy as np

from dbdedup import pg_binary


def test_array_send_of_a_real_array_gives_the_stored_float32_values(conn):
    values = np.array([0.1, -2.5, 1e-7, 3.4028235e38, 97.123456], dtype=np.float32)
    sent = conn.execute("SELECT array_send(%s::real[])", ([float(v) for v in values],)).fetchone()[0]
    assert np.array_equal(pg_binary.float4_values(sent), values)
    # what the loader COPYs is what the server sends back
    assert pg_binary.float4_array(values) == bytes(sent)
    # a stored signature, read both ways: the same float32 values
    stored = np.random.default_rng(1).normal(50, 30, 384).astype(np.float32)
    conn.execute("CREATE TEMP TABLE signatures (v real[])")
    conn.execute("INSERT INTO signatures VALUES (%s)", ([float(v) for v in stored],))
    as_list, as_sent = conn.execute("SELECT v, array_send(v) FROM signatures").fetchone()
    assert np.array_equal(np.asarray(as_list, dtype=np.float32), pg_binary.float4_values(as_sent))


def test_what_is_not_a_flat_array_of_reals_reads_as_none(conn):
    for sql in ("SELECT array_send(NULL::real[])", "SELECT array_send('{}'::real[])",
                "SELECT array_send('{1.5,NULL,2}'::real[])", "SELECT array_send('{{1,2},{3,4}}'::real[])",
                "SELECT array_send('{1,2}'::float8[])", "SELECT array_send('{1,2}'::integer[])"):
        assert pg_binary.float4_values(conn.execute(sql).fetchone()[0]) is None, sql
    assert pg_binary.float4_values(b"\x00\x00") is None
