-- Baseline: the schema that gorm's AutoMigrate created before versioned
-- migrations, statement for statement (bigserial makes the bigint column, its
-- sequence refresh_tokens_id_seq and the default; the constraint and index
-- names are gorm's). IF NOT EXISTS lets a database that AutoMigrate created
-- adopt this version without changes.
--
-- No Down section: the baseline is every table of the service, and rolling it
-- back would drop every account.

-- +goose Up
CREATE TABLE IF NOT EXISTS users (
    id            varchar(36)  NOT NULL,
    email         varchar(320) NOT NULL,
    password_hash varchar(60)  NOT NULL,
    name          varchar(400),
    created_at    timestamptz  NOT NULL,
    CONSTRAINT users_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_users_email ON users (email);

CREATE TABLE IF NOT EXISTS refresh_tokens (
    id               bigserial   NOT NULL,
    token_hash       bytea       NOT NULL,
    user_id          varchar(36) NOT NULL,
    family_id        varchar(36) NOT NULL,
    parent_id        bigint,
    expires_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    rotated_at       timestamptz,
    successor_hash   bytea,
    successor_sealed bytea,
    revoked_at       timestamptz,
    CONSTRAINT refresh_tokens_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX IF NOT EXISTS idx_refresh_tokens_token_hash ON refresh_tokens (token_hash);
CREATE INDEX IF NOT EXISTS idx_refresh_tokens_user_id ON refresh_tokens (user_id);
CREATE INDEX IF NOT EXISTS idx_refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS idx_refresh_tokens_expires_at ON refresh_tokens (expires_at);
