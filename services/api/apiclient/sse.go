package apiclient

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
)

// Event is one Server-Sent Event.
type Event struct {
	ID, Event, Data string
}

// ReadSSE calls fn for each event of r until r ends or fn fails.
func ReadSSE(r io.Reader, fn func(Event) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var e Event
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if e.Event != "" || e.Data != "" {
				if err := fn(e); err != nil {
					return err
				}
			}
			e = Event{}
		case strings.HasPrefix(line, ":"):
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "id":
				e.ID = v
			case "event":
				e.Event = v
			case "data":
				if e.Data != "" {
					e.Data += "\n"
				}
				e.Data += v
			}
		}
	}
	return sc.Err()
}

// Follow reads the event stream at path (first) and then at resume(last
// event id) each time the stream ends (the appliance restarting, the
// network), backing off from 1 s to 30 s between tries, until ctx ends
// (nil), fn fails, or an answer wraps ErrAuth or ErrNotFound. fn sees every
// event; Last-Event-ID carries the last one's id.
func (c *Client) Follow(ctx context.Context, first string, resume func(last string) string, fn func(Event) error) error {
	last := ""
	delay := time.Second
	for {
		path := first
		hdr := http.Header{"Accept": {"text/event-stream"}}
		if last != "" {
			path = resume(last)
			hdr.Set("Last-Event-ID", last)
		}
		var fnErr error
		resp, err := c.Send(ctx, "GET", path, nil, "", hdr)
		if err == nil {
			delay = time.Second
			err = ReadSSE(resp.Body, func(e Event) error {
				if fnErr = fn(e); fnErr != nil {
					return fnErr
				}
				if e.ID != "" {
					last = e.ID
				}
				return nil
			})
			resp.Body.Close()
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case fnErr != nil:
			return fnErr
		case errors.Is(err, ErrAuth), errors.Is(err, ErrNotFound):
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 30*time.Second)
	}
}
