-- Sealed successors live only for the reuse window: a job erases them once
-- it has passed (DB.EraseSeals). This index holds just the rows that still
-- carry a seal, so that job finds them without scanning the table.

-- +goose Up
CREATE INDEX IF NOT EXISTS idx_refresh_tokens_sealed ON refresh_tokens (rotated_at) WHERE successor_sealed IS NOT NULL;

-- +goose Down
DROP INDEX IF EXISTS idx_refresh_tokens_sealed;
