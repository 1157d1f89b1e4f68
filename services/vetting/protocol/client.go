package protocol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Errors the client returns for answers retrying cannot fix.
var (
	// ErrRefused wraps 401 and 403: the token is wrong, expired or of
	// another run.
	ErrRefused = errors.New("the orchestrator refused the token")
	// ErrGone wraps 410: the run was stopped or has already reported.
	ErrGone = errors.New("the run is over")
)

// StatusError is a non-2xx answer.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Message) }

// Client is the agent's side of the protocol.
type Client struct {
	// BaseURL is the appliance ("http://10.0.0.1:8080"); the protocol paths
	// are appended.
	BaseURL string
	Token   string
	// RunID is set by Hello and used for every later call.
	RunID string
	// HTTP is the client for messages (default: 30 s timeout).
	HTTP *http.Client
	// MaxBackoff caps the wait between retries (default 10 s).
	MaxBackoff time.Duration
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

func (c *Client) url(path string) string { return strings.TrimRight(c.BaseURL, "/") + path }

func (c *Client) runURL(kind string) string {
	return c.url(pathRuns + url.PathEscape(c.RunID) + "/" + kind)
}

// permanent tells answers that retrying will not change.
func permanent(err error) bool {
	return errors.Is(err, ErrRefused) || errors.Is(err, ErrGone) || errors.Is(err, errBadRequest)
}

var errBadRequest = errors.New("the orchestrator rejected the request")

// post sends v as JSON, retrying network errors, 5xx and 429 with
// exponential backoff until ctx ends; out, when set, receives the answer.
func (c *Client) post(ctx context.Context, u string, v, out any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the message: %w", err)
	}
	maxBackoff := c.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 10 * time.Second
	}
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := c.postOnce(ctx, u, body, out)
		if err == nil || permanent(err) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("sending to %s (gave up after %d attempts): %w (last error: %v)", u, attempt, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (c *Client) postOnce(ctx context.Context, u string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.http().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return err
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxMessage)).Decode(out); err != nil {
		return fmt.Errorf("decoding the answer of %s: %w", u, err)
	}
	return nil
}

func checkStatus(resp *http.Response) error {
	if resp.StatusCode/100 == 2 {
		return nil
	}
	var e apiError
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
	se := &StatusError{Code: resp.StatusCode, Message: e.Error}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %w", ErrRefused, se)
	case resp.StatusCode == http.StatusGone:
		return fmt.Errorf("%w: %w", ErrGone, se)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return se
	}
	return fmt.Errorf("%w: %w", errBadRequest, se)
}

// Hello announces the agent and returns its assignment; it sets c.RunID.
func (c *Client) Hello(ctx context.Context, h Hello) (Assignment, error) {
	h.Protocol = Version
	var a Assignment
	if err := c.post(ctx, c.url(PathHello), h, &a); err != nil {
		return Assignment{}, fmt.Errorf("saying hello: %w", err)
	}
	if a.RunID == "" {
		return Assignment{}, errors.New("saying hello: the assignment names no run")
	}
	c.RunID = a.RunID
	return a, nil
}

// Send records one message of the run.
func (c *Client) Send(ctx context.Context, m Message) error {
	if c.RunID == "" {
		return errors.New("sending before hello: no run")
	}
	if err := c.post(ctx, c.runURL(m.path()), m, nil); err != nil {
		return fmt.Errorf("sending %s: %w", m.path(), err)
	}
	return nil
}

// ifaceClient returns an HTTP client whose connections leave through iface
// (SO_BINDTODEVICE; "" uses the routing table).
func ifaceClient(iface string) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if iface != "" {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface)
			})
			if err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("binding to %s: %w", iface, serr)
			}
			return nil
		}
	}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableCompression: true,
		MaxIdleConns: 1, IdleConnTimeout: time.Second}}
}

// Download reads from the appliance through iface for about d and returns
// the bytes received and the time from the first byte to the last.
func (c *Client) Download(ctx context.Context, iface string, d time.Duration) (int64, time.Duration, error) {
	hc := ifaceClient(iface)
	defer hc.CloseIdleConnections()
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(dctx, http.MethodGet, c.runURL(throughput)+"?bytes="+strconv.FormatInt(16<<30, 10), nil)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return 0, 0, err
	}
	buf := make([]byte, 256<<10)
	start := time.Now()
	end := start.Add(d)
	var n int64
	for time.Now().Before(end) {
		k, err := resp.Body.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, time.Since(start), err
		}
	}
	return n, time.Since(start), nil
}

// timedReader yields bytes until its deadline, then EOF.
type timedReader struct {
	end time.Time
	n   int64
}

func (r *timedReader) Read(p []byte) (int, error) {
	if !time.Now().Before(r.end) {
		return 0, io.EOF
	}
	k := copy(p, fillPattern)
	r.n += int64(k)
	return k, nil
}

// Upload sends to the appliance through iface for about d and returns the
// bytes the appliance counted and the elapsed time.
func (c *Client) Upload(ctx context.Context, iface string, d time.Duration) (int64, time.Duration, error) {
	hc := ifaceClient(iface)
	defer hc.CloseIdleConnections()
	start := time.Now()
	body := &timedReader{end: start.Add(d)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.runURL(throughput), body)
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if err := checkStatus(resp); err != nil {
		return 0, 0, err
	}
	elapsed := time.Since(start)
	var t Throughput
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&t); err != nil {
		return 0, 0, fmt.Errorf("decoding the upload count: %w", err)
	}
	return t.Bytes, elapsed, nil
}
