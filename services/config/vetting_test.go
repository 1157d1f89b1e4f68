package config

import (
	"strings"
	"testing"
	"time"
)

func TestVettingSection(t *testing.T) {
	c, err := Parse(strings.NewReader(`vetting:
  auto_run: false
  default_profile: standard
  boot_timeout: 30m
  after: stay
  retention: {keep_runs: 5, max_age: 720h}
  notify:
    - name: hook
      webhook: {url: "https://hooks.example/kiln", secret: s3cret}
    - name: phone
      ntfy: {url: "https://ntfy.example/rack", priority: high}
      on: [failed, holding]
    - name: mail
      smtp: {server: "mail.example:587", from: kiln@example.org, to: [ops@example.org], username: kiln, password: pw}
`))
	if err != nil {
		t.Fatal(err)
	}
	v := c.Vetting
	if v.AutoRunOn() || v.Profile() != "standard" || v.BootTimeoutOrDefault() != 30*time.Minute || v.AfterOrDefault() != "stay" ||
		v.KeepRunsOrDefault() != 5 || !v.WoLOn() || v.HoldMaxOrDefault() != DefaultVetHoldMax || len(v.Notify) != 3 {
		t.Errorf("Parse(vetting) = %+v", v)
	}
	if !v.Notify[0].Wants("passed") || v.Notify[0].Wants("stopped") || v.Notify[1].Wants("passed") || !v.Notify[1].Wants("holding") {
		t.Errorf("notify outcomes wrong: %+v", v.Notify)
	}
	if d := (Vetting{}); !d.AutoRunOn() || d.Profile() != "quick" || d.BootTimeoutOrDefault() != 15*time.Minute || d.AfterOrDefault() != "poweroff" || d.KeepRunsOrDefault() != 50 {
		t.Errorf("defaults wrong: %+v", d)
	}
	for _, tc := range []struct{ yaml, field string }{
		{"vetting:\n  default_profile: fast\n", "vetting.default_profile"},
		{"vetting:\n  boot_timeout: 10s\n", "vetting.boot_timeout"},
		{"vetting:\n  hold_max: 1000h\n", "vetting.hold_max"},
		{"vetting:\n  after: halt\n", "vetting.after"},
		{"vetting:\n  retention: {keep_runs: -1}\n", "vetting.retention.keep_runs"},
		{"vetting:\n  retention: {max_age: 5m}\n", "vetting.retention.max_age"},
		{"vetting:\n  notify: [{webhook: {url: 'https://x/'}}]\n", "vetting.notify[0].name"},
		{"vetting:\n  notify: [{name: a, webhook: {url: 'https://x/'}}, {name: a, webhook: {url: 'https://y/'}}]\n", "vetting.notify[1].name"},
		{"vetting:\n  notify: [{name: a}]\n", "vetting.notify[0]"},
		{"vetting:\n  notify: [{name: a, webhook: {url: 'https://x/'}, ntfy: {url: 'https://y/t'}}]\n", "vetting.notify[0]"},
		{"vetting:\n  notify: [{name: a, webhook: {url: 'x'}}]\n", "vetting.notify[0].webhook.url"},
		{"vetting:\n  notify: [{name: a, webhook: {url: 'https://x/'}, on: [done]}]\n", "vetting.notify[0].on"},
		{"vetting:\n  notify: [{name: a, ntfy: {url: 'https://x/t', priority: loud}}]\n", "vetting.notify[0].ntfy.priority"},
		{"vetting:\n  notify: [{name: a, smtp: {server: mail, from: k@x.org, to: [o@x.org]}}]\n", "vetting.notify[0].smtp.server"},
		{"vetting:\n  notify: [{name: a, smtp: {server: 'mail:25', from: k@x.org}}]\n", "vetting.notify[0].smtp.to"},
		{"vetting:\n  notify: [{name: a, smtp: {server: 'mail:25', from: nobody, to: [o@x.org]}}]\n", "vetting.notify[0].smtp.from"},
		{"vetting:\n  notify: [{name: a, smtp: {server: 'mail:25', from: k@x.org, to: ['bad address']}}]\n", "vetting.notify[0].smtp.to[0]"},
		{"vetting:\n  notify: [{name: a, smtp: {server: 'mail:25', from: k@x.org, to: [o@x.org], password: pw}}]\n", "vetting.notify[0].smtp.username"},
	} {
		_, err := Parse(strings.NewReader(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("Parse(%q) = %v, want an error naming %s", tc.yaml, err, tc.field)
		}
	}
}
