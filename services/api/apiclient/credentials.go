package apiclient

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"kiln.dev/kiln/internal/atomicfile"
)

// Credentials is ~/.config/kiln/credentials.json: a token per appliance URL.
type Credentials struct {
	Default string                `json:"default"`
	Servers map[string]ServerCred `json:"servers"`
}

// ServerCred is what kiln login keeps for one appliance.
type ServerCred struct {
	User  string `json:"user"`
	Token string `json:"token"`
	// TokenID lets kiln login replace (revoke) the token it made before.
	TokenID int64 `json:"token_id,omitempty"`
	// Fingerprint is the certificate's SHA-256 trusted at login ("" for
	// certificates a system CA vouches for, and for http://).
	Fingerprint string `json:"fingerprint,omitempty"`
}

// CredentialsFile is flagValue (--credentials), else $KILN_CREDENTIALS, else
// <user config dir>/kiln/credentials.json.
func CredentialsFile(flagValue string) (string, error) {
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

// LoadCredentials reads path; a missing file is no credentials.
func LoadCredentials(path string) (Credentials, error) {
	c := Credentials{Servers: map[string]ServerCred{}}
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
		c.Servers = map[string]ServerCred{}
	}
	return c, nil
}

// Save writes the file 0600 in a 0700 directory, atomically.
func (c Credentials) Save(path string) error {
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

// NormalizeURL checks an appliance URL and drops a trailing slash. A bad
// one is an error wrapping ErrUsage.
func NormalizeURL(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("--url %q: want https://host[:port] of the appliance: %w", s, ErrUsage)
	}
	return u.Scheme + "://" + u.Host, nil
}

// Options are the flags every command that talks to the API takes.
type Options struct {
	URL, Credentials string
}

// Register adds --url and --credentials to fs.
func (o *Options) Register(fs *flag.FlagSet) {
	fs.StringVar(&o.URL, "url", "", "the appliance, https://host[:port] (default: the last kiln login)")
	fs.StringVar(&o.Credentials, "credentials", "", "credentials file (default $KILN_CREDENTIALS or ~/.config/kiln/credentials.json)")
}

// LoggedIn reports whether the API can be reached without --url.
func (o *Options) LoggedIn() bool {
	if o.URL != "" {
		return true
	}
	path, err := CredentialsFile(o.Credentials)
	if err != nil {
		return false
	}
	c, err := LoadCredentials(path)
	return err == nil && c.Default != ""
}

// Client resolves the URL (--url, else the last login) and its token.
func (o *Options) Client() (*Client, error) {
	path, err := CredentialsFile(o.Credentials)
	if err != nil {
		return nil, err
	}
	creds, err := LoadCredentials(path)
	if err != nil {
		return nil, err
	}
	base := creds.Default
	if o.URL != "" {
		if base, err = NormalizeURL(o.URL); err != nil {
			return nil, err
		}
	}
	if base == "" {
		return nil, fmt.Errorf("not logged in: run kiln login --url https://<appliance>: %w", ErrAuth)
	}
	cred, ok := creds.Servers[base]
	if !ok || cred.Token == "" {
		return nil, fmt.Errorf("no token for %s in %s: run kiln login --url %s: %w", base, path, base, ErrAuth)
	}
	u, _ := url.Parse(base)
	return New(base, cred.Token, &http.Client{Transport: PinnedTransport(u.Hostname(), cred.Fingerprint, nil)}), nil
}
