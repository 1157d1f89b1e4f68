// Package notify tells people that a vetting run ended or that a failed host
// is held for SSH: a webhook (JSON, optionally HMAC-signed), an ntfy topic,
// or mail over SMTP.
//
// Send makes one attempt with a timeout and says whether trying again can
// help: IsPermanent for bad configuration and refusals (HTTP 4xx other than
// 408, 425 and 429; SMTP 5xx; untrusted certificates), retryable for
// everything else (network errors, HTTP 5xx and 429, SMTP 4xx), with the
// server's Retry-After in RetryAfter. The orchestrator keeps the durable
// outbox and schedules retries with Delay.
//
// Configuration (the appliance config's vetting.notify list):
//
//	vetting:
//	  notify:
//	    - name: ops-hook
//	      kind: webhook
//	      on: [fail, error, timeout, timed_out, held]
//	      webhook:
//	        url: https://hooks.example.com/kiln
//	        secret: 3f9c…          # X-Kiln-Signature-256: sha256=<hex HMAC of the body>
//	        headers: {X-Team: infra}
//	    - name: phones
//	      kind: ntfy
//	      ntfy: {server: https://ntfy.example.com, topic: kiln-vetting, token: tk_…}
//	    - name: mail
//	      kind: smtp
//	      smtp:
//	        host: mail.example.com  # port 587, STARTTLS required
//	        username: kiln
//	        password: …
//	        from: kiln <kiln@example.com>
//	        to: [hw-team@example.com]
package notify

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Message is what a notification says about a run. It is plain data with
// JSON tags so an outbox can store it.
type Message struct {
	RunID string `json:"run_id"`
	Host  string `json:"host"`
	// Verdict is PASS, FAIL, DEGRADED, ERROR, TIMEOUT or SKIPPED; empty when
	// the run ended without one (stopped).
	Verdict string `json:"verdict,omitempty"`
	// State is the run's state: passed, failed, holding, stopped,
	// timed_out, error.
	State string `json:"state"`
	// Summary is one line (report.Summarize's headline).
	Summary string `json:"summary,omitempty"`
	// Findings are the reasons, most severe first, one line each.
	Findings  []string `json:"findings,omitempty"`
	ReportURL string   `json:"report_url,omitempty"`
	// Time is when the run ended or was held; Send uses the current time
	// when it is zero.
	Time time.Time `json:"time,omitzero"`
}

// Outcomes a Target's On list can name.
const (
	OutcomePass     = "pass"
	OutcomeFail     = "fail"
	OutcomeDegraded = "degraded"
	OutcomeError    = "error"
	OutcomeTimeout  = "timeout"
	OutcomeSkipped  = "skipped"
	OutcomeHeld     = "held"
	OutcomeStopped  = "stopped"
	OutcomeTimedOut = "timed_out"
)

var outcomes = []string{OutcomePass, OutcomeFail, OutcomeDegraded, OutcomeError, OutcomeTimeout, OutcomeSkipped,
	OutcomeHeld, OutcomeStopped, OutcomeTimedOut}

// Outcome names what the message reports: "held" while a failed host is
// held for SSH, else the verdict in lower case, else the run's end state
// (stopped, timed_out, error).
func (m Message) Outcome() string {
	switch {
	case m.State == "holding":
		return OutcomeHeld
	case m.Verdict != "":
		return strings.ToLower(m.Verdict)
	}
	return m.State
}

// Event is the webhook's event name: run.held or run.ended.
func (m Message) Event() string {
	if m.Outcome() == OutcomeHeld {
		return "run.held"
	}
	return "run.ended"
}

// Kinds of target.
const (
	KindWebhook = "webhook"
	KindNtfy    = "ntfy"
	KindSMTP    = "smtp"
)

// DefaultTimeout bounds one attempt when a target sets none.
const DefaultTimeout = 15 * time.Second

// Target is one configured destination.
type Target struct {
	// Name identifies the target in the outbox and in logs.
	Name string `yaml:"name"`
	// Kind is webhook, ntfy or smtp; the block of that name configures it.
	Kind string `yaml:"kind"`
	// On lists the outcomes to notify about (see Message.Outcome); empty:
	// all of them.
	On []string `yaml:"on"`
	// Timeout bounds one attempt (default DefaultTimeout).
	Timeout time.Duration `yaml:"timeout"`
	// CAFile is a PEM file of CA certificates trusted in addition to the
	// system's, for a server with a private CA.
	CAFile  string   `yaml:"ca_file"`
	Webhook *Webhook `yaml:"webhook,omitempty"`
	Ntfy    *Ntfy    `yaml:"ntfy,omitempty"`
	SMTP    *SMTP    `yaml:"smtp,omitempty"`
}

