package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"time"
)

// Vetting configures hardware vetting runs (see docs/vetting.md). Every
// field has a default; the accessor methods apply them.
type Vetting struct {
	// AutoRun: a host whose boot profile is "vet" and that network-boots
	// with no run queued and no earlier run gets a run created, so
	// registering a machine and powering it on is enough. Default true.
	AutoRun *bool `yaml:"auto_run"`
	// DefaultProfile is the profile of runs that name none: quick, standard
	// or extended. Default quick.
	DefaultProfile string `yaml:"default_profile"`
	// HoldOnFailure is the default of a run's hold flag (keep a failed host
	// up with an SSH server for the operator). Default false.
	HoldOnFailure bool `yaml:"hold_on_failure"`
	// BootTimeout bounds the time from starting a run to the agent's hello.
	// Default 15m, 1m to 24h.
	BootTimeout time.Duration `yaml:"boot_timeout"`
	// HoldMax bounds how long a failed host is held. Default 24h, 1m to 720h.
	HoldMax time.Duration `yaml:"hold_max"`
	// After is what a host does once its run is over and not held:
	// poweroff (default), reboot or stay.
	After string `yaml:"after"`
	// WoL sends Wake-on-LAN when a run starts. Default true.
	WoL *bool `yaml:"wol"`
	// Retention bounds the runs (and their artifacts) kept on data.
	Retention VetRetention `yaml:"retention"`
	// Notify lists where run outcomes are sent.
	Notify []Notify `yaml:"notify"`
}

// VetRetention bounds stored runs: per host the KeepRuns newest are kept,
// and none older than MaxAge. Defaults 50 and 0 (no age limit).
type VetRetention struct {
	KeepRuns int           `yaml:"keep_runs"`
	MaxAge   time.Duration `yaml:"max_age"`
}

// Defaults of the vetting section.
const (
	DefaultVetProfile     = "quick"
	DefaultVetBootTimeout = 15 * time.Minute
	DefaultVetHoldMax     = 24 * time.Hour
	DefaultVetAfter       = "poweroff"
	DefaultVetKeepRuns    = 50
)

// VetProfiles are the profile names a run may use.
var VetProfiles = []string{"quick", "standard", "extended"}

// AutoRunOn returns AutoRun or its default (true).
func (v Vetting) AutoRunOn() bool { return v.AutoRun == nil || *v.AutoRun }

// WoLOn returns WoL or its default (true).
func (v Vetting) WoLOn() bool { return v.WoL == nil || *v.WoL }

// Profile returns DefaultProfile or its default.
func (v Vetting) Profile() string {
	if v.DefaultProfile == "" {
		return DefaultVetProfile
	}
	return v.DefaultProfile
}

// BootTimeoutOrDefault returns BootTimeout or its default.
func (v Vetting) BootTimeoutOrDefault() time.Duration {
	if v.BootTimeout == 0 {
		return DefaultVetBootTimeout
	}
	return v.BootTimeout
}

// HoldMaxOrDefault returns HoldMax or its default.
func (v Vetting) HoldMaxOrDefault() time.Duration {
	if v.HoldMax == 0 {
		return DefaultVetHoldMax
	}
	return v.HoldMax
}

// AfterOrDefault returns After or its default.
func (v Vetting) AfterOrDefault() string {
	if v.After == "" {
		return DefaultVetAfter
	}
	return v.After
}

// KeepRunsOrDefault returns Retention.KeepRuns or its default.
func (v Vetting) KeepRunsOrDefault() int {
	if v.Retention.KeepRuns == 0 {
		return DefaultVetKeepRuns
	}
	return v.Retention.KeepRuns
}

// ValidVetProfile reports whether p names a profile.
func ValidVetProfile(p string) bool {
	for _, q := range VetProfiles {
		if p == q {
			return true
		}
	}
	return false
}

func (v Vetting) validate(add func(field, problem, fix string)) {
	if v.DefaultProfile != "" && !ValidVetProfile(v.DefaultProfile) {
		add("vetting.default_profile", fmt.Sprintf("%q is not a profile", v.DefaultProfile), "use quick, standard or extended")
	}
	if v.BootTimeout != 0 && (v.BootTimeout < time.Minute || v.BootTimeout > 24*time.Hour) {
		add("vetting.boot_timeout", fmt.Sprintf("%s is out of range", v.BootTimeout), "use 1m to 24h (a server's POST can take 5 minutes)")
	}
	if v.HoldMax != 0 && (v.HoldMax < time.Minute || v.HoldMax > 720*time.Hour) {
		add("vetting.hold_max", fmt.Sprintf("%s is out of range", v.HoldMax), "use 1m to 720h")
	}
	switch v.After {
	case "", "poweroff", "reboot", "stay":
	default:
		add("vetting.after", fmt.Sprintf("%q is not an action", v.After), "use poweroff, reboot or stay")
	}
	if v.Retention.KeepRuns < 0 {
		add("vetting.retention.keep_runs", fmt.Sprintf("%d is negative", v.Retention.KeepRuns), "use 1 or more (0 means the default, 50)")
	}
	if v.Retention.MaxAge < 0 || (v.Retention.MaxAge > 0 && v.Retention.MaxAge < time.Hour) {
		add("vetting.retention.max_age", fmt.Sprintf("%s is out of range", v.Retention.MaxAge), "use 1h or more, or 0 for no age limit")
	}
	names := map[string]bool{}
	for i, n := range v.Notify {
		field := fmt.Sprintf("vetting.notify[%d]", i)
		if n.Name == "" {
			add(field+".name", "missing", "give each notification target a name, e.g. ops-webhook")
		} else if names[n.Name] {
			add(field+".name", fmt.Sprintf("%q is used twice", n.Name), "give each target its own name")
		}
		names[n.Name] = true
		n.validate(field, add)
	}
}

