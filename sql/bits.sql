-- Bit helpers: Hamming distance, low-information hashes, and the masks the indexed matching methods use.
-- Current definitions: changing a function here is the whole change (dbdedup.schema re-applies this file).

CREATE OR REPLACE FUNCTION dbdedup.hamming(a bigint, b bigint) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT bit_count((a # b)::bit(64))::integer $$;
COMMENT ON FUNCTION dbdedup.hamming(bigint, bigint) IS
    'Hamming distance of two 64-bit hashes stored as bigint (0 = identical, 64 = every bit differs).';

-- Not STRICT: PostgreSQL inlines a SQL function only when it is not STRICT or its body is
-- strict, and an OR is not. Inlined, the check costs 0.1 s a million values instead of 1.2 s
-- (matching calls it twice per distinct value).
CREATE OR REPLACE FUNCTION dbdedup.is_low_information(value bigint) RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT bit_count(value::bit(64)) <= 3 OR bit_count(value::bit(64)) >= 61 $$;
COMMENT ON FUNCTION dbdedup.is_low_information(bigint) IS
    'True for hashes with 3 or fewer bits set (or cleared): what blank, single-colour and flat images hash to. '
    'They match each other whatever the picture, so matching keeps them out of near-duplicate pairs.';

CREATE OR REPLACE FUNCTION dbdedup.interleaved_mask(blocks integer, block integer) RETURNS bigint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        SELECT coalesce(bit_or(1::bigint << b), 0)
        FROM generate_series(0, 63) b
        WHERE (b + CASE WHEN b < 32 THEN 0 WHEN 33 % blocks <> 0 THEN 1 ELSE 2 END) % blocks = block
    $$;
COMMENT ON FUNCTION dbdedup.interleaved_mask(integer, integer) IS
    'The block-th of `blocks` interleaved bit blocks of a 64-bit hash (bit j goes to block j mod blocks, the upper half '
    'shifted by one). Interleaving spreads the correlated low-frequency bits of pHash over all blocks; the shift keeps '
    'bits j and j+32 apart, which PostgreSQL''s bigint hash folds together (a block holding both makes hash joins '
    'collide badly).';

CREATE OR REPLACE FUNCTION dbdedup.ball_masks(block_mask bigint, radius integer) RETURNS bigint[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
        WITH bits AS (
            SELECT b, 1::bigint << b AS m FROM generate_series(0, 63) b WHERE block_mask & (1::bigint << b) <> 0
        )
        SELECT array_agg(f ORDER BY f) FROM (
            SELECT 0::bigint AS f
            UNION ALL SELECT b1.m FROM bits b1 WHERE radius >= 1
            UNION ALL SELECT b1.m | b2.m FROM bits b1 JOIN bits b2 ON b1.b < b2.b WHERE radius >= 2
            UNION ALL SELECT b1.m | b2.m | b3.m
                      FROM bits b1 JOIN bits b2 ON b1.b < b2.b JOIN bits b3 ON b2.b < b3.b WHERE radius >= 3
        ) s
    $$;
COMMENT ON FUNCTION dbdedup.ball_masks(bigint, integer) IS
    'Every XOR mask inside block_mask with at most `radius` bits set (radius 0-3): the Hamming ball probed by the blocks method.';

CREATE OR REPLACE FUNCTION dbdedup.ball_size(bits integer, radius integer) RETURNS double precision
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
DECLARE
    total double precision := 0;
    c double precision := 1;
    k integer;
BEGIN
    FOR k IN 0 .. least(radius, bits) LOOP
        total := total + c;
        c := c * (bits - k) / (k + 1);
    END LOOP;
    RETURN total;
END
$$;
COMMENT ON FUNCTION dbdedup.ball_size(integer, integer) IS 'Number of bit strings of length `bits` within `radius` of one string.';
