package mgmt

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/vetting/notify"
	"kiln.dev/kiln/services/vetting/orchestrator"
)

func TestNotifyTarget(t *testing.T) {
	nt, err := notifyTarget(config.Notify{Name: "phone", Ntfy: &config.NotifyNtfy{URL: "https://ntfy.example:8443/rack-3", Priority: "high"}})
	if err != nil || nt.Ntfy.Server != "https://ntfy.example:8443" || nt.Ntfy.Topic != "rack-3" || nt.Ntfy.Priority != "high" {
		t.Errorf("ntfy target = %+v, %v", nt.Ntfy, err)
	}
	if _, err := notifyTarget(config.Notify{Name: "phone", Ntfy: &config.NotifyNtfy{URL: "https://ntfy.example/"}}); err == nil {
		t.Error("an ntfy URL without a topic was accepted")
	}
	mt, err := notifyTarget(config.Notify{Name: "mail", SMTP: &config.NotifySMTP{Server: "mail.example:465", From: "k@example.org", To: []string{"o@example.org"}}})
	if err != nil || mt.SMTP.Host != "mail.example" || mt.SMTP.Port != 465 || mt.SMTP.TLS != "implicit" {
		t.Errorf("smtp target = %+v, %v", mt.SMTP, err)
	}
	if mt, _ := notifyTarget(config.Notify{Name: "mail", SMTP: &config.NotifySMTP{Server: "mail.example:587", From: "k@example.org", To: []string{"o@example.org"}}}); mt.SMTP.TLS != "starttls" {
		t.Errorf("port 587 TLS mode %q, want starttls", mt.SMTP.TLS)
	}
}

// TestNotifierWebhook delivers a run outcome to a webhook on loopback with
// its signature.
func TestNotifierWebhook(t *testing.T) {
	var got map[string]any
	var sig string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		sig = r.Header.Get(notify.HeaderSignature)
		if notify.Sign([]byte("s3cret"), b) != sig {
			t.Errorf("signature %q does not match the body", sig)
		}
		json.Unmarshal(b, &got)
	}))
	defer srv.Close()
	err := notifier(context.Background(), config.Notify{Name: "hook", Webhook: &config.NotifyWebhook{URL: srv.URL, Secret: "s3cret"}},
		orchestrator.Notification{RunID: 7, Host: "pc-01", State: "failed", Verdict: "FAIL", Summary: "FAIL: memory",
			Findings: []string{"memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB"}, Time: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(got); !strings.Contains(string(b), "pc-01") || !strings.Contains(string(b), "memory.installed_bytes") || sig == "" {
		t.Errorf("webhook got %s (signature %q)", b, sig)
	}
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) }))
	defer bad.Close()
	err = notifier(context.Background(), config.Notify{Name: "hook", Webhook: &config.NotifyWebhook{URL: bad.URL}}, orchestrator.Notification{RunID: 7, Host: "pc-01", State: "failed"})
	if !notify.IsPermanent(err) {
		t.Errorf("a 404 = %v, want a permanent error", err)
	}
}
