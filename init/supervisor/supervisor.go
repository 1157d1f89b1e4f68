package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"kiln.dev/kiln/init/supervisor/supervisorapi"
)

// Reaper starts and collects the supervisor's children. Inside the image PID 1
// passes its zombie reaper (*reap.Reaper satisfies this), which records each
// pid under the lock it reaps with, so an orphan sweep never steals the exit
// status of a supervised child; nil means cmd.Start and cmd.Wait (host mode).
type Reaper interface {
	// Start starts cmd and marks its pid as owned.
	Start(cmd *exec.Cmd) error
	// Wait waits for cmd, which Start started, and forgets its pid.
	Wait(cmd *exec.Cmd) error
}

// directReaper is the host-mode Reaper: plain os/exec.
type directReaper struct{}

func (directReaper) Start(cmd *exec.Cmd) error { return cmd.Start() }
func (directReaper) Wait(cmd *exec.Cmd) error  { return cmd.Wait() }

// Options configure a Supervisor. RunDir is required.
type Options struct {
	// Exe is the program every service runs; default "/proc/self/exe".
	Exe string
	// Argv0 is the children's argv[0]; default "kiln".
	Argv0 string
	// Env is the children's base environment; default os.Environ(). NOTIFY_SOCKET,
	// WATCHDOG_* and LISTEN_* entries are dropped from it.
	Env []string
	// RunDir holds notify/<name>.sock and supervisor.sock (volatile).
	RunDir string
	// LogDir receives <name>.log; empty keeps logs only in memory.
	LogDir string
	// LogMaxBytes and LogFiles bound each service's persisted log: default
	// 1 MiB per file and 5 files (<name>.log, <name>.log.1 … .4).
	LogMaxBytes int64
	LogFiles    int
	// RingLines is how many lines each service's ring keeps; default 1000.
	RingLines int
	// Console receives "kiln: ready\n" once, when everything first becomes ready.
	Console io.Writer
	// Echo, if set, also receives every line a service prints, as "<name>: <text>".
	Echo io.Writer
	// Logger receives the supervisor's own events; default discards.
	Logger *slog.Logger
	// Reaper is PID 1's reaper; nil in host mode.
	Reaper Reaper
	// UnhealthyAfterCrashLoop, when positive, makes Healthy fail once any
	// service has been crash-looping that long; zero never does.
	UnhealthyAfterCrashLoop time.Duration
	// Clock defaults to the real clock.
	Clock Clock
	// StartTimeout bounds start → READY=1; default 30 s.
	StartTimeout time.Duration
	// StopTimeout is the SIGTERM → SIGKILL deadline per service; default 10 s.
	StopTimeout time.Duration
	// Backoff is the restart policy; zero fields take DefaultBackoff's values.
	Backoff Backoff
}

// maxSocketPath is the longest path a unix socket can be bound to (sun_path less the NUL).
const maxSocketPath = 107

// SocketPath returns the control socket's path for a run directory.
func SocketPath(runDir string) string { return supervisorapi.SocketPath(runDir) }

// ErrUnknownService is returned for a name that is not in the specs.
var ErrUnknownService = errors.New("unknown service")

// Supervisor runs a fixed set of services. Create it with New, then Start and,
// at the end, Stop.
type Supervisor struct {
	opts     Options
	services []*service // in start order
	byName   map[string]*service
	log      *slog.Logger
	readyCh  chan struct{}
	hurry    chan struct{} // closed when Stop's context ends: SIGKILL at once
	stopDone chan struct{} // closed when Stop finished
	// ctlClosing is closed when the control server shuts down.
	ctlClosing chan struct{}
	// spawns carries fork calls to one OS thread that never exits while
	// children live, so their Pdeathsig does not fire early.
	spawns chan func()

	// mu guards the fields below.
	mu        sync.Mutex
	started   bool
	stopping  bool
	announced bool          // "kiln: ready" was written
	wake      chan struct{} // closed and replaced whenever a service's state changes
	ctl       *http.Server
	ctlLn     net.Listener
}

