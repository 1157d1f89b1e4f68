package notify

import (
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// FieldError is a configuration problem aimed at an operator: which field,
// what is wrong with it, and what to do.
type FieldError struct {
	Field   string
	Problem string
	Fix     string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem + "; " + e.Fix }

// Errors is every problem found in a configuration.
type Errors []*FieldError

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Validate checks a list of targets as configured under prefix (e.g.
// "vetting.notify"): each target, and that names are unique. It returns
// Errors with fields like "vetting.notify[1].smtp.to", or nil.
func Validate(prefix string, targets []Target) error {
	var errs Errors
	seen := map[string]int{}
	for i, t := range targets {
		at := fmt.Sprintf("%s[%d]", prefix, i)
		if err := t.Validate(); err != nil {
			for _, fe := range err.(Errors) {
				errs = append(errs, &FieldError{Field: at + "." + fe.Field, Problem: fe.Problem, Fix: fe.Fix})
			}
		}
		if j, dup := seen[t.Name]; dup && t.Name != "" {
			errs = append(errs, &FieldError{Field: at + ".name", Problem: fmt.Sprintf("%q is also %s[%d].name", t.Name, prefix, j),
				Fix: "give each target its own name (the outbox records deliveries by name)"})
		} else {
			seen[t.Name] = i
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	topicRE = regexp.MustCompile(`^[-_A-Za-z0-9]{1,64}$`)
	tokenRE = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$") // an HTTP header name (RFC 9110 token)
)

// reservedHeaders are set by the webhook sender; a configured header may
// not replace them.
var reservedHeaders = []string{"Content-Type", "Content-Length", "Host", "Transfer-Encoding", "Connection", "User-Agent"}

// Validate checks one target; fields in the returned Errors are relative
// to the target ("smtp.to").
func (t Target) Validate() error {
	var errs Errors
	add := func(field, problem, fix string) { errs = append(errs, &FieldError{field, problem, fix}) }
	if !nameRE.MatchString(t.Name) {
		add("name", fmt.Sprintf("%q is not a usable name", t.Name), "use 1-63 letters, digits, '.', '_' or '-', e.g. ops-mail")
	}
	for i, on := range t.On {
		if !slices.Contains(outcomes, strings.ToLower(on)) {
			add(fmt.Sprintf("on[%d]", i), fmt.Sprintf("unknown outcome %q", on), "use "+strings.Join(outcomes, ", "))
		}
	}
	if t.Timeout < 0 {
		add("timeout", fmt.Sprintf("%v is negative", t.Timeout), "use a duration like 15s, or leave it out for the default")
	}
	blocks := map[string]bool{KindWebhook: t.Webhook != nil, KindNtfy: t.Ntfy != nil, KindSMTP: t.SMTP != nil}
	switch t.Kind {
	case KindWebhook, KindNtfy, KindSMTP:
		if !blocks[t.Kind] {
			add(t.Kind, "missing", fmt.Sprintf("add a %s: block to configure this %s target", t.Kind, t.Kind))
		}
	case "":
		add("kind", "empty", "set kind to webhook, ntfy or smtp")
	default:
		add("kind", fmt.Sprintf("unknown kind %q", t.Kind), "set kind to webhook, ntfy or smtp")
	}
	for _, k := range []string{KindWebhook, KindNtfy, KindSMTP} {
		if blocks[k] && k != t.Kind && t.Kind != "" {
			add(k, fmt.Sprintf("set on a target of kind %s", t.Kind), fmt.Sprintf("remove the %s: block or make it a target of its own", k))
		}
	}
	if t.Webhook != nil && t.Kind == KindWebhook {
		t.Webhook.validate(add)
	}
	if t.Ntfy != nil && t.Kind == KindNtfy {
		t.Ntfy.validate(add)
	}
	if t.SMTP != nil && t.Kind == KindSMTP {
		t.SMTP.validate(add)
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

func validateURL(field, raw, example string, add func(string, string, string)) {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		add(field, "empty", "set the URL, e.g. "+example)
	case err != nil:
		add(field, fmt.Sprintf("%q is not a URL: %v", raw, err), "write it like "+example)
	case u.Scheme != "http" && u.Scheme != "https":
		add(field, fmt.Sprintf("scheme %q is not http or https", u.Scheme), "write it like "+example)
	case u.Host == "":
		add(field, fmt.Sprintf("%q has no host", raw), "write it like "+example)
	case u.User != nil:
		add(field, "the URL carries credentials", "remove them from the URL; use the token or header settings")
	}
}

func (w *Webhook) validate(add func(string, string, string)) {
	validateURL("webhook.url", w.URL, "https://hooks.example.com/kiln", add)
	for name, value := range w.Headers {
		field := "webhook.headers." + name
		switch {
		case !tokenRE.MatchString(name):
			add(field, fmt.Sprintf("%q is not a valid header name", name), "use letters, digits and '-'")
		case slices.ContainsFunc(reservedHeaders, func(r string) bool { return strings.EqualFold(r, name) }) ||
			strings.HasPrefix(strings.ToLower(name), "x-kiln-"):
			add(field, "kiln sets this header itself", "remove it")
		case strings.ContainsAny(value, "\r\n\x00"):
			add(field, "the value has a line break or NUL", "put the value on one line")
		}
	}
}

var ntfyPriorities = map[string]string{"1": "1", "2": "2", "3": "3", "4": "4", "5": "5",
	"min": "1", "low": "2", "default": "3", "high": "4", "max": "5", "urgent": "5"}

func (n *Ntfy) validate(add func(string, string, string)) {
	validateURL("ntfy.server", n.Server, "https://ntfy.sh", add)
	if u, err := url.Parse(n.Server); err == nil && (u.RawQuery != "" || u.Fragment != "") {
		add("ntfy.server", "the server URL has a query or fragment", "give only the base URL, e.g. https://ntfy.sh, and the topic in ntfy.topic")
	}
	if !topicRE.MatchString(n.Topic) {
		add("ntfy.topic", fmt.Sprintf("%q is not an ntfy topic", n.Topic), "use 1-64 letters, digits, '-' or '_' (ntfy's rule); pick one that is hard to guess")
	}
	if n.Token != "" && (n.Username != "" || n.Password != "") {
		add("ntfy.token", "set together with username/password", "use either an access token or a username and password")
	}
	if (n.Username == "") != (n.Password == "") {
		add("ntfy.username", "username and password must be set together", "set both, or neither")
	}
	if strings.ContainsAny(n.Token+n.Username+n.Password, "\r\n\x00") {
		add("ntfy.token", "a credential has a line break or NUL", "put it on one line")
	}
	if _, ok := ntfyPriorities[strings.ToLower(n.Priority)]; n.Priority != "" && !ok {
		add("ntfy.priority", fmt.Sprintf("unknown priority %q", n.Priority), "use 1-5 or min, low, default, high, max, urgent")
	}
	for i, tag := range n.Tags {
		if tag == "" || strings.ContainsAny(tag, ",\r\n\x00") {
			add(fmt.Sprintf("ntfy.tags[%d]", i), fmt.Sprintf("%q is not a usable tag", tag), "use a word or emoji short code without commas")
		}
	}
}

func (s *SMTP) validate(add func(string, string, string)) {
	if s.Host == "" || strings.ContainsAny(s.Host, " /:\r\n") {
		add("smtp.host", fmt.Sprintf("%q is not a host name", s.Host), "set the mail server's name, e.g. mail.example.com (the port goes in smtp.port)")
	}
	if s.Port < 0 || s.Port > 65535 {
		add("smtp.port", "port "+strconv.Itoa(s.Port)+" is out of range", "use 587 (submission, STARTTLS) or 465 (implicit TLS), or leave it out")
	}
	switch s.TLS {
	case "", "starttls":
	case "implicit":
		if s.Insecure {
			add("smtp.insecure", "set with tls: implicit", "remove insecure: implicit TLS is always encrypted")
		}
	default:
		add("smtp.tls", fmt.Sprintf("unknown TLS mode %q", s.TLS), "use starttls (port 587) or implicit (port 465)")
	}
	if (s.Username == "") != (s.Password == "") {
		add("smtp.username", "username and password must be set together", "set both for AUTH PLAIN, or neither")
	}
	if strings.ContainsAny(s.Username+s.Password, "\r\n\x00") {
		add("smtp.password", "a credential has a line break or NUL", "put it on one line")
	}
	if s.From == "" {
		add("smtp.from", "empty", "set the sender, e.g. kiln <kiln@example.com>")
	} else if _, err := mail.ParseAddress(s.From); err != nil {
		add("smtp.from", fmt.Sprintf("%q is not a mail address: %v", s.From, err), "write it like kiln@example.com or kiln <kiln@example.com>")
	}
	if len(s.To) == 0 {
		add("smtp.to", "empty", "list at least one recipient")
	}
	for i, to := range s.To {
		if _, err := mail.ParseAddress(to); err != nil {
			add(fmt.Sprintf("smtp.to[%d]", i), fmt.Sprintf("%q is not a mail address: %v", to, err), "write it like hw-team@example.com")
		}
	}
}
