-- Baseline: the schema that gorm's AutoMigrate created before versioned
-- migrations. The statements are gorm's own, character for character, so
-- that sqlite_master holds the same text whichever of the two created the
-- database (SQLite stores CREATE statements without IF NOT EXISTS). IF NOT
-- EXISTS lets a database that AutoMigrate created adopt this version without
-- changes.
--
-- No Down section: the baseline is every table of the service, and rolling it
-- back would drop every account.

-- +goose Up
CREATE TABLE IF NOT EXISTS `users` (`id` text,`email` text NOT NULL,`password_hash` text NOT NULL,`name` text,`created_at` datetime NOT NULL,PRIMARY KEY (`id`));
CREATE UNIQUE INDEX IF NOT EXISTS `idx_users_email` ON `users`(`email`);

CREATE TABLE IF NOT EXISTS `refresh_tokens` (`id` integer PRIMARY KEY AUTOINCREMENT,`token_hash` blob NOT NULL,`user_id` text NOT NULL,`family_id` text NOT NULL,`parent_id` integer,`expires_at` datetime NOT NULL,`created_at` datetime NOT NULL,`rotated_at` datetime,`successor_hash` blob,`successor_sealed` blob,`revoked_at` datetime);
CREATE UNIQUE INDEX IF NOT EXISTS `idx_refresh_tokens_token_hash` ON `refresh_tokens`(`token_hash`);
CREATE INDEX IF NOT EXISTS `idx_refresh_tokens_user_id` ON `refresh_tokens`(`user_id`);
CREATE INDEX IF NOT EXISTS `idx_refresh_tokens_family_id` ON `refresh_tokens`(`family_id`);
CREATE INDEX IF NOT EXISTS `idx_refresh_tokens_expires_at` ON `refresh_tokens`(`expires_at`);
