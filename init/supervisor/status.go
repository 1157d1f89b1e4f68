package supervisor

import "time"

// State is where a service is in its life cycle.
type State string

// Service states.
const (
	StateStopped   State = "stopped"    // not running: disabled, or stopped by Stop
	StateStarting  State = "starting"   // waiting for its deps, or started and not yet ready
	StateReady     State = "ready"      // sent READY=1 and is running
	StateBackoff   State = "backoff"    // exited; waiting before the next start
	StateCrashLoop State = "crash-loop" // like backoff, after too many failures in a row
	StateStopping  State = "stopping"   // SIGTERM sent (or the service sent STOPPING=1)
)

// ServiceStatus is one service's state as reported by GET /v1/status.
type ServiceStatus struct {
	Name    string   `json:"name"`
	Enabled bool     `json:"enabled"`
	Deps    []string `json:"deps,omitempty"`
	State   State    `json:"state"`
	// Since is when the service entered State.
	Since time.Time `json:"since"`
	// PID of the running process, 0 when none.
	PID int `json:"pid,omitempty"`
	// Restarts counts starts after the first one.
	Restarts int `json:"restarts"`
	// StatusText is the service's last STATUS= message.
	StatusText string `json:"status_text,omitempty"`
	// WaitingFor lists deps that are not ready yet while State is starting.
	WaitingFor []string `json:"waiting_for,omitempty"`
	// LastExit says why the previous run ended, e.g. "exited with code 1",
	// "killed by SIGKILL", "not ready within 30s".
	LastExit     string     `json:"last_exit,omitempty"`
	LastExitTime *time.Time `json:"last_exit_time,omitempty"`
	// CrashLoop stays true from the crash-loop threshold until a stable run or
	// an operator's restart, also while the next attempt is starting.
	CrashLoop bool `json:"crash_loop"`
	// CrashLoopSince is when the current crash loop began.
	CrashLoopSince *time.Time `json:"crash_loop_since,omitempty"`
	// NextStart is when a service in backoff or crash-loop starts again.
	NextStart *time.Time `json:"next_start,omitempty"`
}

// Status is the whole supervisor's state.
type Status struct {
	// Ready is true while every enabled service is ready.
	Ready    bool            `json:"ready"`
	Services []ServiceStatus `json:"services"`
}