// Notify is one notification target: exactly one of Webhook, Ntfy and SMTP.
type Notify struct {
	Name    string         `yaml:"name"`
	Webhook *NotifyWebhook `yaml:"webhook"`
	Ntfy    *NotifyNtfy    `yaml:"ntfy"`
	SMTP    *NotifySMTP    `yaml:"smtp"`
	// On lists the run outcomes sent: passed, failed, holding, error,
	// timed_out, stopped. Default: all but stopped.
	On []string `yaml:"on"`
}

// NotifyWebhook POSTs the run outcome as JSON to URL; with Secret set, the
// body's HMAC-SHA256 goes in the X-Kiln-Signature-256 header ("sha256=<hex>").
type NotifyWebhook struct {
	URL     string            `yaml:"url"`
	Secret  string            `yaml:"secret"`
	Headers map[string]string `yaml:"headers"`
}

// NotifyNtfy publishes to an ntfy topic URL (https://ntfy.example/topic).
type NotifyNtfy struct {
	URL      string `yaml:"url"`
	Token    string `yaml:"token"`
	Priority string `yaml:"priority"`
}

// NotifySMTP sends mail through Server (host:port); STARTTLS is required
// unless Insecure.
type NotifySMTP struct {
	Server   string   `yaml:"server"`
	From     string   `yaml:"from"`
	To       []string `yaml:"to"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	Insecure bool     `yaml:"insecure"`
}

// NotifyOutcomes are the values of Notify.On.
var NotifyOutcomes = []string{"passed", "failed", "holding", "error", "timed_out", "stopped"}

// Wants reports whether outcome is sent to n.
func (n Notify) Wants(outcome string) bool {
	if len(n.On) == 0 {
		return outcome != "stopped"
	}
	for _, o := range n.On {
		if o == outcome {
			return true
		}
	}
	return false
}

func (n Notify) validate(field string, add func(field, problem, fix string)) {
	kinds := 0
	for _, set := range []bool{n.Webhook != nil, n.Ntfy != nil, n.SMTP != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		add(field, fmt.Sprintf("sets %d of webhook, ntfy and smtp", kinds), "set exactly one of them per target")
	}
	for _, o := range n.On {
		ok := false
		for _, k := range NotifyOutcomes {
			ok = ok || o == k
		}
		if !ok {
			add(field+".on", fmt.Sprintf("%q is not an outcome", o), "use passed, failed, holding, error, timed_out or stopped")
		}
	}
	if w := n.Webhook; w != nil && !httpURL(w.URL) {
		add(field+".webhook.url", fmt.Sprintf("%q is not an http(s) URL", w.URL), "give the URL to POST to, e.g. https://hooks.example/kiln")
	}
	if t := n.Ntfy; t != nil {
		if !httpURL(t.URL) {
			add(field+".ntfy.url", fmt.Sprintf("%q is not an http(s) URL", t.URL), "give the topic URL, e.g. https://ntfy.sh/my-rack")
		}
		switch t.Priority {
		case "", "min", "low", "default", "high", "max", "urgent", "1", "2", "3", "4", "5":
		default:
			add(field+".ntfy.priority", fmt.Sprintf("%q is not an ntfy priority", t.Priority), "use min, low, default, high, max (or 1-5)")
		}
	}
	if m := n.SMTP; m != nil {
		if _, _, err := net.SplitHostPort(m.Server); err != nil || m.Server == "" {
			add(field+".smtp.server", fmt.Sprintf("%q is not host:port", m.Server), "e.g. mail.example:587")
		}
		if _, err := mail.ParseAddress(m.From); err != nil {
			add(field+".smtp.from", fmt.Sprintf("%q is not a mail address", m.From), "e.g. kiln@example.org")
		}
		if len(m.To) == 0 {
			add(field+".smtp.to", "empty", "list at least one recipient")
		}
		for i, to := range m.To {
			if _, err := mail.ParseAddress(to); err != nil {
				add(fmt.Sprintf("%s.smtp.to[%d]", field, i), fmt.Sprintf("%q is not a mail address", to), "e.g. ops@example.org")
			}
		}
		if m.Password != "" && m.Username == "" {
			add(field+".smtp.username", "missing while a password is set", "give the account name, or drop the password")
		}
	}
}

func httpURL(s string) bool {
	p, err := url.Parse(s)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != ""
}
