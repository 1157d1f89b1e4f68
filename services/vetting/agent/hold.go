package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	"kiln.dev/kiln/services/vetting/protocol"
)

// HoldRequest is what Options.Hold gets when a failed run holds its host.
type HoldRequest struct {
	Report protocol.Report
	// AuthorizedKey is the run's SSH public key (authorized_keys format):
	// the only key the SSH server may accept.
	AuthorizedKey string
	// Announce tells the orchestrator where the SSH server listens
	// ("10.9.0.50:22") and its host key; call it once the server is up.
	// The agent then repeats it every HoldHeartbeat.
	Announce func(ctx context.Context, addr, hostKey string) error
	// Wait returns nil when the operator released the host (the
	// orchestrator answered 410), or ctx's error.
	Wait func(ctx context.Context) error
}

// holder runs the hold protocol: holding events with the run's event
// numbering, a heartbeat, and the release.
type holder struct {
	q        *eventQueue
	every    time.Duration
	released chan struct{}
	once     sync.Once

	mu            sync.Mutex
	addr, hostKey string // guarded by mu
	started       bool   // guarded by mu
}

func newHolder(q *eventQueue, every time.Duration) *holder {
	if every <= 0 {
		every = protocol.HoldHeartbeat
	}
	return &holder{q: q, every: every, released: make(chan struct{})}
}

// send sends one holding event; a run that is over releases the hold.
func (h *holder) send(ctx context.Context) error {
	h.mu.Lock()
	addr, key := h.addr, h.hostKey
	h.mu.Unlock()
	h.q.add(protocol.Event{Time: h.q.now(), Kind: protocol.EventHolding, Addr: addr, HostKey: key})
	h.q.sendPending(ctx)
	select {
	case <-h.released:
		return nil
	default:
	}
	h.q.mu.Lock()
	unsent := len(h.q.pending) > 0
	h.q.mu.Unlock()
	if unsent {
		return errors.New("the appliance did not take the holding event; retrying")
	}
	return nil
}

func (h *holder) announce(ctx context.Context, addr, hostKey string) error {
	h.mu.Lock()
	h.addr, h.hostKey = addr, hostKey
	start := !h.started
	h.started = true
	h.mu.Unlock()
	err := h.send(ctx)
	if start {
		go h.heartbeat(ctx)
	}
	return err
}

func (h *holder) heartbeat(ctx context.Context) {
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.released:
			return
		case <-t.C:
			if err := h.send(ctx); err != nil {
				h.q.log.Warn("holding heartbeat", "error", err)
			}
		}
	}
}

// release is the event queue's stop while holding.
func (h *holder) release(err error) {
	h.once.Do(func() {
		h.q.log.Info("the operator released the host", "reason", err)
		close(h.released)
	})
}

func (h *holder) wait(ctx context.Context) error {
	select {
	case <-h.released:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
