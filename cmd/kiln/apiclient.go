package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kiln.dev/kiln/internal/atomicfile"
	"kiln.dev/kiln/services/api"
)

// Exit codes 3 and 4 (main maps them): scripts tell "log in again" and
// "no such thing" apart from other failures.
var (
	errAuth     = errors.New("not authorized")
	errNotFound = errors.New("not found")
)

// credentials is ~/.config/kiln/credentials.json: a token per appliance URL.
type credentials struct {
	Default string                `json:"default"`
	Servers map[string]serverCred `json:"servers"`
}

type serverCred struct {
	User  string `json:"user"`
	Token string `json:"token"`
	// TokenID lets kiln login replace (revoke) the token it made before.
	TokenID int64 `json:"token_id,omitempty"`
	// Fingerprint is the certificate's SHA-256 trusted at login ("" for
	// certificates a system CA vouches for, and for http://).
	Fingerprint string `json:"fingerprint,omitempty"`
}

// credentialsFile is --credentials, else $KILN_CREDENTIALS, else
// <user config dir>/kiln/credentials.json.
func credentialsFile(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if v := os.Getenv("KILN_CREDENTIALS"); v != "" {
		return v, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("finding the credentials file: %w (set HOME or pass --credentials)", err)
	}
	return filepath.Join(dir, "kiln", "credentials.json"), nil
}

func loadCredentials(path string) (credentials, error) {
	c := credentials{Servers: map[string]serverCred{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	} else if err != nil {
		return c, fmt.Errorf("reading %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("reading %s: %w (delete it and run kiln login again)", path, err)
	}
	if c.Servers == nil {
		c.Servers = map[string]serverCred{}
	}
	return c, nil
}

// save writes the file 0600 in a 0700 directory, atomically.
func (c credentials) save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("saving credentials: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving credentials: %w", err)
	}
	return nil
}

// normalizeURL checks an appliance URL and drops a trailing slash.
func normalizeURL(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("--url %q: want https://host[:port] of the appliance: %w", s, errUsage)
	}
	return u.Scheme + "://" + u.Host, nil
}

// certFingerprint is the SHA-256 of a DER certificate, as mgmt prints it.
func certFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// sameFingerprint compares fingerprints written with or without colons, any case.
func sameFingerprint(a, b string) bool {
	norm := func(s string) string { return strings.ToUpper(strings.NewReplacer(":", "", " ", "").Replace(s)) }
	return norm(a) != "" && norm(a) == norm(b)
}

// pinnedTransport trusts a certificate a system CA vouches for or, failing
// that, only the one whose fingerprint is pinned. seen receives the leaf's
// fingerprint and whether a CA vouched for it.
func pinnedTransport(host, pinned string, seen func(fp string, caSigned bool)) *http.Transport {
	return &http.Transport{
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // verified below: CA chain or pinned fingerprint
			MinVersion:         tls.VersionTLS12,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("the server sent no certificate")
				}
				leaf := cs.PeerCertificates[0]
				fp := certFingerprint(leaf.Raw)
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				_, caErr := leaf.Verify(x509.VerifyOptions{DNSName: host, Intermediates: inter})
				if seen != nil {
					seen(fp, caErr == nil)
				}
				switch {
				case pinned == "" && seen != nil: // kiln login decides
					return nil
				case pinned == "" && caErr == nil:
					return nil
				case sameFingerprint(pinned, fp):
					return nil
				case pinned == "":
					return fmt.Errorf("the certificate is not signed by a CA this machine trusts (%v): run kiln login to trust its fingerprint", caErr)
				}
				return fmt.Errorf("the certificate's SHA-256 fingerprint is %s, not %s as trusted at kiln login: if the appliance's certificate was replaced, run kiln login again", fp, pinned)
			},
		},
		Proxy:               http.ProxyFromEnvironment,
		TLSHandshakeTimeout: 10 * time.Second,
	}
}

// apiOptions are the flags every command that talks to the API takes.
type apiOptions struct {
	url, credentials string
}

func (o *apiOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.url, "url", "", "the appliance, https://host[:port] (default: the last kiln login)")
	fs.StringVar(&o.credentials, "credentials", "", "credentials file (default $KILN_CREDENTIALS or ~/.config/kiln/credentials.json)")
}