// New validates specs and prepares a supervisor; nothing runs until Start.
func New(specs []Spec, opts Options) (*Supervisor, error) {
	ordered, err := order(specs)
	if err != nil {
		return nil, err
	}
	if opts.RunDir == "" {
		return nil, errors.New("supervisor: Options.RunDir is empty")
	}
	if opts.Exe == "" {
		opts.Exe = "/proc/self/exe"
	}
	if opts.Argv0 == "" {
		opts.Argv0 = "kiln"
	}
	if opts.Env == nil {
		opts.Env = os.Environ()
	}
	opts.Env = slices.DeleteFunc(slices.Clone(opts.Env), func(kv string) bool {
		return strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_") || strings.HasPrefix(kv, "LISTEN_")
	})
	if opts.LogMaxBytes <= 0 {
		opts.LogMaxBytes = 1 << 20
	}
	if opts.LogFiles <= 0 {
		opts.LogFiles = 5
	}
	if opts.RingLines <= 0 {
		opts.RingLines = 1000
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Reaper == nil {
		opts.Reaper = directReaper{}
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	opts.Backoff = opts.Backoff.withDefaults()

	s := &Supervisor{
		opts:       opts,
		byName:     make(map[string]*service, len(ordered)),
		log:        opts.Logger.With("component", "supervisor"),
		readyCh:    make(chan struct{}),
		hurry:      make(chan struct{}),
		stopDone:   make(chan struct{}),
		ctlClosing: make(chan struct{}),
		spawns:     make(chan func()),
		wake:       make(chan struct{}),
	}
	for _, p := range []string{SocketPath(opts.RunDir), s.notifyPath(strings.Repeat("x", 32))} {
		if len(p) > maxSocketPath {
			return nil, fmt.Errorf("run directory %s is too long for unix sockets (%d bytes, at most %d): choose a shorter run directory", opts.RunDir, len(p), maxSocketPath)
		}
	}
	now := opts.Clock.Now()
	for _, sp := range ordered {
		v := &service{
			spec:       sp,
			sup:        s,
			stopReq:    make(chan struct{}),
			restartReq: make(chan struct{}, 1),
			done:       make(chan struct{}),
			notes:      make(chan notice, 16),
			st: ServiceStatus{
				Name: sp.Name, Enabled: sp.Enabled, Deps: sp.Deps,
				State: StateStopped, Since: now,
			},
		}
		v.sink = &sink{
			name:  sp.Name,
			ring:  NewRing(opts.RingLines),
			echo:  opts.Echo,
			clock: opts.Clock,
			onFileError: func(err error) {
				s.log.Warn("persisting logs failed; they stay in memory", "service", sp.Name, "err", err)
			},
		}
		if opts.LogDir != "" {
			v.sink.file = &rotatingFile{path: filepath.Join(opts.LogDir, sp.Name+".log"), max: opts.LogMaxBytes, files: opts.LogFiles}
		}
		s.services = append(s.services, v)
		s.byName[sp.Name] = v
	}
	return s, nil
}

func (s *Supervisor) notifyPath(name string) string {
	return filepath.Join(s.opts.RunDir, "notify", name+".sock")
}

// Start binds the notify sockets and the control socket and starts every
// enabled service in dependency order. It returns once they are launched;
// readiness is reported by Ready and Status.
func (s *Supervisor) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("supervisor already started")
	}
	if err := os.MkdirAll(filepath.Join(s.opts.RunDir, "notify"), 0o700); err != nil {
		return fmt.Errorf("creating run directory: %w", err)
	}
	if s.opts.LogDir != "" {
		if err := os.MkdirAll(s.opts.LogDir, 0o750); err != nil {
			return fmt.Errorf("creating log directory: %w", err)
		}
	}
	var bound []*service
	cleanup := func() {
		for _, v := range bound {
			v.conn.Close()
			os.Remove(s.notifyPath(v.spec.Name))
		}
	}
	for _, v := range s.services {
		if !v.spec.Enabled {
			continue
		}
		c, err := listenNotify(s.notifyPath(v.spec.Name))
		if err != nil {
			cleanup()
			return fmt.Errorf("service %s: %w", v.spec.Name, err)
		}
		v.conn = c
		bound = append(bound, v)
	}
	if err := s.listenControl(); err != nil {
		cleanup()
		return err
	}
	s.started = true
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine, after Stop
		for f := range s.spawns {
			f()
		}
	}()
	for _, v := range s.services {
		if v.conn != nil {
			go readNotices(v.conn, v.notes, v.done)
		}
		go v.loop()
	}
	s.log.Info("started", "services", len(s.services), "run_dir", s.opts.RunDir)
	go s.changed() // no enabled services means ready at once
	return nil
}

