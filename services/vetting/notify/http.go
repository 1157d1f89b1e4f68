package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

// Headers of a webhook request.
const (
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256 of the body
	// under the target's secret.
	HeaderSignature = "X-Kiln-Signature-256"
	// HeaderEvent is the Payload's event (run.ended, run.held).
	HeaderEvent = "X-Kiln-Event"
	// HeaderDelivery is "<run id>.<outcome>", the same on every retry of
	// one notification, so a receiver can drop duplicates.
	HeaderDelivery = "X-Kiln-Delivery"
)

const userAgent = "kiln-notify/1"

// Payload is a webhook's JSON body: the message's fields next to its
// event and outcome.
type Payload struct {
	// Event is run.ended or run.held.
	Event string `json:"event"`
	// Outcome is Message.Outcome: pass, fail, degraded, error, timeout,
	// skipped, held, stopped or timed_out.
	Outcome string `json:"outcome"`
	Message
}

// Sign returns the HeaderSignature value of body under secret. A receiver
// recomputes it over the raw body and compares with hmac.Equal; the body's
// time field is signed too, so it can also refuse stale replays.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func sendWebhook(ctx context.Context, t Target, m Message) error {
	w := t.Webhook
	body, err := json.Marshal(Payload{Event: m.Event(), Outcome: m.Outcome(), Message: m})
	if err != nil {
		return &Error{Err: fmt.Errorf("encoding the payload: %w", err), Permanent: true}
	}
	h := http.Header{}
	for k, v := range w.Headers {
		h.Set(k, v)
	}
	h.Set("Content-Type", "application/json")
	h.Set(HeaderEvent, m.Event())
	h.Set(HeaderDelivery, clean(m.RunID)+"."+m.Outcome())
	if w.Secret != "" {
		h.Set(HeaderSignature, Sign([]byte(w.Secret), body))
	}
	return post(ctx, t, w.URL, h, body)
}

// ntfyMaxBody stays under ntfy's 4096-byte message limit, beyond which the
// server turns the body into an attachment.
const ntfyMaxBody = 4000

func sendNtfy(ctx context.Context, t Target, m Message) error {
	n := t.Ntfy
	o := m.Outcome()
	h := http.Header{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Title", headerText(title(m)))
	prio := ntfyPriorities[strings.ToLower(n.Priority)]
	if prio == "" {
		prio = outcomePriority(o)
	}
	h.Set("Priority", prio)
	tags := append([]string{outcomeTag(o)}, n.Tags...)
	h.Set("Tags", headerText(strings.Join(tags, ",")))
	if u, err := url.Parse(m.ReportURL); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
		h.Set("Click", u.String())
	}
	switch {
	case n.Token != "":
		h.Set("Authorization", "Bearer "+n.Token)
	case n.Username != "":
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(n.Username+":"+n.Password)))
	}
	return post(ctx, t, strings.TrimSuffix(n.Server, "/")+"/"+n.Topic, h, []byte(truncateBytes(body(m), ntfyMaxBody)))
}

// outcomePriority is the ntfy priority of an outcome: a failure or a held
// host should reach someone now, a pass can wait in the drawer.
func outcomePriority(o string) string {
	switch o {
	case OutcomeFail, OutcomeHeld:
		return "4"
	case OutcomePass, OutcomeSkipped, OutcomeStopped:
		return "2"
	}
	return "3"
}

// outcomeTag is the ntfy emoji short code shown with an outcome.
func outcomeTag(o string) string {
	switch o {
	case OutcomePass:
		return "white_check_mark"
	case OutcomeFail:
		return "x"
	case OutcomeHeld:
		return "lock"
	case OutcomeStopped:
		return "stop_sign"
	case OutcomeSkipped:
		return "heavy_minus_sign"
	}
	return "warning"
}

// headerText keeps a header value on one line and encodes non-ASCII text
// as an RFC 2047 encoded-word, which ntfy decodes.
func headerText(s string) string {
	s = clean(s)
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return mime.BEncoding.Encode("UTF-8", s)
		}
	}
	return s
}

func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// post makes one POST and classifies its outcome.
func post(ctx context.Context, t Target, rawURL string, h http.Header, body []byte) error {
	client, err := httpClient(t)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return &Error{Err: fmt.Errorf("building the request: %w", err), Permanent: true}
	}
	req.Header = h
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		return classify(err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return httpStatusError(resp, string(snippet), time.Now())
}

// httpClient returns a client that trusts t.CAFile too and does not
// follow redirects: a POST that is redirected would be replayed as a GET.
func httpClient(t Target) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if t.CAFile != "" {
		cfg, err := tlsConfig(t.CAFile, "")
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// tlsConfig trusts the system's CAs plus those in caFile.
func tlsConfig(caFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("reading ca_file: %w", err), Permanent: true}
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &Error{Err: fmt.Errorf("ca_file %s holds no PEM certificate", caFile), Permanent: true}
	}
	cfg.RootCAs = pool
	return cfg, nil
}