// loggedIn reports whether the API can be reached without --url.
func (o *apiOptions) loggedIn() bool {
	if o.url != "" {
		return true
	}
	path, err := credentialsFile(o.credentials)
	if err != nil {
		return false
	}
	c, err := loadCredentials(path)
	return err == nil && c.Default != ""
}

// apiClient calls the appliance's API with a stored token.
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

// client resolves the URL and the token for it.
func (o *apiOptions) client() (*apiClient, error) {
	path, err := credentialsFile(o.credentials)
	if err != nil {
		return nil, err
	}
	creds, err := loadCredentials(path)
	if err != nil {
		return nil, err
	}
	base := creds.Default
	if o.url != "" {
		if base, err = normalizeURL(o.url); err != nil {
			return nil, err
		}
	}
	if base == "" {
		return nil, fmt.Errorf("not logged in: run kiln login --url https://<appliance>: %w", errAuth)
	}
	cred, ok := creds.Servers[base]
	if !ok || cred.Token == "" {
		return nil, fmt.Errorf("no token for %s in %s: run kiln login --url %s: %w", base, path, base, errAuth)
	}
	u, _ := url.Parse(base)
	return &apiClient{base: base, token: cred.Token, hc: &http.Client{Transport: pinnedTransport(u.Hostname(), cred.Fingerprint, nil)}}, nil
}

// do sends a request; out (if not nil) receives the JSON answer. Error
// answers become errors wrapping errAuth (401, 403, 429), errNotFound (404)
// or nothing, with the API's message (and every detail).
func (c *apiClient) do(ctx context.Context, method, path string, body any, out any) error {
	return c.exchange(ctx, method, path, body, "", out)
}

// exchange is do with a body of type ctype ("": JSON).
func (c *apiClient) exchange(ctx context.Context, method, path string, body any, ctype string, out any) error {
	resp, err := c.send(ctx, method, path, body, ctype, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
	}
	return nil
}

// send makes the request and checks the status; the caller closes the body.
// body is JSON unless ctype names another type (then it is an io.Reader).
func (c *apiClient) send(ctx context.Context, method, path string, body any, ctype string, hdr http.Header) (*http.Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case io.Reader:
		rd = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, ctype = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) && strings.Contains(ue.Err.Error(), "fingerprint") {
			return nil, fmt.Errorf("%s: %w", ue.Err, errAuth)
		}
		return nil, fmt.Errorf("reaching %s: %w", c.base, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, responseError(resp)
}

// responseError turns an error answer into an error naming every problem.
func responseError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e api.ErrorBody
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		msg = e.Error.Message
		if len(e.Error.Details) > 1 {
			var lines []string
			for _, d := range e.Error.Details {
				l := d.Message
				if d.Field != "" {
					l = d.Field + ": " + l
				}
				if d.Line > 0 {
					l = fmt.Sprintf("line %d: %s", d.Line, l)
				}
				lines = append(lines, "  "+l)
			}
			msg = strings.Join(lines, "\n")
		}
	}
	if msg == "" {
		msg = resp.Status
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s (run kiln login again): %w", msg, errAuth)
	case http.StatusForbidden, http.StatusTooManyRequests:
		return fmt.Errorf("%s: %w", msg, errAuth)
	case http.StatusNotFound:
		return fmt.Errorf("%s: %w", msg, errNotFound)
	}
	return errors.New(msg)
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	id, event, data string
}

// readSSE calls fn for each event of r until r ends or fn fails.
func readSSE(r io.Reader, fn func(sseEvent) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var e sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if e.event != "" || e.data != "" {
				if err := fn(e); err != nil {
					return err
				}
			}
			e = sseEvent{}
		case strings.HasPrefix(line, ":"):
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "id":
				e.id = v
			case "event":
				e.event = v
			case "data":
				if e.data != "" {
					e.data += "\n"
				}
				e.data += v
			}
		}
	}
	return sc.Err()
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// doRaw sends body as ctype (not JSON); out (if not nil) receives the JSON answer.
func (c *apiClient) doRaw(ctx context.Context, method, path string, body io.Reader, ctype string, out any) error {
	return c.exchange(ctx, method, path, body, ctype, out)
}