// Stop stops every service in reverse dependency order: a service gets SIGTERM
// only after every service that depends on it has exited, and SIGKILL after
// Options.StopTimeout. When ctx ends first, whatever still runs gets SIGKILL at
// once. Stop then closes the sockets; calling it again waits for the first call.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopping {
		started := s.started
		s.mu.Unlock()
		if started {
			select {
			case <-s.stopDone:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}
	s.stopping = true
	ctl := s.ctl
	s.mu.Unlock()
	defer close(s.stopDone)

	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
			close(s.hurry)
		case <-finished:
		}
	}()

	dependents := make(map[string][]*service)
	for _, v := range s.services {
		for _, d := range v.spec.Deps {
			dependents[d] = append(dependents[d], v)
		}
	}
	var wg sync.WaitGroup
	for _, v := range s.services {
		wg.Go(func() {
			for _, d := range dependents[v.spec.Name] {
				<-d.done
			}
			close(v.stopReq)
			<-v.done
		})
	}
	wg.Wait()

	var errs []error
	for _, v := range s.services {
		if v.conn != nil {
			v.conn.Close()
			os.Remove(s.notifyPath(v.spec.Name))
		}
		if v.sink.file != nil {
			v.sink.file.Close()
		}
		if err := v.stopErr; err != nil {
			errs = append(errs, err)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := ctl.Shutdown(sctx); err != nil {
		ctl.Close()
	}
	os.Remove(SocketPath(s.opts.RunDir))
	close(s.spawns)
	s.log.Info("stopped")
	return errors.Join(errs...)
}

// Ready returns a channel closed when every enabled service was ready at once,
// the first time.
func (s *Supervisor) Ready() <-chan struct{} { return s.readyCh }

// Healthy returns nil while the supervisor is running: started, not stopping,
// able to take its locks, and every enabled service supervised. By default a
// crash-looping service is reported in Status but does not make the system
// unhealthy (rebooting rarely fixes a broken service, and a reboot loop locks
// the operator out of the recovery console); Options.UnhealthyAfterCrashLoop
// changes that.
func (s *Supervisor) Healthy() error {
	s.mu.Lock()
	started, stopping := s.started, s.stopping
	s.mu.Unlock()
	switch {
	case !started:
		return errors.New("supervisor not started")
	case stopping:
		return errors.New("supervisor stopping")
	}
	now := s.opts.Clock.Now()
	for _, v := range s.services {
		if !v.spec.Enabled {
			continue
		}
		select {
		case <-v.done:
			return fmt.Errorf("service %s: supervision ended", v.spec.Name)
		default:
		}
		st := v.status()
		if limit := s.opts.UnhealthyAfterCrashLoop; limit > 0 && st.CrashLoopSince != nil && now.Sub(*st.CrashLoopSince) >= limit {
			return fmt.Errorf("service %s has been crash-looping since %s (last exit: %s)", v.spec.Name, st.CrashLoopSince.Format(time.RFC3339), st.LastExit)
		}
	}
	return nil
}

// Status returns every service's state, in start order.
func (s *Supervisor) Status() Status {
	st := Status{Ready: true, Services: make([]ServiceStatus, 0, len(s.services))}
	for _, v := range s.services {
		ss := v.status()
		if ss.Enabled && ss.State != StateReady {
			st.Ready = false
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// Restart stops the named service (SIGTERM, then SIGKILL after StopTimeout) and
// starts it again at once, clearing its backoff and crash-loop state.
func (s *Supervisor) Restart(name string) error {
	v, ok := s.byName[name]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownService, name)
	}
	if !v.spec.Enabled {
		return fmt.Errorf("service %s is disabled: enable it in the config (services.%s.enabled: true)", name, name)
	}
	select {
	case v.restartReq <- struct{}{}:
	default: // a restart is already pending
	}
	return nil
}

// Logs returns the named service's ring lines with Seq > since, and a channel
// closed when the next line arrives.
func (s *Supervisor) Logs(name string, since uint64) ([]Line, <-chan struct{}, error) {
	v, ok := s.byName[name]
	if !ok {
		return nil, nil, fmt.Errorf("%w %q", ErrUnknownService, name)
	}
	lines, wake := v.sink.ring.Since(since)
	return lines, wake, nil
}

// spawn runs f, which forks a child, on the spawning thread.
func (s *Supervisor) spawn(f func()) {
	done := make(chan struct{})
	s.spawns <- func() { f(); close(done) }
	<-done
}

// changed is called after any service's state changed: it wakes services
// waiting for deps and announces readiness the first time everything is ready.
func (s *Supervisor) changed() {
	ready := true
	for _, v := range s.services {
		if v.spec.Enabled && v.state() != StateReady {
			ready = false
			break
		}
	}
	s.mu.Lock()
	close(s.wake)
	s.wake = make(chan struct{})
	announce := ready && !s.announced && !s.stopping
	if announce {
		s.announced = true
	}
	s.mu.Unlock()
	if announce {
		s.log.Info("all services ready")
		close(s.readyCh)
		if s.opts.Console != nil {
			io.WriteString(s.opts.Console, "kiln: ready\n")
		}
	}
}

// waitChange returns a channel closed at the next state change.
func (s *Supervisor) waitChange() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}
