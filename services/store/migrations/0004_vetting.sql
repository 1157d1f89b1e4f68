-- 0004: hardware vetting runs, their stages, measurements (for baselines of
-- a model), events (agent progress and run changes, read by the live UI),
-- artifacts on the data partition, and the notification outbox.
-- A run keeps its host's name: history outlives a deleted host.

CREATE TABLE vet_runs (
    id            INTEGER PRIMARY KEY,
    host_id       INTEGER REFERENCES hosts (id) ON DELETE SET NULL,
    host          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1,
    profile       TEXT    NOT NULL,
    hold          INTEGER NOT NULL DEFAULT 0,
    wipe          INTEGER NOT NULL DEFAULT 0,
    -- The run's bearer token: rendered into the host's iPXE script, looked
    -- up by its hash; both are cleared when the run ends.
    token         TEXT    NOT NULL DEFAULT '',
    token_hash    TEXT    NOT NULL DEFAULT '',
    ssh_private   TEXT    NOT NULL DEFAULT '',
    ssh_public    TEXT    NOT NULL DEFAULT '',
    spec          TEXT    NOT NULL DEFAULT '',
    model         TEXT    NOT NULL DEFAULT '',
    verdict       TEXT    NOT NULL DEFAULT '',
    summary       TEXT    NOT NULL DEFAULT '',
    findings      TEXT    NOT NULL DEFAULT '[]',
    stage         TEXT    NOT NULL DEFAULT '',
    progress      REAL    NOT NULL DEFAULT 0,
    hold_addr     TEXT    NOT NULL DEFAULT '',
    hold_host_key TEXT    NOT NULL DEFAULT '',
    agent_addr    TEXT    NOT NULL DEFAULT '',
    boot_id       TEXT    NOT NULL DEFAULT '',
    event_seq     BIGINT  NOT NULL DEFAULT 0,
    error         TEXT    NOT NULL DEFAULT '',
    created_ms    BIGINT  NOT NULL,
    updated_ms    BIGINT  NOT NULL,
    started_ms    BIGINT  NOT NULL DEFAULT 0,
    ended_ms      BIGINT  NOT NULL DEFAULT 0,
    deadline_ms   BIGINT  NOT NULL DEFAULT 0,
    heartbeat_ms  BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX vet_runs_host ON vet_runs (host, id);
CREATE INDEX vet_runs_token ON vet_runs (token_hash) WHERE token_hash <> '';
-- At most one run per host is under way.
CREATE UNIQUE INDEX vet_runs_one_active ON vet_runs (host_id) WHERE active = 1;

CREATE TABLE vet_stages (
    run_id     INTEGER NOT NULL REFERENCES vet_runs (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    summary    TEXT    NOT NULL DEFAULT '',
    error      TEXT    NOT NULL DEFAULT '',
    started_ms BIGINT  NOT NULL DEFAULT 0,
    ended_ms   BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE vet_measurements (
    run_id INTEGER NOT NULL REFERENCES vet_runs (id) ON DELETE CASCADE,
    stage  TEXT    NOT NULL,
    name   TEXT    NOT NULL,
    value  REAL    NOT NULL,
    unit   TEXT    NOT NULL DEFAULT '',
    -- better: which way is better (higher, lower, ''), for baselines.
    better TEXT    NOT NULL DEFAULT '',
    status TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, name)
);

CREATE TABLE vet_events (
    id      INTEGER PRIMARY KEY,
    run_id  INTEGER NOT NULL REFERENCES vet_runs (id) ON DELETE CASCADE,
    seq     BIGINT  NOT NULL DEFAULT 0,
    kind    TEXT    NOT NULL,
    body    TEXT    NOT NULL DEFAULT '',
    time_ms BIGINT  NOT NULL
);
CREATE INDEX vet_events_run ON vet_events (run_id, id);

CREATE TABLE vet_artifacts (
    run_id     INTEGER NOT NULL REFERENCES vet_runs (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    size       BIGINT  NOT NULL,
    sha256     TEXT    NOT NULL,
    created_ms BIGINT  NOT NULL,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE vet_outbox (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER REFERENCES vet_runs (id) ON DELETE SET NULL,
    target     TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_ms    BIGINT  NOT NULL,
    last_error TEXT    NOT NULL DEFAULT '',
    done_ms    BIGINT  NOT NULL DEFAULT 0,
    failed     INTEGER NOT NULL DEFAULT 0,
    created_ms BIGINT  NOT NULL
);
CREATE INDEX vet_outbox_due ON vet_outbox (next_ms) WHERE done_ms = 0;
