package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"kiln.dev/kiln/services/api/apiclient"
)

// runLogin logs in to an appliance and keeps an API token for the other
// commands: "kiln login --url URL [--user NAME] [--password-stdin]
// [--fingerprint FP] [--scope read|write|admin]". A self-signed certificate
// is trusted on first use: its fingerprint is printed (compare it with the
// appliance's console) and pinned; a later change is refused.
func runLogin(ctx context.Context, args []string, s stdio) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(s.err)
	var o apiclient.Options
	o.Register(fs)
	user := fs.String("user", "admin", "account name")
	pwStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	fingerprint := fs.String("fingerprint", "", "the SHA-256 fingerprint the certificate must have (as the appliance's console shows it)")
	scope := fs.String("scope", "", "the token's scope: read, write or admin (default: the account's role)")
	tokenName := fs.String("token-name", "", "name of the token (default kiln-cli@<this host>)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("login: %v: %w", err, errUsage)
	}
	if o.URL == "" || fs.NArg() != 0 {
		return fmt.Errorf("login: --url https://<appliance> is required: %w", errUsage)
	}
	base, err := apiclient.NormalizeURL(o.URL)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	path, err := apiclient.CredentialsFile(o.Credentials)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	creds, err := apiclient.LoadCredentials(path)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	tty := terminal(s.in)
	in := bufio.NewReader(s.in)

	// The certificate: a CA vouches for it, or the operator does.
	u, _ := url.Parse(base)
	var fp string
	var caSigned bool
	hc := &http.Client{Timeout: 30 * time.Second, Transport: apiclient.PinnedTransport(u.Hostname(), "", func(f string, ca bool) { fp, caSigned = f, ca })}
	c := apiclient.New(base, "", hc)
	if _, err := c.Info(ctx); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	pinned := ""
	if u.Scheme == "https" {
		switch {
		case *fingerprint != "" && !apiclient.SameFingerprint(*fingerprint, fp):
			return fmt.Errorf("login: the certificate's SHA-256 fingerprint is %s, not %s: someone may be in between, or the appliance's certificate changed: %w", fp, *fingerprint, apiclient.ErrAuth)
		case *fingerprint != "":
			pinned = fp
		case caSigned:
			fmt.Fprintf(s.err, "certificate: signed by a CA this machine trusts (SHA-256 %s)\n", fp)
		default:
			old := creds.Servers[base].Fingerprint
			fmt.Fprintf(s.err, "The appliance's certificate is self-signed. SHA-256 fingerprint:\n  %s\n", fp)
			if old != "" && !apiclient.SameFingerprint(old, fp) {
				fmt.Fprintf(s.err, "WARNING: it differs from the one trusted before (%s).\n", old)
			}
			fmt.Fprintln(s.err, "Compare it with the appliance's console (\"kiln: management certificate sha256 …\", or the recovery menu's banner).")
			if tty && !*pwStdin {
				fmt.Fprint(s.err, "Trust it? [y/N] ")
				ans, _ := in.ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(ans)); a != "y" && a != "yes" {
					return fmt.Errorf("login: certificate not trusted: %w", apiclient.ErrAuth)
				}
			} else {
				fmt.Fprintln(s.err, "Trusting it on first use (pass --fingerprint to check it instead).")
			}
			pinned = fp
		}
		hc.Transport = apiclient.PinnedTransport(u.Hostname(), pinned, nil)
	}

	// The password.
	var password string
	switch {
	case *pwStdin:
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("login: reading the password from standard input: %w", err)
		}
		password = strings.TrimRight(line, "\r\n")
	case tty:
		fmt.Fprintf(s.err, "Password for %s at %s: ", *user, base)
		password, err = readSecret(s.in.(*os.File))
		fmt.Fprintln(s.err)
		if err != nil {
			return fmt.Errorf("login: %w", err)
		}
	default:
		return fmt.Errorf("login: standard input is not a terminal: pass --password-stdin and the password on standard input: %w", errUsage)
	}

	// Session → token → end the session.
	resp, err := c.Send(ctx, "POST", "/api/v1/session", map[string]string{"user": *user, "password": password}, "", nil)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	var se struct {
		Role      string `json:"role"`
		CSRFToken string `json:"csrf_token"`
		Initial   bool   `json:"initial_password"`
	}
	json.NewDecoder(resp.Body).Decode(&se)
	resp.Body.Close()
	var cookie string
	for _, ck := range resp.Cookies() {
		if ck.Name == "kiln_session" {
			cookie = ck.Name + "=" + ck.Value
		}
	}
	hdr := http.Header{"Cookie": {cookie}, "X-Csrf-Token": {se.CSRFToken}}
	name := *tokenName
	if name == "" {
		h, _ := os.Hostname()
		name = "kiln-cli@" + h
	}
	resp, err = c.Send(ctx, "POST", "/api/v1/tokens", map[string]any{"name": name, "scope": *scope}, "", hdr)
	if err != nil {
		return fmt.Errorf("login: making a token: %w", err)
	}
	var made struct {
		Token struct {
			ID    int64  `json:"id"`
			Scope string `json:"scope"`
		} `json:"token"`
		Secret string `json:"secret"`
	}
	err = json.NewDecoder(resp.Body).Decode(&made)
	resp.Body.Close()
	if err != nil || made.Secret == "" {
		return fmt.Errorf("login: reading the new token: %v", err)
	}
	// The token made by an earlier login is not needed any more.
	if old := creds.Servers[base]; old.TokenID != 0 && old.User == *user {
		if r, err := c.Send(ctx, "DELETE", fmt.Sprintf("/api/v1/tokens/%d", old.TokenID), nil, "", hdr); err == nil {
			r.Body.Close()
		}
	}
	if r, err := c.Send(ctx, "DELETE", "/api/v1/session", nil, "", hdr); err == nil {
		r.Body.Close()
	}
	creds.Default = base
	creds.Servers[base] = apiclient.ServerCred{User: *user, Token: made.Secret, TokenID: made.Token.ID, Fingerprint: pinned}
	if err := creds.Save(path); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	fmt.Fprintf(s.out, "logged in to %s as %s (%s token %q, saved in %s)\n", base, *user, made.Token.Scope, name, path)
	if se.Initial {
		fmt.Fprintln(s.out, "note: this account still uses the first-boot password; change it in the web UI (Settings)")
	}
	return nil
}

// terminal reports whether r is a terminal.
func terminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readSecret reads one line from a terminal without echoing it.
func readSecret(f *os.File) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
