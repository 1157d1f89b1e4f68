package mgmt

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/vetting/notify"
	"kiln.dev/kiln/services/vetting/orchestrator"
)

// notifier delivers one outbox entry with the notify package: the config's
// targets (vetting.notify) are turned into notify's, which filter nothing
// (the orchestrator already chose the targets by outcome).
func notifier(ctx context.Context, c config.Notify, n orchestrator.Notification) error {
	t, err := notifyTarget(c)
	if err != nil {
		return &notify.Error{Target: c.Name, Permanent: true, Err: err}
	}
	return notify.Send(ctx, t, notify.Message{RunID: strconv.FormatInt(n.RunID, 10), Host: n.Host, Verdict: n.Verdict,
		State: n.State, Summary: n.Summary, Findings: n.Findings, ReportURL: n.ReportURL, Time: n.Time})
}

// notifyTarget converts a configured target.
func notifyTarget(c config.Notify) (notify.Target, error) {
	t := notify.Target{Name: c.Name, Timeout: 30 * time.Second}
	switch {
	case c.Webhook != nil:
		t.Kind = "webhook"
		t.Webhook = &notify.Webhook{URL: c.Webhook.URL, Secret: c.Webhook.Secret, Headers: c.Webhook.Headers}
	case c.Ntfy != nil:
		u, err := url.Parse(c.Ntfy.URL)
		if err != nil {
			return t, fmt.Errorf("ntfy.url: %w", err)
		}
		topic := strings.Trim(u.Path, "/")
		if topic == "" || strings.Contains(topic, "/") {
			return t, fmt.Errorf("ntfy.url %q: want the topic URL, https://server/topic", c.Ntfy.URL)
		}
		u.Path = ""
		t.Kind = "ntfy"
		t.Ntfy = &notify.Ntfy{Server: u.String(), Topic: topic, Token: c.Ntfy.Token, Priority: c.Ntfy.Priority}
	case c.SMTP != nil:
		host, port, err := net.SplitHostPort(c.SMTP.Server)
		if err != nil {
			return t, fmt.Errorf("smtp.server: %w", err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return t, fmt.Errorf("smtp.server: port %q: %w", port, err)
		}
		tlsMode := "starttls"
		if p == 465 {
			tlsMode = "implicit" // submissions (RFC 8314)
		}
		t.Kind = "smtp"
		t.SMTP = &notify.SMTP{Host: host, Port: p, TLS: tlsMode, Insecure: c.SMTP.Insecure, Username: c.SMTP.Username,
			Password: c.SMTP.Password, From: c.SMTP.From, To: c.SMTP.To}
	default:
		return t, fmt.Errorf("target %s has no kind", c.Name)
	}
	return t, t.Validate()
}
