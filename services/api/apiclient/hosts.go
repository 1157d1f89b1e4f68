package apiclient

import (
	"context"
	"net/url"

	"kiln.dev/kiln/services/api/wire"
)

// Info is GET /api/v1/info (no login needed).
func (c *Client) Info(ctx context.Context) (wire.Info, error) {
	var i wire.Info
	err := c.Do(ctx, "GET", "/api/v1/info", nil, &i)
	return i, err
}

// Hosts lists every host.
func (c *Client) Hosts(ctx context.Context) ([]wire.Host, error) {
	var hs []wire.Host
	err := c.Do(ctx, "GET", "/api/v1/hosts", nil, &hs)
	return hs, err
}

// Host gets one host by name; a missing one wraps ErrNotFound.
func (c *Client) Host(ctx context.Context, name string) (wire.Host, error) {
	var h wire.Host
	err := c.Do(ctx, "GET", "/api/v1/hosts/"+url.PathEscape(name), nil, &h)
	return h, err
}

// CreateHost adds a host.
func (c *Client) CreateHost(ctx context.Context, in wire.HostInput) (wire.Host, error) {
	var h wire.Host
	err := c.Do(ctx, "POST", "/api/v1/hosts", in, &h)
	return h, err
}

// UpdateHost replaces the host called name with in (which may rename it).
func (c *Client) UpdateHost(ctx context.Context, name string, in wire.HostInput) (wire.Host, error) {
	var h wire.Host
	err := c.Do(ctx, "PUT", "/api/v1/hosts/"+url.PathEscape(name), in, &h)
	return h, err
}

// DeleteHost removes a host.
func (c *Client) DeleteHost(ctx context.Context, name string) error {
	return c.Do(ctx, "DELETE", "/api/v1/hosts/"+url.PathEscape(name), nil, nil)
}

// Leases lists DHCP leases; q holds the route's filters (e.g. subnet, all).
func (c *Client) Leases(ctx context.Context, q url.Values) ([]wire.Lease, error) {
	var ls []wire.Lease
	err := c.Do(ctx, "GET", "/api/v1/leases?"+q.Encode(), nil, &ls)
	return ls, err
}
