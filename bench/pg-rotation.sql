-- The PostgreSQL floor of one refresh, for pgbench: the statements the
-- service runs per rotation, and nothing else (no HTTP, no JSON, no JWT, no
-- lock). Each pgbench client chains its own token as a client of the service
-- would: read the token state (the service's one lookup, by hash), then
-- rotate it with the service's rotation statement (models.applyGroupQuery:
-- the compare-and-swap UPDATE and the INSERT of the successor as one
-- statement, which commits itself), for a group of one rotation. So each
-- transaction of this script is one rotation, two statements, two round
-- trips; the service does the same work per rotation at low load, and less
-- under load, where one statement carries a group of rotations (group
-- commit). The only difference from the service's statement is that the
-- rotation's values come as ARRAY[...] of pgbench variables instead of array
-- parameters.
--
--   pgbench -n -M prepared -D id=0 -c 50 -j 2 -T 15 -f bench/pg-rotation.sql DB
--
-- DB needs the service's schema and a user with id 'bench-user'
-- (bench/cluster.sh sets both up).
\set r random(1, 2000000000)
\set q random(1, 2000000000)
\if :id = 0
-- A client's first run: a token of its own to start the chain. Its hash, as
-- every successor's, is made of the random pair (r, q), kept as (pr, pq).
INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at, created_at)
  VALUES (decode(md5(:r || '-' || :q) || md5(:q || '-' || :r), 'hex'), 'bench-user', 'bench-family-' || :client_id, now() + interval '7 days', now());
\set pr :r
\set pq :q
\set r random(1, 2000000000)
\set q random(1, 2000000000)
\endif
SELECT t.id, t.user_id, t.family_id, t.expires_at, t.rotated_at, t.successor_hash,
  t.successor_sealed, t.revoked_at, u.email, s.expires_at, s.rotated_at, s.revoked_at
FROM refresh_tokens t
JOIN users u ON u.id = t.user_id
LEFT JOIN refresh_tokens s ON s.token_hash = t.successor_hash
WHERE t.token_hash = decode(md5(:pr || '-' || :pq) || md5(:pq || '-' || :pr), 'hex') \gset
WITH v AS (
  SELECT * FROM unnest(ARRAY[:id]::bigint[], ARRAY[now()]::timestamptz[],
    ARRAY[decode(md5(:r || '-' || :q) || md5(:q || '-' || :r), 'hex')]::bytea[],
    ARRAY[decode(md5(:r || '-' || :q) || md5(:q || '-' || :r) || md5(:r || '+' || :q), 'hex')]::bytea[],
    ARRAY['bench-user']::text[], ARRAY['bench-family-' || :client_id]::text[], ARRAY[:id]::bigint[],
    ARRAY[now() + interval '7 days']::timestamptz[], ARRAY[now()]::timestamptz[]) WITH ORDINALITY
    AS v(id, now, successor_hash, sealed, user_id, family_id, parent_id, expires_at, created_at, ord)
), swapped AS (
  UPDATE refresh_tokens t SET rotated_at = v.now, successor_hash = v.successor_hash, successor_sealed = v.sealed
  FROM v WHERE t.id = v.id AND t.rotated_at IS NULL AND t.revoked_at IS NULL
  RETURNING v.ord
), inserted AS (
  INSERT INTO refresh_tokens (token_hash, user_id, family_id, parent_id, expires_at, created_at)
  SELECT v.successor_hash, v.user_id, v.family_id, v.parent_id, v.expires_at, v.created_at
  FROM v JOIN swapped USING (ord)
)
SELECT ord FROM swapped;
\set pr :r
\set pq :q
