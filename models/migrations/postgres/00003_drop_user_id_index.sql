-- No query looks refresh tokens up by user: lookups go by token hash,
-- revocations by family, pruning by expiry. The index on user_id only cost
-- every rotation's insert one more B-tree page to write, at a random place
-- (user ids are random), in the write transaction that bounds the refresh
-- rate: dropping it cut the CPU of a refresh without HTTP by an eighth
-- (BenchmarkServiceRefreshParallel, cpu-us/op).

-- +goose Up
DROP INDEX IF EXISTS idx_refresh_tokens_user_id;

-- +goose Down
CREATE INDEX IF NOT EXISTS idx_refresh_tokens_user_id ON refresh_tokens (user_id);
