-- 0002: operator accounts, browser sessions, API tokens and settings.
-- Secrets are never stored: passwords as bcrypt hashes, session ids and token
-- secrets as hex SHA-256 (computed by the API). Times are integer milliseconds.

CREATE TABLE users (
    id                  INTEGER PRIMARY KEY,
    name                TEXT    NOT NULL UNIQUE,
    role                TEXT    NOT NULL,
    password_hash       TEXT    NOT NULL,
    disabled            INTEGER NOT NULL DEFAULT 0,
    created_ms          BIGINT  NOT NULL,
    updated_ms          BIGINT  NOT NULL,
    password_changed_ms BIGINT  NOT NULL
);

CREATE TABLE sessions (
    id_hash      TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf         TEXT    NOT NULL,
    remote       TEXT    NOT NULL DEFAULT '',
    created_ms   BIGINT  NOT NULL,
    expires_ms   BIGINT  NOT NULL,
    last_seen_ms BIGINT  NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    scope        TEXT    NOT NULL,
    secret_hash  TEXT    NOT NULL UNIQUE,
    prefix       TEXT    NOT NULL,
    created_ms   BIGINT  NOT NULL,
    expires_ms   BIGINT  NOT NULL DEFAULT 0,
    last_used_ms BIGINT  NOT NULL DEFAULT 0,
    revoked_ms   BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE settings (
    key        TEXT   PRIMARY KEY,
    value      TEXT   NOT NULL,
    updated_ms BIGINT NOT NULL
);
