// Package pull checks an update channel on the operator's schedule and
// installs what it offers, through the same installer as a push. Every
// appliance checks once per period at its own fixed offset (a hash of its
// identity), so a fleet on one channel spreads its downloads and reboots
// over the whole period instead of updating all at once. A generation that
// failed (or was rolled back from) is never installed again on its own.
//
// The channel is a small JSON index:
//
//	{"compatible": "kiln-x86_64", "version": "2.1.0", "generation": 7,
//	 "url": "kiln-2.1.0.bundle"}
//
// url is absolute or relative to the index. The bundle itself carries the
// signature; the index is only a hint of what to fetch.
package pull

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"kiln.dev/kiln/ota/install"
	"kiln.dev/kiln/ota/stall"
)

// Index is the channel's JSON document.
type Index struct {
	Compatible string `json:"compatible"`
	Version    string `json:"version"`
	Generation int    `json:"generation"`
	URL        string `json:"url"`
}

// Offset returns the appliance's fixed offset within period, from its id.
func Offset(id string, period time.Duration) time.Duration {
	if period <= 0 {
		return 0
	}
	sum := sha256.Sum256([]byte("kiln/ota/pull/" + id))
	return time.Duration(binary.BigEndian.Uint64(sum[:8]) % uint64(period))
}

// Next returns the first check time strictly after now: the times are the
// multiples of period (counted from the Unix epoch) plus offset.
func Next(now time.Time, period, offset time.Duration) time.Time {
	n := now.UnixNano()
	p := int64(period)
	base := n - n%p // the start of the current period
	t := base + int64(offset)
	if t <= n {
		t += p
	}
	return time.Unix(0, t).In(now.Location())
}

// DefaultDeadlines: a bundle is a few hundred MB; a channel that sends
// nothing for two minutes, or takes two hours, is not going to finish.
var DefaultDeadlines = stall.Deadlines{Idle: 2 * time.Minute, Overall: 2 * time.Hour}

// Installer installs a bundle (*install.Installer).
type Installer interface {
	Install(ctx context.Context, r io.Reader, req install.Request) (install.Result, error)
}

// Puller checks one channel.
type Puller struct {
	// Channel is the index URL; Period the schedule; ID the appliance's
	// identity (hashed into the offset).
	Channel string
	Period  time.Duration
	ID      string
	// Compatible is the appliance's compatible string.
	Compatible string
	// Running returns the running generation; Failed reports a generation
	// that failed before.
	Running func() (int, error)
	Failed  func(gen int) bool
	// Installer installs what the channel offers.
	Installer Installer
	// Reboot is called after a successful install (nil: no reboot).
	Reboot func() error
	// Client fetches index and bundle (a default with timeouts if nil).
	Client *http.Client
	// Deadlines bound the bundle's download (DefaultDeadlines if zero): a
	// stalled channel fails the install, which releases the update lock.
	Deadlines stall.Deadlines
	// Now and After are the clock (time.Now and time.After if nil).
	Now   func() time.Time
	After func(time.Duration) <-chan time.Time
	Log   *slog.Logger
}

func (p *Puller) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log.With("component", "ota-pull")
}

func (p *Puller) client() *http.Client {
	if p.Client != nil {
		return p.Client
	}
	return &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSHandshakeTimeout: 30 * time.Second, ResponseHeaderTimeout: time.Minute,
	}}
}

// Run checks the channel at every scheduled time until ctx ends.
func (p *Puller) Run(ctx context.Context) error {
	now, after := p.Now, p.After
	if now == nil {
		now = time.Now
	}
	if after == nil {
		after = time.After
	}
	off := Offset(p.ID, p.Period)
	for {
		at := Next(now(), p.Period, off)
		p.log().Info("next update check", "at", at.UTC().Format(time.RFC3339), "channel", p.Channel)
		select {
		case <-ctx.Done():
			return nil
		case <-after(at.Sub(now())):
		}
		installed, err := p.CheckOnce(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.log().Warn("update check failed; trying again at the next scheduled time", "err", err)
			continue
		}
		if installed && p.Reboot != nil {
			p.log().Info("rebooting into the new version")
			if err := p.Reboot(); err != nil {
				p.log().Error("asking for a reboot", "err", err)
			}
		}
	}
}

// CheckOnce fetches the index and installs the offered bundle when it is
// newer, compatible and did not fail before. It reports whether it installed.
func (p *Puller) CheckOnce(ctx context.Context) (bool, error) {
	idx, base, err := p.index(ctx)
	if err != nil {
		return false, err
	}
	log := p.log().With("version", idx.Version, "generation", idx.Generation)
	if idx.Compatible != p.Compatible {
		log.Warn("the channel offers a bundle for another kind of appliance; ignoring it", "compatible", idx.Compatible, "want", p.Compatible)
		return false, nil
	}
	running, err := p.Running()
	if err != nil {
		return false, err
	}
	if idx.Generation <= running {
		log.Info("up to date", "running_generation", running)
		return false, nil
	}
	if p.Failed != nil && p.Failed(idx.Generation) {
		log.Warn("the channel offers a generation that failed here before; not installing it again on its own (push it to retry)")
		return false, nil
	}
	u, err := base.Parse(idx.URL)
	if err != nil {
		return false, fmt.Errorf("channel index url %q: %w", idx.URL, err)
	}
	d := p.Deadlines
	if d == (stall.Deadlines{}) {
		d = DefaultDeadlines
	}
	tr := stall.Watch(ctx, d, nil) // cancelling the request's context ends a blocked read
	defer tr.Stop()
	req, err := http.NewRequestWithContext(tr.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err
	}
	resp, err := p.client().Do(req)
	if err != nil {
		return false, fmt.Errorf("downloading the bundle: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("downloading the bundle %s: %s", u, resp.Status)
	}
	log.Info("installing from the channel", "url", u.String())
	if _, err := p.Installer.Install(tr.Context(), tr.Reader(resp.Body), install.Request{Source: u.String()}); err != nil {
		return false, fmt.Errorf("installing %s: %w", u, err)
	}
	return true, nil
}

func (p *Puller) index(ctx context.Context) (Index, *url.URL, error) {
	base, err := url.Parse(p.Channel)
	if err != nil {
		return Index{}, nil, fmt.Errorf("update.channel %q: %w", p.Channel, err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Channel, nil)
	if err != nil {
		return Index{}, nil, err
	}
	resp, err := p.client().Do(req)
	if err != nil {
		return Index{}, nil, fmt.Errorf("fetching the channel index: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Index{}, nil, fmt.Errorf("fetching the channel index %s: %s", p.Channel, resp.Status)
	}
	var idx Index
	dec := json.NewDecoder(io.LimitReader(resp.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&idx); err != nil {
		return Index{}, nil, fmt.Errorf("the channel index %s is not valid: %w", p.Channel, err)
	}
	if idx.Generation < 1 || idx.URL == "" {
		return Index{}, nil, errors.New("the channel index lacks a generation or a url")
	}
	return idx, base, nil
}
