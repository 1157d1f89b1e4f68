package supervisor

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// service is one supervised service: its spec, its goroutine's channels and
// the status that goroutine publishes.
type service struct {
	spec       Spec
	sup        *Supervisor
	sink       *sink
	conn       *net.UnixConn // notify socket; nil when disabled
	notes      chan notice
	stopReq    chan struct{} // closed by Stop
	restartReq chan struct{} // one pending operator restart
	done       chan struct{} // closed when loop returned and no process is left
	stopErr    error         // set by loop before done is closed

	// mu guards st.
	mu sync.Mutex
	st ServiceStatus
}

func (v *service) status() ServiceStatus {
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.st
	st.WaitingFor = append([]string(nil), st.WaitingFor...)
	return st
}

func (v *service) state() State {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.st.State
}

// update changes the published status and tells the supervisor.
func (v *service) update(f func(st *ServiceStatus)) {
	v.mu.Lock()
	old := v.st.State
	f(&v.st)
	if v.st.State != old {
		v.st.Since = v.sup.opts.Clock.Now()
	}
	v.mu.Unlock()
	v.sup.changed()
}

// outcome is how one run of the process ended.
type outcome int

const (
	failedRun    outcome = iota // crashed, exited, or missed a deadline
	stoppedRun                  // stopped by Stop
	restartedRun                // stopped by an operator's Restart
)

// loop runs the service until Stop: wait for deps, run, back off, repeat.
func (v *service) loop() {
	defer close(v.done)
	if !v.spec.Enabled {
		return
	}
	tracker := restartTracker{policy: v.sup.opts.Backoff}
	clock := v.sup.opts.Clock
	for runs := 0; ; runs++ {
		if !v.waitDeps() {
			v.update(func(st *ServiceStatus) { st.State, st.WaitingFor = StateStopped, nil })
			return
		}
		if runs > 0 {
			v.update(func(st *ServiceStatus) { st.Restarts++ })
		}
		switch v.runOnce(&tracker) {
		case stoppedRun:
			v.update(func(st *ServiceStatus) { st.State, st.PID = StateStopped, 0 })
			return
		case restartedRun:
			tracker.reset()
			v.update(func(st *ServiceStatus) { st.CrashLoop, st.CrashLoopSince = false, nil })
			continue
		}
		delay := tracker.failed(clock.Now())
		next := clock.Now().Add(delay)
		state := StateBackoff
		if tracker.crashLoop {
			state = StateCrashLoop
			v.sink.event("crash loop: %d failures within %s; retrying every %s", len(tracker.failures), v.sup.opts.Backoff.CrashLoopWindow, delay)
			v.sup.log.Warn("crash loop", "service", v.spec.Name, "failures", len(tracker.failures), "retry", delay)
		} else {
			v.sink.event("backoff %s", delay)
		}
		v.update(func(st *ServiceStatus) {
			st.State, st.PID, st.NextStart, st.CrashLoop = state, 0, &next, tracker.crashLoop
			if tracker.crashLoop && st.CrashLoopSince == nil {
				now := clock.Now()
				st.CrashLoopSince = &now
			}
		})
		select {
		case <-clock.After(delay):
		case <-v.restartReq:
			tracker.reset()
			v.update(func(st *ServiceStatus) { st.CrashLoop, st.CrashLoopSince = false, nil })
		case <-v.stopReq:
			v.update(func(st *ServiceStatus) { st.State, st.NextStart = StateStopped, nil })
			return
		}
		v.update(func(st *ServiceStatus) { st.NextStart = nil })
	}
}

// waitDeps blocks until every dependency is ready; false means Stop was called.
func (v *service) waitDeps() bool {
	for {
		wake := v.sup.waitChange()
		var waiting []string
		for _, d := range v.spec.Deps {
			if v.sup.byName[d].state() != StateReady {
				waiting = append(waiting, d)
			}
		}
		// Publish only real changes: every update wakes the other waiters.
		if cur := v.status(); cur.State != StateStarting || !slices.Equal(cur.WaitingFor, waiting) {
			v.update(func(st *ServiceStatus) { st.State, st.WaitingFor = StateStarting, waiting })
		}
		if len(waiting) == 0 {
			return true
		}
		select {
		case <-wake:
		case <-v.stopReq:
			return false
		}
	}
}

