// Package supervisorapi is the wire side of the supervisor's control socket
// (<run>/supervisor.sock): the status and log-line types it answers with and
// a client for it. It is a leaf so that services (the API, mgmt's metrics)
// read the supervisor without importing PID 1's supervisor itself.
package supervisorapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"kiln.dev/kiln/internal/unixhttp"
)

// SocketPath is the control socket's path below a run directory.
func SocketPath(runDir string) string { return filepath.Join(runDir, "supervisor.sock") }

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

// Streams a Line can come from.
const (
	StreamStdout     = "stdout"
	StreamStderr     = "stderr"
	StreamSupervisor = "supervisor" // the supervisor's own events about the service
)

// Line is one captured log line.
type Line struct {
	// Seq numbers a service's lines from 1 without gaps; a reader resumes with
	// since = the last Seq it saw.
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	Text   string    `json:"text"`
}

// String formats the line as it is persisted: time, [stream], text.
func (l Line) String() string {
	return fmt.Sprintf("%s [%s] %s", l.Time.UTC().Format("2006-01-02T15:04:05.000Z"), l.Stream, l.Text)
}

// Client talks to a supervisor's control socket.
type Client struct {
	hc *http.Client
}

// NewClient returns a client for the control socket at path (see SocketPath).
func NewClient(path string) *Client {
	return &Client{hc: unixhttp.Client(path)}
}

func (c *Client) do(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://supervisor"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the supervisor: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		var e struct{ Error string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = resp.Status
		}
		return nil, fmt.Errorf("supervisor: %s", e.Error)
	}
	return resp, nil
}

// Status fetches GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	resp, err := c.do(ctx, http.MethodGet, "/v1/status")
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("decoding supervisor status: %w", err)
	}
	return st, nil
}

// Logs fetches a service's ring lines with Seq > since.
func (c *Client) Logs(ctx context.Context, name string, since uint64) ([]Line, error) {
	resp, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/logs/%s?since=%d", name, since))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var lines []Line
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("decoding log line: %w", err)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading logs: %w", err)
	}
	return lines, nil
}

// FollowLogs streams a service's ring lines with Seq > since (GET
// /v1/logs/{name}?since=N&follow=1), calling fn for each, until ctx ends, fn
// returns an error (returned as is), or the supervisor ends the stream (nil);
// a cancelled ctx returns ctx.Err().
func (c *Client) FollowLogs(ctx context.Context, name string, since uint64, fn func(Line) error) error {
	resp, err := c.do(ctx, http.MethodGet, fmt.Sprintf("/v1/logs/%s?since=%d&follow=1", name, since))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("decoding log line: %w", err)
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("reading logs: %w", err)
	}
	return ctx.Err()
}

// Restart asks the supervisor to restart a service.
func (c *Client) Restart(ctx context.Context, name string) error {
	resp, err := c.do(ctx, http.MethodPost, "/v1/services/"+name+"/restart")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}
