-- 0010: the scheduler's record of job runs (services/scheduler): when each
-- ran, for how long, what started it (the schedule or an operator's "run
-- now"), whether it succeeded and, for retention jobs, how many rows or
-- files it removed. The store keeps the newest JobRunsKept runs per job.

CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY,
    job         TEXT    NOT NULL,
    started_by  TEXT    NOT NULL,
    started_ms  BIGINT  NOT NULL,
    duration_ms BIGINT  NOT NULL,
    error       TEXT    NOT NULL DEFAULT '',
    removed     BIGINT  NOT NULL DEFAULT 0,
    summary     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX job_runs_job ON job_runs (job, id);