// runOnce starts the process and supervises it until it ends.
func (v *service) runOnce(tracker *restartTracker) outcome {
	opts := v.sup.opts
	clock := opts.Clock
	for drained := false; !drained; { // drop datagrams left from an earlier run
		select {
		case <-v.notes:
		default:
			drained = true
		}
	}
	select {
	case <-v.stopReq:
		return stoppedRun
	case <-v.restartReq: // a restart asked for before this start is this start
	default:
	}
	p, err := v.start()
	if err != nil {
		v.sink.event("start failed: %v", err)
		v.sup.log.Error("start failed", "service", v.spec.Name, "err", err)
		v.setExit(fmt.Sprintf("start failed: %v", err))
		return failedRun
	}
	v.sink.event("started pid %d", p.pid)
	v.sup.log.Info("started", "service", v.spec.Name, "pid", p.pid)
	v.update(func(st *ServiceStatus) { st.PID, st.StatusText = p.pid, "" })

	startDeadline := clock.After(opts.StartTimeout)
	var stable, watchdog <-chan time.Time
	for {
		select {
		case n := <-v.notes:
			if n.pid != 0 && !fromGroup(n.pid, p.pid) {
				continue
			}
			if n.hasStatus {
				v.update(func(st *ServiceStatus) { st.StatusText = n.status })
			}
			if n.ready && startDeadline != nil {
				startDeadline = nil
				stable = clock.After(opts.Backoff.StableAfter)
				if v.spec.Watchdog > 0 {
					watchdog = clock.After(v.spec.Watchdog)
				}
				v.sink.event("ready")
				v.sup.log.Info("ready", "service", v.spec.Name, "pid", p.pid)
				v.update(func(st *ServiceStatus) { st.State = StateReady })
			}
			if n.watchdog && watchdog != nil {
				watchdog = clock.After(v.spec.Watchdog)
			}
			if n.stopping {
				v.sink.event("service is stopping")
				v.update(func(st *ServiceStatus) { st.State = StateStopping })
			}
		case <-stable:
			stable = nil
			tracker.reset()
			v.update(func(st *ServiceStatus) { st.CrashLoop, st.CrashLoopSince = false, nil })
		case <-startDeadline:
			reason := fmt.Sprintf("not ready within %s", opts.StartTimeout)
			v.sink.event("%s; stopping it", reason)
			v.terminate(p)
			v.setExit(reason)
			return failedRun
		case <-watchdog:
			reason := fmt.Sprintf("no WATCHDOG=1 within %s", v.spec.Watchdog)
			v.sink.event("%s; stopping it", reason)
			v.terminate(p)
			v.setExit(reason)
			return failedRun
		case err := <-p.exited:
			v.finish(p, err)
			return failedRun
		case <-v.restartReq:
			v.sink.event("restart requested")
			v.terminate(p)
			return restartedRun
		case <-v.stopReq:
			v.terminate(p)
			return stoppedRun
		}
	}
}

// setExit records why the last run ended.
func (v *service) setExit(reason string) {
	now := v.sup.opts.Clock.Now()
	v.update(func(st *ServiceStatus) { st.LastExit, st.LastExitTime, st.PID = reason, &now, 0 })
}

// proc is one running child.
type proc struct {
	pid    int
	exited chan error // receives cmd.Wait's result
	pumps  sync.WaitGroup
	pipes  []*os.File // read ends, closed by the pumps or after exit
}

// start forks the child in its own process group with its output captured.
func (v *service) start() (*proc, error) {
	opts := v.sup.opts
	cmd := exec.Command(opts.Exe, v.spec.Args...)
	cmd.Args[0] = opts.Argv0
	cmd.Dir = "/"
	cmd.Env = append(append(append([]string(nil), opts.Env...), v.spec.Env...), "NOTIFY_SOCKET="+v.sup.notifyPath(v.spec.Name))
	if v.spec.Watchdog > 0 {
		cmd.Env = append(cmd.Env, "WATCHDOG_USEC="+strconv.FormatInt(v.spec.Watchdog.Microseconds(), 10))
	}
	// Pdeathsig: when a host-mode supervisor is killed outright, its services go
	// too. The signal follows the forking OS thread, hence spawn's locked thread.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("creating stderr pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = outW, errW

	v.sup.spawn(func() { err = opts.Reaper.Start(cmd) })
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}
	p := &proc{pid: cmd.Process.Pid, exited: make(chan error, 1), pipes: []*os.File{outR, errR}}
	p.pumps.Go(func() { v.sink.pump(outR, StreamStdout) })
	p.pumps.Go(func() { v.sink.pump(errR, StreamStderr) })
	go func() { p.exited <- opts.Reaper.Wait(cmd) }()
	return p, nil
}

// finish cleans up after the main process exited with err: it kills what is
// left of the group, collects the output and records the exit.
func (v *service) finish(p *proc, err error) {
	syscall.Kill(-p.pid, syscall.SIGKILL) // leftovers of the group; ESRCH when none
	drained := make(chan struct{})
	go func() { p.pumps.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(time.Second): // a child that left the group holds the pipe
		for _, f := range p.pipes {
			f.Close()
		}
	}
	reason := exitReason(err)
	v.sink.event("%s", reason)
	v.sup.log.Info("exited", "service", v.spec.Name, "pid", p.pid, "reason", reason)
	v.setExit(reason)
}

// terminate stops the process group: SIGTERM, SIGKILL after StopTimeout (at
// once when Stop's context ended), then waits for the exit.
func (v *service) terminate(p *proc) {
	v.update(func(st *ServiceStatus) { st.State = StateStopping })
	clock := v.sup.opts.Clock
	v.sink.event("stopping pid %d (SIGTERM)", p.pid)
	syscall.Kill(-p.pid, syscall.SIGTERM)
	select {
	case err := <-p.exited:
		v.finish(p, err)
		return
	case <-clock.After(v.sup.opts.StopTimeout):
		v.sink.event("still running %s after SIGTERM; sending SIGKILL", v.sup.opts.StopTimeout)
	case <-v.sup.hurry:
		v.sink.event("stop deadline passed; sending SIGKILL")
	}
	syscall.Kill(-p.pid, syscall.SIGKILL)
	select {
	case err := <-p.exited:
		v.finish(p, err)
	case <-time.After(5 * time.Second):
		v.stopErr = fmt.Errorf("service %s: pid %d still running 5s after SIGKILL", v.spec.Name, p.pid)
		v.sink.event("pid %d still running 5s after SIGKILL; giving up", p.pid)
		v.sup.log.Error("process survived SIGKILL", "service", v.spec.Name, "pid", p.pid)
	}
}

// exitReason describes cmd.Wait's result for operators.
func exitReason(err error) string {
	if err == nil {
		return "exited with code 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + unix.SignalName(ws.Signal())
		}
		return fmt.Sprintf("exited with code %d", ee.ExitCode())
	}
	return fmt.Sprintf("wait failed: %v", err)
}
