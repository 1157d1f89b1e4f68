package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// JobRunsKept is how many runs of each job the store keeps (the newest).
const JobRunsKept = 50

// JobRun is one run of a scheduled job.
type JobRun struct {
	ID  int64
	Job string
	// StartedBy is "schedule", or "user:NAME" for an operator's run now.
	StartedBy string
	Started   time.Time
	Duration  time.Duration
	// Error is empty when the run succeeded.
	Error string
	// Removed counts what a retention job deleted.
	Removed int64
	// Summary says what the run did, in a line.
	Summary string
}

// RecordJobRun stores r (its ID is assigned) and forgets that job's runs
// beyond the newest JobRunsKept.
func (s *Store) RecordJobRun(ctx context.Context, r JobRun) (JobRun, error) {
	if r.Job == "" {
		return r, &FieldError{Field: "job", Problem: "empty job name", Err: ErrInvalid}
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO job_runs (job, started_by, started_ms, duration_ms, error, removed, summary)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, r.Job, r.StartedBy, ms2int(r.Started), r.Duration.Milliseconds(), r.Error, r.Removed, r.Summary)
		if err != nil {
			return fmt.Errorf("recording a run of job %s: %w", r.Job, err)
		}
		if r.ID, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("recording a run of job %s: %w", r.Job, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM job_runs WHERE job = ? AND id <= (
			SELECT id FROM job_runs WHERE job = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`, r.Job, r.Job, JobRunsKept); err != nil {
			return fmt.Errorf("forgetting old runs of job %s: %w", r.Job, err)
		}
		return nil
	})
	return r, err
}

// LastJobRuns returns the newest run of every job that has run.
func (s *Store) LastJobRuns(ctx context.Context) (map[string]JobRun, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, job, started_by, started_ms, duration_ms, error, removed, summary
		FROM job_runs WHERE id IN (SELECT max(id) FROM job_runs GROUP BY job)`)
	if err != nil {
		return nil, fmt.Errorf("reading job runs: %w", err)
	}
	defer rows.Close()
	out := map[string]JobRun{}
	for rows.Next() {
		var r JobRun
		var started, dur int64
		if err := rows.Scan(&r.ID, &r.Job, &r.StartedBy, &started, &dur, &r.Error, &r.Removed, &r.Summary); err != nil {
			return nil, fmt.Errorf("reading job runs: %w", err)
		}
		r.Started, r.Duration = int2time(started), time.Duration(dur)*time.Millisecond
		out[r.Job] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading job runs: %w", err)
	}
	return out, nil
}

// PruneLeases deletes leases that expired before t and returns how many.
// Their addresses go back to the pool without the former owner's claim.
func (s *Store) PruneLeases(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE expires_ms < ?`, ms2int(t))
		if err != nil {
			return fmt.Errorf("pruning leases: %w", err)
		}
		if n, _ = res.RowsAffected(); n == 0 {
			return nil
		}
		return bump(ctx, tx)
	})
	return n, err
}
