package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// VetRun is one hardware vetting run of a host. The store keeps what the
// orchestrator decides; which states exist and how they follow each other is
// the orchestrator's business (services/vetting/orchestrator).
type VetRun struct {
	ID     int64
	HostID int64 // 0 once the host was deleted
	Host   string
	State  string
	// Active is true while the run is under way (at most one per host).
	Active  bool
	Profile string
	Hold    bool
	Wipe    bool
	// Token is the run's bearer token and TokenHash its lookup key; both are
	// cleared when the run ends.
	Token, TokenHash string
	// SSHPrivate and SSHPublic are the per-run key the operator holds the
	// host with; cleared when the hold ends.
	SSHPrivate, SSHPublic string
	Spec                  string // the expected spec when the run started
	Model                 string // manufacturer + product: the baseline's key
	Verdict, Summary      string
	Findings              string // JSON array
	Stage                 string
	Progress              float64
	HoldAddr, HoldHostKey string
	AgentAddr, BootID     string
	EventSeq              int64 // highest agent event Seq stored
	Error                 string
	Created, Updated      time.Time
	Started, Ended        time.Time
	Deadline, Heartbeat   time.Time

	// AgentSource is the address the agent's hello came from (the server saw
	// it; the agent cannot choose it).
	AgentSource string
}

// VetStage is one stage's outcome.
type VetStage struct {
	Name, Status, Summary, Error string
	Started, Ended               time.Time
}

// VetMeasurement is one measured value of a run (kept for baselines).
type VetMeasurement struct {
	RunID             int64
	Stage, Name, Unit string
	Value             float64
	Better, Status    string
}

// VetEvent is one entry of the vetting change log: an agent event (Seq > 0,
// Body its JSON) or a change of the run row (Kind VetEventRun).
type VetEvent struct {
	ID    int64
	RunID int64
	Seq   int64
	Kind  string
	Body  string
	Time  time.Time
}

// VetEventRun is the kind of the entry written whenever a run row changes.
const VetEventRun = "run"

// VetArtifact is a file of a run on the data partition.
type VetArtifact struct {
	RunID   int64
	Name    string
	Size    int64
	SHA256  string
	Created time.Time
}

// VetNotification is one notification in the outbox.
type VetNotification struct {
	ID       int64
	RunID    int64
	Target   string // the configured target's name
	Message  string // JSON
	Attempts int
	Next     time.Time
	LastErr  string
	Done     time.Time
	Failed   bool
}

// VetUpdate carries what UpdateVetRun stores along with the run row, in the
// same transaction.
type VetUpdate struct {
	// Events are agent events; those with a Seq at or below the run's
	// EventSeq are duplicates of a retried batch and dropped.
	Events       []VetEvent
	Stages       []VetStage
	Measurements []VetMeasurement
	Artifacts    []VetArtifact
	Notify       []VetNotification
}

const vetRunColumns = `id, COALESCE(host_id, 0), host, state, active, profile, hold, wipe, token, token_hash,
	ssh_private, ssh_public, spec, model, verdict, summary, findings, stage, progress, hold_addr,
	hold_host_key, agent_addr, boot_id, event_seq, error, created_ms, updated_ms, started_ms, ended_ms,
	deadline_ms, heartbeat_ms, agent_source`

func (s *Store) scanVetRun(r scanner) (VetRun, error) {
	var v VetRun
	var c, u, st, en, dl, hb int64
	err := r.Scan(&v.ID, &v.HostID, &v.Host, &v.State, &v.Active, &v.Profile, &v.Hold, &v.Wipe, &v.Token,
		&v.TokenHash, &v.SSHPrivate, &v.SSHPublic, &v.Spec, &v.Model, &v.Verdict, &v.Summary, &v.Findings,
		&v.Stage, &v.Progress, &v.HoldAddr, &v.HoldHostKey, &v.AgentAddr, &v.BootID, &v.EventSeq, &v.Error,
		&c, &u, &st, &en, &dl, &hb, &v.AgentSource)
	if err != nil {
		return VetRun{}, err
	}
	v.Created, v.Updated, v.Started, v.Ended = int2time(c), int2time(u), int2time(st), int2time(en)
	v.Deadline, v.Heartbeat = int2time(dl), int2time(hb)
	if v.Token, err = s.unseal(v.Token); err != nil {
		return VetRun{}, fmt.Errorf("run %d's token: %w", v.ID, err)
	}
	if v.SSHPrivate, err = s.unseal(v.SSHPrivate); err != nil {
		return VetRun{}, fmt.Errorf("run %d's SSH key: %w", v.ID, err)
	}
	return v, nil
}

