package notify

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestValidate(t *testing.T) {
	good := []Target{
		{Name: "hook", Kind: KindWebhook, On: []string{"fail", "HELD"}, Webhook: &Webhook{URL: "https://hooks.example.com/kiln", Secret: "s", Headers: map[string]string{"Authorization": "Bearer x"}}},
		{Name: "phones", Kind: KindNtfy, Ntfy: &Ntfy{Server: "https://ntfy.sh", Topic: "kiln_vet-42", Token: "tk_abc", Priority: "high", Tags: []string{"rack4"}}},
		{Name: "mail", Kind: KindSMTP, SMTP: &SMTP{Host: "mail.example.com", Username: "kiln", Password: "pw", From: "kiln <kiln@example.com>", To: []string{"hw@example.com"}}},
		{Name: "relay", Kind: KindSMTP, Timeout: 5 * time.Second, SMTP: &SMTP{Host: "relay", Port: 25, Insecure: true, From: "kiln@example.com", To: []string{"a@example.com", "B <b@example.com>"}}},
	}
	if err := Validate("vetting.notify", good); err != nil {
		t.Fatalf("Validate(good) = %v, want nil", err)
	}
	for _, tc := range []struct {
		name   string
		target Target
		want   string // field: problem
	}{
		{"no recipients", Target{Name: "m", Kind: KindSMTP, SMTP: &SMTP{Host: "h", From: "a@b.c"}}, "vetting.notify[1].smtp.to: empty; list at least one recipient"},
		{"bad recipient", Target{Name: "m", Kind: KindSMTP, SMTP: &SMTP{Host: "h", From: "a@b.c", To: []string{"not an address"}}}, "vetting.notify[1].smtp.to[0]: \"not an address\" is not a mail address"},
		{"bad from", Target{Name: "m", Kind: KindSMTP, SMTP: &SMTP{Host: "h", From: "kiln", To: []string{"a@b.c"}}}, "vetting.notify[1].smtp.from:"},
		{"host with port", Target{Name: "m", Kind: KindSMTP, SMTP: &SMTP{Host: "h:587", From: "a@b.c", To: []string{"a@b.c"}}}, "vetting.notify[1].smtp.host: \"h:587\" is not a host name; set the mail server's name, e.g. mail.example.com (the port goes in smtp.port)"},
		{"user without password", Target{Name: "m", Kind: KindSMTP, SMTP: &SMTP{Host: "h", Username: "u", From: "a@b.c", To: []string{"a@b.c"}}}, "vetting.notify[1].smtp.username: username and password must be set together"},
		{"insecure implicit", Target{Name: "m", Kind: KindSMTP, SMTP: &SMTP{Host: "h", TLS: "implicit", Insecure: true, From: "a@b.c", To: []string{"a@b.c"}}}, "vetting.notify[1].smtp.insecure: set with tls: implicit"},
		{"bad tls", Target{Name: "m", Kind: KindSMTP, SMTP: &SMTP{Host: "h", TLS: "ssl", From: "a@b.c", To: []string{"a@b.c"}}}, "vetting.notify[1].smtp.tls: unknown TLS mode \"ssl\""},
		{"port", Target{Name: "m", Kind: KindSMTP, SMTP: &SMTP{Host: "h", Port: 70000, From: "a@b.c", To: []string{"a@b.c"}}}, "vetting.notify[1].smtp.port: port 70000 is out of range"},
		{"no kind", Target{Name: "x", Webhook: &Webhook{URL: "https://h/"}}, "vetting.notify[1].kind: empty; set kind to webhook, ntfy or smtp"},
		{"unknown kind", Target{Name: "x", Kind: "slack"}, "vetting.notify[1].kind: unknown kind \"slack\""},
		{"missing block", Target{Name: "x", Kind: KindNtfy}, "vetting.notify[1].ntfy: missing; add a ntfy: block"},
		{"second block", Target{Name: "x", Kind: KindWebhook, Webhook: &Webhook{URL: "https://h/"}, SMTP: &SMTP{}}, "vetting.notify[1].smtp: set on a target of kind webhook"},
		{"bad name", Target{Name: "ops team", Kind: KindWebhook, Webhook: &Webhook{URL: "https://h/"}}, "vetting.notify[1].name: \"ops team\" is not a usable name"},
		{"duplicate name", Target{Name: "hook", Kind: KindWebhook, Webhook: &Webhook{URL: "https://h/"}}, "vetting.notify[1].name: \"hook\" is also vetting.notify[0].name"},
		{"bad outcome", Target{Name: "x", Kind: KindWebhook, On: []string{"failed"}, Webhook: &Webhook{URL: "https://h/"}}, "vetting.notify[1].on[0]: unknown outcome \"failed\""},
		{"negative timeout", Target{Name: "x", Kind: KindWebhook, Timeout: -time.Second, Webhook: &Webhook{URL: "https://h/"}}, "vetting.notify[1].timeout: -1s is negative"},
		{"webhook no url", Target{Name: "x", Kind: KindWebhook, Webhook: &Webhook{}}, "vetting.notify[1].webhook.url: empty"},
		{"webhook ftp", Target{Name: "x", Kind: KindWebhook, Webhook: &Webhook{URL: "ftp://h/x"}}, "vetting.notify[1].webhook.url: scheme \"ftp\" is not http or https"},
		{"webhook userinfo", Target{Name: "x", Kind: KindWebhook, Webhook: &Webhook{URL: "https://u:p@h/x"}}, "vetting.notify[1].webhook.url: the URL carries credentials"},
		{"reserved header", Target{Name: "x", Kind: KindWebhook, Webhook: &Webhook{URL: "https://h/", Headers: map[string]string{"content-type": "text/plain"}}}, "vetting.notify[1].webhook.headers.content-type: kiln sets this header itself"},
		{"kiln header", Target{Name: "x", Kind: KindWebhook, Webhook: &Webhook{URL: "https://h/", Headers: map[string]string{"X-Kiln-Signature-256": "x"}}}, "kiln sets this header itself"},
		{"header newline", Target{Name: "x", Kind: KindWebhook, Webhook: &Webhook{URL: "https://h/", Headers: map[string]string{"X-A": "a\r\nX-B: b"}}}, "vetting.notify[1].webhook.headers.X-A: the value has a line break"},
		{"header name", Target{Name: "x", Kind: KindWebhook, Webhook: &Webhook{URL: "https://h/", Headers: map[string]string{"X A": "a"}}}, "is not a valid header name"},
		{"ntfy topic", Target{Name: "x", Kind: KindNtfy, Ntfy: &Ntfy{Server: "https://ntfy.sh", Topic: "a/b"}}, "vetting.notify[1].ntfy.topic: \"a/b\" is not an ntfy topic"},
		{"ntfy server path", Target{Name: "x", Kind: KindNtfy, Ntfy: &Ntfy{Server: "ntfy.sh", Topic: "t"}}, "vetting.notify[1].ntfy.server: scheme \"\" is not http or https"},
		{"ntfy token and user", Target{Name: "x", Kind: KindNtfy, Ntfy: &Ntfy{Server: "https://ntfy.sh", Topic: "t", Token: "tk", Username: "u", Password: "p"}}, "vetting.notify[1].ntfy.token: set together with username/password"},
		{"ntfy priority", Target{Name: "x", Kind: KindNtfy, Ntfy: &Ntfy{Server: "https://ntfy.sh", Topic: "t", Priority: "9"}}, "vetting.notify[1].ntfy.priority: unknown priority \"9\""},
		{"ntfy tag comma", Target{Name: "x", Kind: KindNtfy, Ntfy: &Ntfy{Server: "https://ntfy.sh", Topic: "t", Tags: []string{"a,b"}}}, "vetting.notify[1].ntfy.tags[0]:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate("vetting.notify", []Target{good[0], tc.target})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate(%+v) = %v, want an error containing %q", tc.target, err, tc.want)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 || es[0].Fix == "" {
				t.Errorf("Validate error %v is not Errors with a fix", err)
			}
		})
	}
}

