package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"time"

	"kiln.dev/kiln/services/store"
)

// Sentinel errors callers branch on.
var (
	// ErrUnknownJob: no job has that name.
	ErrUnknownJob = errors.New("no such job")
	// ErrRunning: the job is running already.
	ErrRunning = errors.New("job is already running")
)

// Result is what one run of a job did.
type Result struct {
	// Removed counts what a retention job deleted.
	Removed int64
	// Summary says what the run did, in a line ("removed 12 boot events").
	Summary string
}

// Func is a job's work.
type Func func(ctx context.Context, now time.Time) (Result, error)

// Job is a named job on a schedule.
type Job struct {
	Name     string
	Schedule Cron
	// Window is the stagger window (0: DefaultWindow of Schedule).
	Window time.Duration
	// Timeout bounds one run (0: an hour).
	Timeout time.Duration
	Run     Func
}

// Recorder stores runs (*store.Store).
type Recorder interface {
	RecordJobRun(ctx context.Context, r store.JobRun) (store.JobRun, error)
	LastJobRuns(ctx context.Context) (map[string]store.JobRun, error)
}

// Options configure New.
type Options struct {
	// ID is the appliance's identity, hashed into every job's offset.
	ID string
	// Location is the zone cron fields are read in (nil: UTC).
	Location *time.Location
	Clock    Clock
	Store    Recorder
	Log      *slog.Logger
}

// Status is a job as the API shows it.
type Status struct {
	Name     string
	Schedule string
	Window   time.Duration
	Offset   time.Duration
	Next     time.Time
	Running  bool
	// Last is the newest recorded run (zero ID: none yet).
	Last store.JobRun
}

// Scheduler runs jobs. Add them, then call Run.
type Scheduler struct {
	opt Options

	// mu guards jobs, running and started.
	mu      sync.Mutex
	jobs    map[string]*entry
	running map[string]bool
	started bool
}

type entry struct {
	Job
	offset time.Duration
}

// New returns a scheduler without jobs.
func New(opt Options) *Scheduler {
	if opt.Location == nil {
		opt.Location = time.UTC
	}
	if opt.Clock == nil {
		opt.Clock = SystemClock{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{opt: opt, jobs: map[string]*entry{}, running: map[string]bool{}}
}

var jobName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// Add registers j; it must come before Run. Names are unique, lower-case
// letters, digits and dashes.
func (s *Scheduler) Add(j Job) error {
	if !jobName.MatchString(j.Name) {
		return fmt.Errorf("job %q: a name is lower-case letters, digits and dashes, starting with a letter", j.Name)
	}
	if j.Run == nil {
		return fmt.Errorf("job %s: no work to run", j.Name)
	}
	if j.Window < 0 || j.Window > MaxWindow {
		return fmt.Errorf("job %s: stagger window %s: want 0 to %s", j.Name, j.Window, MaxWindow)
	}
	if j.Window == 0 {
		j.Window = DefaultWindow(j.Schedule)
	}
	if j.Timeout <= 0 {
		j.Timeout = time.Hour
	}
	if _, err := j.Schedule.Next(s.opt.Clock.Now(), s.opt.Location); err != nil {
		return fmt.Errorf("job %s: %w", j.Name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("job %s: added after the scheduler started", j.Name)
	}
	if _, dup := s.jobs[j.Name]; dup {
		return fmt.Errorf("job %s: added twice", j.Name)
	}
	s.jobs[j.Name] = &entry{Job: j, offset: Offset(s.opt.ID, j.Name, j.Window)}
	return nil
}

// Run runs every job at its staggered times until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	s.mu.Lock()
	s.started = true
	jobs := make([]*entry, 0, len(s.jobs))
	for _, e := range s.jobs {
		jobs = append(jobs, e)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range jobs {
		wg.Go(func() { s.loop(ctx, e) })
	}
	wg.Wait()
}

// loop waits for each of e's times and runs it.
func (s *Scheduler) loop(ctx context.Context, e *entry) {
	log := s.opt.Log.With("job", e.Name)
	for {
		now := s.opt.Clock.Now()
		next, err := NextRun(e.Schedule, s.opt.Location, e.offset, now)
		if err != nil {
			log.Error("job has no next time; it will not run on schedule", "err", err)
			return
		}
		log.Debug("next run", "at", next.UTC().Format(time.RFC3339))
		// Sleep in steps of at most an hour so that a clock stepped by NTP
		// (or a suspended VM) does not leave the job waiting for long.
		select {
		case <-ctx.Done():
			return
		case <-s.opt.Clock.After(min(next.Sub(now), time.Hour)):
		}
		if s.opt.Clock.Now().Before(next) {
			continue
		}
		if _, err := s.run(ctx, e, "schedule"); errors.Is(err, ErrRunning) {
			log.Info("skipping a scheduled run: the job is still running")
		}
		// The next time is after this one even when the run was instant:
		// NextRun looks strictly after now, and now is at least next.
	}
}

// RunNow runs the job called name at once and returns its record; by
// says who asked ("user:NAME").
func (s *Scheduler) RunNow(ctx context.Context, name, by string) (store.JobRun, error) {
	s.mu.Lock()
	e, ok := s.jobs[name]
	s.mu.Unlock()
	if !ok {
		return store.JobRun{}, fmt.Errorf("job %q: %w", name, ErrUnknownJob)
	}
	return s.run(ctx, e, by)
}

// run runs e once unless it is running, and records the run.
func (s *Scheduler) run(ctx context.Context, e *entry, by string) (store.JobRun, error) {
	s.mu.Lock()
	if s.running[e.Name] {
		s.mu.Unlock()
		return store.JobRun{}, fmt.Errorf("job %s: %w", e.Name, ErrRunning)
	}
	s.running[e.Name] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, e.Name)
		s.mu.Unlock()
	}()

	log := s.opt.Log.With("job", e.Name, "started_by", by)
	start := s.opt.Clock.Now()
	rctx, cancel := context.WithTimeout(ctx, e.Timeout)
	res, err := e.Run(rctx, start)
	cancel()
	r := store.JobRun{Job: e.Name, StartedBy: by, Started: start, Duration: s.opt.Clock.Now().Sub(start),
		Removed: res.Removed, Summary: res.Summary}
	if err != nil {
		r.Error = err.Error()
		log.Error("job failed", "err", err, "took", r.Duration)
	} else {
		log.Info("job done", "summary", res.Summary, "removed", res.Removed, "took", r.Duration)
	}
	if s.opt.Store != nil {
		// Record even when ctx ended (a run cut short by shutdown still ran).
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		rec, rerr := s.opt.Store.RecordJobRun(wctx, r)
		cancel()
		if rerr != nil {
			log.Warn("recording the job's run", "err", rerr)
		} else {
			r = rec
		}
	}
	return r, nil
}

// Jobs returns every job's schedule, next time and newest run, by name.
func (s *Scheduler) Jobs(ctx context.Context) ([]Status, error) {
	last := map[string]store.JobRun{}
	if s.opt.Store != nil {
		var err error
		if last, err = s.opt.Store.LastJobRuns(ctx); err != nil {
			return nil, err
		}
	}
	now := s.opt.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.jobs))
	for _, e := range s.jobs {
		next, _ := NextRun(e.Schedule, s.opt.Location, e.offset, now)
		out = append(out, Status{Name: e.Name, Schedule: e.Schedule.String(), Window: e.Window, Offset: e.offset,
			Next: next, Running: s.running[e.Name], Last: last[e.Name]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
