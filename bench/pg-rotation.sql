-- The PostgreSQL floor of one refresh, for pgbench: the statements the
-- service runs per rotation, and nothing else (no HTTP, no JSON, no JWT, no
-- lock). Each pgbench client chains its own token as a client of the service
-- would: read the token state (the service's one lookup), then in one
-- transaction mark it rotated (the compare-and-swap) and insert its
-- successor, which the next run of the script rotates.
--
--   pgbench -n -M prepared -D id=0 -c 50 -j 2 -T 15 -f bench/pg-rotation.sql DB
--
-- DB needs the service's schema and a user with id 'bench-user'
-- (bench/cluster.sh sets both up).
\set r random(1, 2000000000)
\set q random(1, 2000000000)
\if :id = 0
-- A client's first run: a token of its own to start the chain.
INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at, created_at)
  VALUES (decode(md5(:r || '-' || :q) || md5(:q || '-' || :r), 'hex'), 'bench-user', 'bench-family-' || :client_id, now() + interval '7 days', now())
  RETURNING id, encode(token_hash, 'hex') AS hash \gset
\set r random(1, 2000000000)
\set q random(1, 2000000000)
\endif
SELECT t.id, t.user_id, t.family_id, t.expires_at, t.rotated_at, t.successor_hash,
  t.successor_sealed, t.revoked_at, u.email, s.expires_at, s.rotated_at, s.revoked_at
FROM refresh_tokens t
JOIN users u ON u.id = t.user_id
LEFT JOIN refresh_tokens s ON s.token_hash = t.successor_hash
WHERE t.token_hash = decode(:hash, 'hex');
BEGIN;
UPDATE refresh_tokens SET rotated_at = now(), successor_hash = decode(md5(:r || '-' || :q) || md5(:q || '-' || :r), 'hex'),
  successor_sealed = decode(md5(:r || '-' || :q) || md5(:q || '-' || :r) || md5(:r || '+' || :q), 'hex')
WHERE id = :id AND rotated_at IS NULL AND revoked_at IS NULL;
INSERT INTO refresh_tokens (token_hash, user_id, family_id, parent_id, expires_at, created_at)
  VALUES (decode(md5(:r || '-' || :q) || md5(:q || '-' || :r), 'hex'), 'bench-user', 'bench-family-' || :client_id, :id, now() + interval '7 days', now())
  RETURNING id, encode(token_hash, 'hex') AS hash \gset
COMMIT;