// Webhook POSTs the message as JSON (Payload).
type Webhook struct {
	URL string `yaml:"url"`
	// Secret, when set, signs the body: X-Kiln-Signature-256 is "sha256="
	// and the hex HMAC-SHA256 of the exact body bytes (see Sign).
	Secret string `yaml:"secret"`
	// Headers are added to every request (e.g. Authorization).
	Headers map[string]string `yaml:"headers"`
}

// Ntfy publishes to an ntfy topic (https://docs.ntfy.sh/publish/).
type Ntfy struct {
	// Server is the ntfy base URL, e.g. https://ntfy.sh.
	Server string `yaml:"server"`
	Topic  string `yaml:"topic"`
	// Token is an access token sent as a bearer token; Username and
	// Password are basic auth instead.
	Token    string `yaml:"token"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Priority overrides the one derived from the outcome: 1–5 or min,
	// low, default, high, max, urgent.
	Priority string `yaml:"priority"`
	// Tags are added to the outcome's tag (emoji short codes or words).
	Tags []string `yaml:"tags"`
}

// SMTP sends mail. TLS is required — STARTTLS on the submission port, or
// implicit TLS — unless Insecure allows a server that offers none;
// credentials are only ever sent over TLS.
type SMTP struct {
	Host string `yaml:"host"`
	// Port defaults to 587 (465 with implicit TLS).
	Port int `yaml:"port"`
	// TLS is starttls (the default) or implicit.
	TLS string `yaml:"tls"`
	// Insecure sends in clear when the server offers no STARTTLS.
	Insecure bool   `yaml:"insecure"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// From is an RFC 5322 address ("kiln <kiln@example.com>").
	From string   `yaml:"from"`
	To   []string `yaml:"to"`
}

// Wants reports whether the target is configured to hear about m.
func (t Target) Wants(m Message) bool {
	if len(t.On) == 0 {
		return true
	}
	o := m.Outcome()
	for _, on := range t.On {
		if strings.EqualFold(on, o) {
			return true
		}
	}
	return false
}

// Send delivers m to t in one attempt bounded by t's timeout. A nil error
// means the server accepted it; otherwise the error is an *Error saying
// whether retrying can help (IsPermanent, RetryAfter).
func Send(ctx context.Context, t Target, m Message) error {
	if err := t.Validate(); err != nil {
		return &Error{Target: t.Name, Permanent: true, Err: fmt.Errorf("invalid target: %w", err)}
	}
	if m.Time.IsZero() {
		m.Time = time.Now()
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	switch t.Kind {
	case KindWebhook:
		err = sendWebhook(ctx, t, m)
	case KindNtfy:
		err = sendNtfy(ctx, t, m)
	case KindSMTP:
		err = sendSMTP(ctx, t, m)
	}
	if err == nil {
		return nil
	}
	e := classify(err)
	e.Target = t.Name
	return e
}

// title is the notification's one-line title: host and outcome.
func title(m Message) string {
	host := clean(m.Host)
	if host == "" {
		host = "run " + clean(m.RunID)
	}
	var s string
	switch o := m.Outcome(); o {
	case OutcomeHeld:
		s = host + ": " + clean(m.Verdict) + ", held for SSH"
		if m.Verdict == "" {
			s = host + ": held for SSH"
		}
	case OutcomeStopped:
		s = host + ": run stopped"
	case OutcomeTimedOut:
		s = host + ": run timed out"
	default:
		if m.Verdict != "" {
			s = host + ": " + clean(m.Verdict)
		} else {
			s = host + ": run ended (" + clean(o) + ")"
		}
	}
	return "[kiln] " + truncate(s, 200)
}

// body is the notification's text: summary, findings, link, run.
func body(m Message) string {
	var b strings.Builder
	if m.Summary != "" {
		b.WriteString(m.Summary + "\n")
	}
	if len(m.Findings) > 0 {
		b.WriteString("\nFindings:\n")
		for _, f := range m.Findings {
			b.WriteString("- " + clean(f) + "\n")
		}
	}
	if m.ReportURL != "" {
		b.WriteString("\nReport: " + m.ReportURL + "\n")
	}
	fmt.Fprintf(&b, "\nRun %s of %s, state %s, %s.\n", m.RunID, m.Host, m.State, m.Time.UTC().Format(time.RFC3339))
	return b.String()
}

// clean drops control characters (a host name or verdict must never add a
// header line) and trims spaces.
func clean(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s))
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