// TestConfigYAML: the YAML tags read the documented form.
func TestConfigYAML(t *testing.T) {
	const doc = `
- name: ops-hook
  kind: webhook
  on: [fail, held]
  timeout: 5s
  webhook:
    url: https://hooks.example.com/kiln
    secret: s3cret
    headers: {X-Team: infra}
- name: phones
  kind: ntfy
  ntfy: {server: https://ntfy.example.com, topic: kiln-vetting, token: tk_x, priority: high, tags: [rack4]}
- name: mail
  kind: smtp
  ca_file: /data/ca.pem
  smtp:
    host: mail.example.com
    port: 465
    tls: implicit
    username: kiln
    password: pw
    from: kiln <kiln@example.com>
    to: [hw-team@example.com]
`
	var ts []Target
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&ts); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if err := Validate("vetting.notify", ts); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if ts[0].Timeout != 5*time.Second || ts[0].Webhook.Headers["X-Team"] != "infra" || ts[1].Ntfy.Tags[0] != "rack4" ||
		ts[2].SMTP.TLS != "implicit" || ts[2].CAFile != "/data/ca.pem" || ts[2].SMTP.To[0] != "hw-team@example.com" {
		t.Errorf("decoded %+v", ts)
	}
}

func TestOutcomeAndWants(t *testing.T) {
	for _, tc := range []struct {
		m       Message
		outcome string
		event   string
	}{
		{Message{Verdict: "FAIL", State: "failed"}, OutcomeFail, "run.ended"},
		{Message{Verdict: "FAIL", State: "holding"}, OutcomeHeld, "run.held"},
		{Message{Verdict: "PASS", State: "passed"}, OutcomePass, "run.ended"},
		{Message{State: "stopped"}, OutcomeStopped, "run.ended"},
		{Message{State: "timed_out"}, OutcomeTimedOut, "run.ended"},
		{Message{Verdict: "TIMEOUT", State: "failed"}, OutcomeTimeout, "run.ended"},
	} {
		if o, e := tc.m.Outcome(), tc.m.Event(); o != tc.outcome || e != tc.event {
			t.Errorf("%+v: Outcome, Event = %s, %s; want %s, %s", tc.m, o, e, tc.outcome, tc.event)
		}
	}
	onFail := Target{On: []string{"fail", "Held"}}
	if !onFail.Wants(Message{Verdict: "FAIL"}) || !onFail.Wants(Message{Verdict: "FAIL", State: "holding"}) || onFail.Wants(Message{Verdict: "PASS"}) {
		t.Error("Wants with on: [fail, Held] chose wrongly")
	}
	if !(Target{}).Wants(Message{Verdict: "PASS"}) {
		t.Error("a target without on: should want everything")
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second,
		320 * time.Second, 640 * time.Second, 1280 * time.Second, 30 * time.Minute, 30 * time.Minute}
	for attempt, w := range want {
		if got := Backoff(attempt); got != w {
			t.Errorf("Backoff(%d) = %v, want %v", attempt, got, w)
		}
	}
	if got := Backoff(1000); got != MaxBackoff {
		t.Errorf("Backoff(1000) = %v, want %v", got, MaxBackoff)
	}
	var total time.Duration
	for a := 1; a < MaxAttempts; a++ {
		total += Backoff(a)
	}
	if total < 6*time.Hour || total > 8*time.Hour {
		t.Errorf("the whole schedule waits %v, want about seven hours", total)
	}
	ra := &Error{RetryAfter: 5 * time.Minute}
	if got := Delay(1, ra); got != 5*time.Minute {
		t.Errorf("Delay(1, Retry-After 5m) = %v, want 5m", got)
	}
	if got := Delay(12, ra); got != 30*time.Minute {
		t.Errorf("Delay(12, Retry-After 5m) = %v, want the longer backoff", got)
	}
	if got := Delay(1, &Error{RetryAfter: 48 * time.Hour}); got != MaxRetryAfter {
		t.Errorf("Delay with a two-day Retry-After = %v, want the cap %v", got, MaxRetryAfter)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := testTime
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"120", 2 * time.Minute},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{"", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"99999999999999", MaxRetryAfter},
	} {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestTitleAndBody(t *testing.T) {
	for _, tc := range []struct {
		m    Message
		want string
	}{
		{failMessage(), "[kiln] r650-04: FAIL"},
		{Message{Host: "r650-04", Verdict: "FAIL", State: "holding"}, "[kiln] r650-04: FAIL, held for SSH"},
		{Message{Host: "r650-04", State: "stopped"}, "[kiln] r650-04: run stopped"},
		{Message{Host: "r650-04", State: "timed_out"}, "[kiln] r650-04: run timed out"},
		{Message{Host: "r650-04", State: "error"}, "[kiln] r650-04: run ended (error)"},
		{Message{RunID: "7", Verdict: "PASS"}, "[kiln] run 7: PASS"},
		{Message{Host: "evil\r\nBcc: x@y", Verdict: "PASS"}, "[kiln] evil  Bcc: x@y: PASS"},
	} {
		if got := title(tc.m); got != tc.want {
			t.Errorf("title(%+v) = %q, want %q", tc.m, got, tc.want)
		}
	}
	b := body(failMessage())
	for _, want := range []string{"FAIL: memory.installed_bytes", "- [spec] FAIL memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB",
		"Report: https://kiln.example.com/vetting/runs/42/report.html", "Run 42 of r650-04, state failed, 2026-03-14T09:01:25Z."} {
		if !strings.Contains(b, want) {
			t.Errorf("body lacks %q:\n%s", want, b)
		}
	}
}

func TestSendInvalidTargetIsPermanent(t *testing.T) {
	err := Send(t.Context(), Target{Name: "x", Kind: KindSMTP, SMTP: &SMTP{Host: "h"}}, failMessage())
	if !IsPermanent(err) || !strings.Contains(err.Error(), "smtp.to: empty") {
		t.Errorf("Send(invalid) = %v, want a permanent error naming smtp.to", err)
	}
	if IsPermanent(errors.New("other")) || IsPermanent(nil) {
		t.Error("IsPermanent of a foreign error or nil is true")
	}
}