// CreateVetRun stores a new run of r.HostID and returns it with its ID. A
// host with a run under way is a conflict on field "host".
func (s *Store) CreateVetRun(ctx context.Context, r VetRun) (VetRun, error) {
	if r.HostID == 0 || r.Host == "" {
		return VetRun{}, &FieldError{Field: "host", Problem: "missing", Err: ErrInvalid}
	}
	if r.State == "" || r.Profile == "" {
		return VetRun{}, &FieldError{Field: "state", Problem: "a run needs a state and a profile", Err: ErrInvalid}
	}
	if r.Findings == "" {
		r.Findings = "[]"
	}
	now := s.now()
	r.Created, r.Updated, r.Active = now, now, true
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var busy int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM vet_runs WHERE host_id = ? AND active = 1`, r.HostID).Scan(&busy)
		if err == nil {
			return &FieldError{Field: "host", Problem: fmt.Sprintf("%s already has run %d under way; stop it first", r.Host, busy), Err: ErrConflict}
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO vet_runs (host_id, host, state, active, profile, hold, wipe,
			token, token_hash, ssh_private, ssh_public, spec, model, findings, deadline_ms, created_ms, updated_ms)
			VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.HostID, r.Host, r.State, r.Profile, r.Hold, r.Wipe, s.seal(r.Token), r.TokenHash, s.seal(r.SSHPrivate), r.SSHPublic,
			r.Spec, r.Model, r.Findings, ms2int(r.Deadline), ms2int(now), ms2int(now))
		if err != nil {
			return fmt.Errorf("storing run: %w", err)
		}
		if r.ID, err = res.LastInsertId(); err != nil {
			return err
		}
		return addVetEvents(ctx, tx, r.ID, []VetEvent{{Kind: VetEventRun, Time: now}})
	})
	if err != nil {
		return VetRun{}, err
	}
	return r, nil
}

// VetRunByID returns run id.
func (s *Store) VetRunByID(ctx context.Context, id int64) (VetRun, error) {
	return s.oneVetRun(ctx, `WHERE id = ?`, id)
}

// VetRunByTokenHash returns the run whose token hashes to h.
func (s *Store) VetRunByTokenHash(ctx context.Context, h string) (VetRun, error) {
	if h == "" {
		return VetRun{}, fmt.Errorf("vetting run: %w", ErrNotFound)
	}
	return s.oneVetRun(ctx, `WHERE token_hash = ?`, h)
}

// ActiveVetRun returns the run under way of host hostID.
func (s *Store) ActiveVetRun(ctx context.Context, hostID int64) (VetRun, error) {
	return s.oneVetRun(ctx, `WHERE host_id = ? AND active = 1`, hostID)
}

func (s *Store) oneVetRun(ctx context.Context, where string, args ...any) (VetRun, error) {
	r, err := s.scanVetRun(s.db.QueryRowContext(ctx, `SELECT `+vetRunColumns+` FROM vet_runs `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return VetRun{}, fmt.Errorf("vetting run: %w", ErrNotFound)
	}
	if err != nil {
		return VetRun{}, fmt.Errorf("reading vetting run: %w", err)
	}
	return r, nil
}

// VetRunFilter selects runs for ListVetRuns.
type VetRunFilter struct {
	Host       string // "" = every host
	ActiveOnly bool
	Limit      int // <= 0: 100
}

// ListVetRuns returns runs, newest first.
func (s *Store) ListVetRuns(ctx context.Context, f VetRunFilter) ([]VetRun, error) {
	var where []string
	var args []any
	if f.Host != "" {
		where, args = append(where, "host = ?"), append(args, f.Host)
	}
	if f.ActiveOnly {
		where = append(where, "active = 1")
	}
	q := `SELECT ` + vetRunColumns + ` FROM vet_runs`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, f.Limit)
	return queryAll(ctx, s.db, "vetting runs", s.scanVetRun, q, args...)
}

// UpdateVetRun reads run id, lets fn change it and fill u, and stores both
// in one transaction. A change of the row is logged as a VetEventRun entry.
// fn's error aborts the update and is returned as is.
func (s *Store) UpdateVetRun(ctx context.Context, id int64, fn func(r *VetRun, u *VetUpdate) error) (VetRun, error) {
	var out VetRun
	err := s.tx(ctx, func(tx *sql.Tx) error {
		old, err := s.scanVetRun(tx.QueryRowContext(ctx, `SELECT `+vetRunColumns+` FROM vet_runs WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("vetting run %d: %w", id, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("reading vetting run: %w", err)
		}
		r := old
		var u VetUpdate
		if err := fn(&r, &u); err != nil {
			return err
		}
		now := s.now()
		var events []VetEvent
		for _, e := range u.Events {
			if e.Seq <= r.EventSeq {
				continue
			}
			r.EventSeq = e.Seq
			events = append(events, e)
		}
		r.ID, r.Created = old.ID, old.Created
		changed := r != old
		if changed {
			r.Updated = now
			if r.Findings == "" {
				r.Findings = "[]"
			}
			_, err := tx.ExecContext(ctx, `UPDATE vet_runs SET state = ?, active = ?, profile = ?, hold = ?, wipe = ?,
				token = ?, token_hash = ?, ssh_private = ?, ssh_public = ?, spec = ?, model = ?, verdict = ?,
				summary = ?, findings = ?, stage = ?, progress = ?, hold_addr = ?, hold_host_key = ?, agent_addr = ?,
				boot_id = ?, event_seq = ?, error = ?, updated_ms = ?, started_ms = ?, ended_ms = ?, deadline_ms = ?,
				heartbeat_ms = ?, agent_source = ? WHERE id = ?`,
				r.State, r.Active, r.Profile, r.Hold, r.Wipe, s.seal(r.Token), r.TokenHash, s.seal(r.SSHPrivate), r.SSHPublic, r.Spec,
				r.Model, r.Verdict, r.Summary, r.Findings, r.Stage, r.Progress, r.HoldAddr, r.HoldHostKey, r.AgentAddr,
				r.BootID, r.EventSeq, r.Error, ms2int(r.Updated), ms2int(r.Started), ms2int(r.Ended), ms2int(r.Deadline),
				ms2int(r.Heartbeat), r.AgentSource, id)
			if err != nil {
				return fmt.Errorf("updating vetting run: %w", err)
			}
		}
		for i := range events {
			if events[i].Time.IsZero() {
				events[i].Time = now
			}
		}
		if changed && (old.State != r.State || old.Stage != r.Stage || old.Progress != r.Progress ||
			old.HoldAddr != r.HoldAddr || old.Verdict != r.Verdict) {
			events = append(events, VetEvent{Kind: VetEventRun, Time: now})
		}
		if err := addVetEvents(ctx, tx, id, events); err != nil {
			return err
		}
		for _, st := range u.Stages {
			if _, err := tx.ExecContext(ctx, `INSERT INTO vet_stages (run_id, name, status, summary, error, started_ms, ended_ms)
				VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, name) DO UPDATE SET status = excluded.status,
				summary = excluded.summary, error = excluded.error, started_ms = excluded.started_ms, ended_ms = excluded.ended_ms`,
				id, st.Name, st.Status, st.Summary, st.Error, ms2int(st.Started), ms2int(st.Ended)); err != nil {
				return fmt.Errorf("storing stage %s: %w", st.Name, err)
			}
		}
		for _, m := range u.Measurements {
			if _, err := tx.ExecContext(ctx, `INSERT INTO vet_measurements (run_id, stage, name, value, unit, better, status)
				VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, name) DO UPDATE SET stage = excluded.stage,
				value = excluded.value, unit = excluded.unit, better = excluded.better, status = excluded.status`,
				id, m.Stage, m.Name, m.Value, m.Unit, m.Better, m.Status); err != nil {
				return fmt.Errorf("storing measurement %s: %w", m.Name, err)
			}
		}
		for _, a := range u.Artifacts {
			if _, err := tx.ExecContext(ctx, `INSERT INTO vet_artifacts (run_id, name, size, sha256, created_ms)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, name) DO UPDATE SET size = excluded.size,
				sha256 = excluded.sha256, created_ms = excluded.created_ms`,
				id, a.Name, a.Size, a.SHA256, ms2int(now)); err != nil {
				return fmt.Errorf("storing artifact %s: %w", a.Name, err)
			}
		}
		for _, n := range u.Notify {
			next := n.Next
			if next.IsZero() {
				next = now
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO vet_outbox (run_id, target, message, next_ms, created_ms)
				VALUES (?, ?, ?, ?, ?)`, id, n.Target, n.Message, ms2int(next), ms2int(now)); err != nil {
				return fmt.Errorf("queueing notification: %w", err)
			}
		}
		out = r
		return nil
	})
	return out, err
}

// queryAll runs q and scans every row with scan; what names the rows in
// errors.
func queryAll[T any](ctx context.Context, db *sql.DB, what string, scan func(scanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", what, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func addVetEvents(ctx context.Context, tx *sql.Tx, runID int64, events []VetEvent) error {
	for _, e := range events {
		if _, err := tx.ExecContext(ctx, `INSERT INTO vet_events (run_id, seq, kind, body, time_ms) VALUES (?, ?, ?, ?, ?)`,
			runID, e.Seq, e.Kind, e.Body, ms2int(e.Time)); err != nil {
			return fmt.Errorf("storing vetting event: %w", err)
		}
	}
	return nil
}

const vetEventColumns = `id, run_id, seq, kind, body, time_ms`

func (s *Store) queryVetEvents(ctx context.Context, q string, args ...any) ([]VetEvent, error) {
	return queryAll(ctx, s.db, "vetting events", func(r scanner) (VetEvent, error) {
		var e VetEvent
		var t int64
		err := r.Scan(&e.ID, &e.RunID, &e.Seq, &e.Kind, &e.Body, &t)
		e.Time = int2time(t)
		return e, err
	}, `SELECT `+vetEventColumns+` FROM vet_events `+q, args...)
}

// VetEventsAfter returns up to limit change-log entries with an id above
// afterID, of every run, oldest first (limit <= 0: 500).
func (s *Store) VetEventsAfter(ctx context.Context, afterID int64, limit int) ([]VetEvent, error) {
	if limit <= 0 {
		limit = 500
	}
	return s.queryVetEvents(ctx, `WHERE id > ? ORDER BY id LIMIT ?`, afterID, limit)
}

// VetRunEvents returns the agent events of run (not the run-change entries),
// oldest first.
func (s *Store) VetRunEvents(ctx context.Context, runID int64) ([]VetEvent, error) {
	return s.queryVetEvents(ctx, `WHERE run_id = ? AND kind <> ? ORDER BY id`, runID, VetEventRun)
}

// LastVetEventID is the newest change-log id (0: none); the live UI's
// stream starts after it.
func (s *Store) LastVetEventID(ctx context.Context) (int64, error) {
	var id int64
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM vet_events`).Scan(&id); err != nil {
		return 0, fmt.Errorf("reading vetting events: %w", err)
	}
	return id, nil
}

// VetStages returns run's stages in the order they started.
func (s *Store) VetStages(ctx context.Context, runID int64) ([]VetStage, error) {
	return queryAll(ctx, s.db, "stages", func(r scanner) (VetStage, error) {
		var st VetStage
		var a, b int64
		err := r.Scan(&st.Name, &st.Status, &st.Summary, &st.Error, &a, &b)
		st.Started, st.Ended = int2time(a), int2time(b)
		return st, err
	}, `SELECT name, status, summary, error, started_ms, ended_ms FROM vet_stages
		WHERE run_id = ? ORDER BY started_ms, name`, runID)
}

// VetMeasurementsOfModel returns the measurements of the newest runs (at
// most runs of them) of model that ended with verdict, except run
// exceptRun; baselines are built from them.
func (s *Store) VetMeasurementsOfModel(ctx context.Context, model, verdict string, exceptRun int64, runs int) ([]VetMeasurement, error) {
	if runs <= 0 {
		runs = 20
	}
	return queryAll(ctx, s.db, "measurements", func(r scanner) (VetMeasurement, error) {
		var m VetMeasurement
		err := r.Scan(&m.RunID, &m.Stage, &m.Name, &m.Unit, &m.Value, &m.Better, &m.Status)
		return m, err
	}, `SELECT m.run_id, m.stage, m.name, m.unit, m.value, m.better, m.status
		FROM vet_measurements m WHERE m.run_id IN (SELECT id FROM vet_runs WHERE model = ? AND verdict = ? AND id <> ?
		ORDER BY id DESC LIMIT ?) ORDER BY m.run_id, m.name`, model, verdict, exceptRun, runs)
}

// VetArtifacts returns run's artifacts by name.
func (s *Store) VetArtifacts(ctx context.Context, runID int64) ([]VetArtifact, error) {
	return queryAll(ctx, s.db, "artifacts", func(r scanner) (VetArtifact, error) {
		var a VetArtifact
		var c int64
		err := r.Scan(&a.RunID, &a.Name, &a.Size, &a.SHA256, &c)
		a.Created = int2time(c)
		return a, err
	}, `SELECT run_id, name, size, sha256, created_ms FROM vet_artifacts WHERE run_id = ? ORDER BY name`, runID)
}

// VetRunsToPrune returns ended runs beyond the keep newest of their host, or
// ended before cutoff (zero: no age limit).
func (s *Store) VetRunsToPrune(ctx context.Context, keep int, cutoff time.Time) ([]int64, error) {
	if keep <= 0 {
		keep = 1 << 30
	}
	return queryAll(ctx, s.db, "runs to prune", func(r scanner) (int64, error) {
		var id int64
		err := r.Scan(&id)
		return id, err
	}, `SELECT id FROM (SELECT id, ended_ms,
		ROW_NUMBER() OVER (PARTITION BY host ORDER BY id DESC) AS n FROM vet_runs WHERE active = 0)
		WHERE n > ? OR (? > 0 AND ended_ms < ?) ORDER BY id`, keep, ms2int(cutoff), ms2int(cutoff))
}

// DeleteVetRun deletes an ended run with its stages, measurements, events
// and artifact records (the files are the caller's).
func (s *Store) DeleteVetRun(ctx context.Context, id int64) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM vet_runs WHERE id = ? AND active = 0`, id)
		if err != nil {
			return fmt.Errorf("deleting run %d: %w", id, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("run %d (or it is still under way): %w", id, ErrNotFound)
		}
		return nil
	})
}

// DueVetNotifications returns up to limit undelivered notifications due at
// now, oldest first.
func (s *Store) DueVetNotifications(ctx context.Context, now time.Time, limit int) ([]VetNotification, error) {
	if limit <= 0 {
		limit = 20
	}
	return s.queryVetNotifications(ctx, `WHERE done_ms = 0 AND next_ms <= ? ORDER BY next_ms, id LIMIT ?`, ms2int(now), limit)
}

const vetNotificationColumns = `id, COALESCE(run_id, 0), target, message, attempts, next_ms, last_error, done_ms, failed`

func (s *Store) queryVetNotifications(ctx context.Context, q string, args ...any) ([]VetNotification, error) {
	return queryAll(ctx, s.db, "the notification outbox", func(r scanner) (VetNotification, error) {
		var n VetNotification
		var next, done int64
		err := r.Scan(&n.ID, &n.RunID, &n.Target, &n.Message, &n.Attempts, &next, &n.LastErr, &done, &n.Failed)
		n.Next, n.Done = int2time(next), int2time(done)
		return n, err
	}, `SELECT `+vetNotificationColumns+` FROM vet_outbox `+q, args...)
}

// VetNotificationsOfRun returns run's notifications, oldest first.
func (s *Store) VetNotificationsOfRun(ctx context.Context, runID int64) ([]VetNotification, error) {
	return s.queryVetNotifications(ctx, `WHERE run_id = ? ORDER BY id`, runID)
}

// VetNotificationAttempt records one delivery attempt: delivered, given up
// (failed), or to be retried at next.
func (s *Store) VetNotificationAttempt(ctx context.Context, id int64, delivered, failed bool, errText string, next time.Time) error {
	now := s.now()
	done := int64(0)
	if delivered || failed {
		done = ms2int(now)
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_, err := s.db.ExecContext(ctx, `UPDATE vet_outbox SET attempts = attempts + 1, last_error = ?, done_ms = ?,
		failed = ?, next_ms = ? WHERE id = ?`, errText, done, failed, ms2int(next), id)
	if err != nil {
		return fmt.Errorf("recording a notification attempt: %w", err)
	}
	return nil
}
