package notify

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// Error is a failed delivery.
type Error struct {
	// Target is the target's name.
	Target string
	// Permanent: trying again cannot help until the configuration or the
	// server changes.
	Permanent bool
	// RetryAfter is how long the server asked to wait (HTTP Retry-After);
	// 0 when it did not say.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	s := "notifying " + e.Target + ": " + e.Err.Error()
	switch {
	case e.Permanent:
		s += " (permanent: fix the target or the server, retrying will not help)"
	case e.RetryAfter > 0:
		s += " (retryable; the server asked to wait " + e.RetryAfter.String() + ")"
	default:
		s += " (retryable)"
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err is a delivery failure retrying cannot
// fix. Errors that are not an *Error (and nil) are not permanent.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// RetryAfter returns the wait the server asked for, if it asked.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		return e.RetryAfter, true
	}
	return 0, false
}

// Retry schedule: the first retry after FirstBackoff, doubling up to
// MaxBackoff; after MaxAttempts failed attempts (about seven hours) the
// outbox gives up. A server's Retry-After is honoured up to MaxRetryAfter.
const (
	FirstBackoff  = 10 * time.Second
	MaxBackoff    = 30 * time.Minute
	MaxAttempts   = 20
	MaxRetryAfter = 6 * time.Hour
)

// Backoff is the wait after the attempt-th failed attempt (1 = the first):
// 10 s, 20 s, 40 s, … up to 30 min. It is deterministic; an outbox that
// sends many messages to one server may add jitter.
func Backoff(attempt int) time.Duration {
	if attempt < 1 {
		return 0
	}
	d := FirstBackoff
	for i := 1; i < attempt && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// Delay is when to try again after the attempt-th failure with err: the
// backoff, or the server's Retry-After when that is longer (capped at
// MaxRetryAfter).
func Delay(attempt int, err error) time.Duration {
	d := Backoff(attempt)
	if ra, ok := RetryAfter(err); ok {
		d = max(d, min(ra, MaxRetryAfter))
	}
	return d
}

// httpStatusError classifies an HTTP answer that is not 2xx.
func httpStatusError(resp *http.Response, snippet string, now time.Time) *Error {
	code := resp.StatusCode
	e := &Error{Err: errors.New(resp.Status + responseText(snippet))}
	switch {
	case code >= 300 && code < 400:
		e.Permanent = true
		if loc := resp.Header.Get("Location"); loc != "" {
			e.Err = errors.New(resp.Status + ": redirects to " + strconv.Quote(loc) + "; configure the final URL")
		}
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests:
	case code >= 400 && code < 500:
		e.Permanent = true
	case code == http.StatusNotImplemented, code == http.StatusHTTPVersionNotSupported:
		e.Permanent = true
	}
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return e
}

// parseRetryAfter reads Retry-After as delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(MaxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now).Round(time.Second), MaxRetryAfter)
	}
	return 0
}

func responseText(snippet string) string {
	snippet = clean(snippet)
	if snippet == "" {
		return ""
	}
	return ": " + truncate(snippet, 200)
}

// classify wraps an error from a network conversation: refusals of the
// certificate, and SMTP 5xx answers, are permanent; the rest (timeouts,
// resets, SMTP 4xx) retryable.
func classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var tp *textproto.Error
	if errors.As(err, &tp) {
		return &Error{Err: err, Permanent: tp.Code >= 500}
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify) {
		return &Error{Err: errors.New(err.Error() + "; trust the server's CA with ca_file, or fix the server's certificate"), Permanent: true}
	}
	if errors.As(err, &record) {
		return &Error{Err: errors.New(err.Error() + "; the server does not speak TLS on this port (check the port and the tls setting)"), Permanent: true}
	}
	return &Error{Err: err}
}
