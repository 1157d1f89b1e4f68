package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// received is one request a test server saw.
type received struct {
	method, path string
	header       http.Header
	body         []byte
}

// recorder answers every request with status (and extra headers) and
// hands the request to the test.
func recorder(t *testing.T, status int, extra http.Header) (*httptest.Server, <-chan received) {
	t.Helper()
	ch := make(chan received, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- received{r.Method, r.URL.Path, r.Header.Clone(), b}
		for k, vs := range extra {
			w.Header()[k] = vs
		}
		w.WriteHeader(status)
		io.WriteString(w, "answer from the test server\n")
	}))
	t.Cleanup(srv.Close)
	return srv, ch
}

func TestWebhook(t *testing.T) {
	srv, ch := recorder(t, http.StatusNoContent, nil)
	secret := "s3cret"
	target := Target{Name: "hook", Kind: KindWebhook, Webhook: &Webhook{URL: srv.URL + "/hooks/kiln", Secret: secret,
		Headers: map[string]string{"Authorization": "Bearer abc", "X-Team": "infra"}}}
	m := failMessage()
	if err := Send(t.Context(), target, m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := <-ch
	if r.method != http.MethodPost || r.path != "/hooks/kiln" {
		t.Errorf("request %s %s, want POST /hooks/kiln", r.method, r.path)
	}
	// The signature is recomputed here independently of Sign.
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(r.body)
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); r.header.Get(HeaderSignature) != want {
		t.Errorf("%s = %q, want %q", HeaderSignature, r.header.Get(HeaderSignature), want)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "Authorization": "Bearer abc", "X-Team": "infra",
		HeaderEvent: "run.ended", HeaderDelivery: "42.fail", "User-Agent": userAgent} {
		if got := r.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	var p Payload
	dec := json.NewDecoder(strings.NewReader(string(r.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decoding the payload: %v\n%s", err, r.body)
	}
	if diff := cmp.Diff(Payload{Event: "run.ended", Outcome: "fail", Message: m}, p); diff != "" {
		t.Errorf("payload differs (-want +got):\n%s", diff)
	}
	// A tampered body does not verify.
	if Sign([]byte(secret), append(r.body, ' ')) == r.header.Get(HeaderSignature) {
		t.Error("the signature does not depend on the body")
	}

	// Without a secret there is no signature header.
	target.Webhook.Secret = ""
	held := m
	held.State = "holding"
	if err := Send(t.Context(), target, held); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r = <-ch
	if r.header.Get(HeaderSignature) != "" || r.header.Get(HeaderEvent) != "run.held" || r.header.Get(HeaderDelivery) != "42.held" {
		t.Errorf("unsigned held request headers = %v", r.header)
	}
}

func TestWebhookTLS(t *testing.T) {
	cert, caFile := testCert(t)
	ch := make(chan string, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ch <- r.URL.Path }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	target := Target{Name: "hook", Kind: KindWebhook, Webhook: &Webhook{URL: srv.URL + "/x"}}
	err := Send(t.Context(), target, failMessage())
	if !IsPermanent(err) || !strings.Contains(err.Error(), "ca_file") {
		t.Errorf("Send to an untrusted certificate = %v, want a permanent error pointing at ca_file", err)
	}
	target.CAFile = caFile
	if err := Send(t.Context(), target, failMessage()); err != nil {
		t.Fatalf("Send with ca_file: %v", err)
	}
	if p := <-ch; p != "/x" {
		t.Errorf("path = %q", p)
	}
}

func TestNtfy(t *testing.T) {
	srv, ch := recorder(t, http.StatusOK, nil)
	target := Target{Name: "phones", Kind: KindNtfy, Ntfy: &Ntfy{Server: srv.URL + "/", Topic: "kiln-vetting", Token: "tk_abc123", Tags: []string{"rack4"}}}
	m := failMessage()
	if err := Send(t.Context(), target, m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r := <-ch
	if r.method != http.MethodPost || r.path != "/kiln-vetting" {
		t.Errorf("request %s %s, want POST /kiln-vetting", r.method, r.path)
	}
	for k, want := range map[string]string{"Title": "[kiln] r650-04: FAIL", "Priority": "4", "Tags": "x,rack4",
		"Click": m.ReportURL, "Authorization": "Bearer tk_abc123", "Content-Type": "text/plain; charset=utf-8"} {
		if got := r.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if b := string(r.body); !strings.Contains(b, "- [spec] FAIL memory.installed_bytes: expected ≥ 64 GiB, got 2 GiB") || !strings.HasPrefix(b, m.Summary) {
		t.Errorf("body = %q, want the summary and findings", b)
	}

	// Basic auth, a configured priority, a pass, a host name that is not
	// ASCII (RFC 2047 in the header), no usable report URL.
	target.Ntfy = &Ntfy{Server: srv.URL, Topic: "t", Username: "kiln", Password: "pw", Priority: "min"}
	pass := Message{RunID: "43", Host: "rück-07", Verdict: "PASS", State: "passed", ReportURL: "javascript:alert(1)", Time: testTime}
	if err := Send(t.Context(), target, pass); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r = <-ch
	title, err := new(mime.WordDecoder).DecodeHeader(r.header.Get("Title"))
	if err != nil || title != "[kiln] rück-07: PASS" || !strings.HasPrefix(r.header.Get("Title"), "=?UTF-8?b?") {
		t.Errorf("Title = %q (decoded %q, %v), want an RFC 2047 word for [kiln] rück-07: PASS", r.header.Get("Title"), title, err)
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("kiln:pw"))
	if r.header.Get("Authorization") != wantAuth || r.header.Get("Priority") != "1" || r.header.Get("Tags") != "white_check_mark" || r.header.Get("Click") != "" {
		t.Errorf("headers = %v", r.header)
	}

	// A long message stays below ntfy's attachment limit, cut on a rune.
	long := failMessage()
	long.Findings = []string{strings.Repeat("≥", 3000)}
	if err := Send(t.Context(), target, long); err != nil {
		t.Fatalf("Send: %v", err)
	}
	r = <-ch
	if len(r.body) > ntfyMaxBody || !strings.HasSuffix(string(r.body), "…") || !utf8.Valid(r.body) {
		t.Errorf("long body is %d bytes ending %q, want ≤ %d ending in … and valid UTF-8", len(r.body), r.body[len(r.body)-8:], ntfyMaxBody)
	}
}

// TestHTTPClassification: which answers a retry can change.
func TestHTTPClassification(t *testing.T) {
	for _, tc := range []struct {
		status     int
		header     http.Header
		permanent  bool
		retryAfter time.Duration
	}{
		{http.StatusBadRequest, nil, true, 0},
		{http.StatusUnauthorized, nil, true, 0},
		{http.StatusForbidden, nil, true, 0},
		{http.StatusNotFound, nil, true, 0},
		{http.StatusRequestEntityTooLarge, nil, true, 0},
		{http.StatusFound, http.Header{"Location": {"https://elsewhere.example.com/"}}, true, 0},
		{http.StatusRequestTimeout, nil, false, 0},
		{http.StatusTooManyRequests, nil, false, 0},
		{http.StatusTooManyRequests, http.Header{"Retry-After": {"120"}}, false, 2 * time.Minute},
		{http.StatusInternalServerError, nil, false, 0},
		{http.StatusNotImplemented, nil, true, 0},
		{http.StatusBadGateway, nil, false, 0},
		{http.StatusServiceUnavailable, http.Header{"Retry-After": {"30"}}, false, 30 * time.Second},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			srv, ch := recorder(t, tc.status, tc.header)
			target := Target{Name: "hook", Kind: KindWebhook, Webhook: &Webhook{URL: srv.URL}}
			err := Send(t.Context(), target, failMessage())
			<-ch
			ra, _ := RetryAfter(err)
			if err == nil || IsPermanent(err) != tc.permanent || ra != tc.retryAfter {
				t.Fatalf("Send → %d = %v (permanent %v, retry after %v), want permanent %v, retry after %v",
					tc.status, err, IsPermanent(err), ra, tc.permanent, tc.retryAfter)
			}
			if !strings.Contains(err.Error(), "notifying hook: ") || !strings.Contains(err.Error(), http.StatusText(tc.status)) {
				t.Errorf("error %q does not name the target and the status", err)
			}
			if tc.status == http.StatusFound && !strings.Contains(err.Error(), "configure the final URL") {
				t.Errorf("redirect error %q does not say what to do", err)
			}
			if tc.retryAfter > 0 && Delay(1, err) != tc.retryAfter {
				t.Errorf("Delay(1, err) = %v, want the server's %v", Delay(1, err), tc.retryAfter)
			}
		})
	}
}

func TestHTTPNetworkErrorsRetryable(t *testing.T) {
	srv, _ := recorder(t, http.StatusOK, nil)
	url := srv.URL
	srv.Close()
	err := Send(t.Context(), Target{Name: "hook", Kind: KindWebhook, Webhook: &Webhook{URL: url}}, failMessage())
	if err == nil || IsPermanent(err) {
		t.Errorf("Send to a closed port = %v, want a retryable error", err)
	}

	// A server slower than the target's timeout: the attempt ends at the
	// timeout and may be retried.
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	start := time.Now()
	err = Send(t.Context(), Target{Name: "slow", Kind: KindWebhook, Timeout: 200 * time.Millisecond, Webhook: &Webhook{URL: slow.URL}}, failMessage())
	if err == nil || IsPermanent(err) || time.Since(start) > 3*time.Second {
		t.Errorf("Send to a slow server = %v after %v, want a retryable error after about 200ms", err, time.Since(start))
	}
}
