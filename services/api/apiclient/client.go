package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"kiln.dev/kiln/services/api/wire"
)

// Errors callers branch on (the CLI maps them to exit codes 2, 3 and 4).
var (
	ErrUsage    = errors.New("usage") // a bad URL or argument
	ErrAuth     = errors.New("not authorized")
	ErrNotFound = errors.New("not found")
)

// Client calls one appliance's API with a token.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client of the API at base (scheme://host[:port]) sending
// token ("" for none) over hc.
func New(base, token string, hc *http.Client) *Client {
	return &Client{base: base, token: token, hc: hc}
}

// Base is the appliance's URL, scheme://host[:port].
func (c *Client) Base() string { return c.base }

// Do sends a request with body as JSON (nil: none); out (if not nil)
// receives the JSON answer. Error answers become errors wrapping ErrAuth
// (401, 403, 429), ErrNotFound (404) or nothing, with the API's message
// (and every detail).
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	return c.exchange(ctx, method, path, body, "", out)
}

// DoRaw is Do with a body of content type ctype that is not JSON.
func (c *Client) DoRaw(ctx context.Context, method, path string, body io.Reader, ctype string, out any) error {
	return c.exchange(ctx, method, path, body, ctype, out)
}

func (c *Client) exchange(ctx context.Context, method, path string, body any, ctype string, out any) error {
	resp, err := c.Send(ctx, method, path, body, ctype, nil)
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

// Send makes the request and checks the status; the caller closes the
// answer's body. body is JSON unless it is an io.Reader (then ctype names
// its type); hdr adds headers.
func (c *Client) Send(ctx context.Context, method, path string, body any, ctype string, hdr http.Header) (*http.Response, error) {
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
			return nil, fmt.Errorf("%s: %w", ue.Err, ErrAuth)
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
	var e wire.ErrorBody
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
		return fmt.Errorf("%s (run kiln login again): %w", msg, ErrAuth)
	case http.StatusForbidden, http.StatusTooManyRequests:
		return fmt.Errorf("%s: %w", msg, ErrAuth)
	case http.StatusNotFound:
		return fmt.Errorf("%s: %w", msg, ErrNotFound)
	}
	return errors.New(msg)
}
