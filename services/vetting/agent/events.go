package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/stages"
)

// eventQueue numbers events and sends them in batches from its own
// goroutine, so a slow network never stalls a stage. Consecutive progress
// events of a stage are coalesced while unsent; other events are never
// dropped.
type eventQueue struct {
	client *protocol.Client
	now    func() time.Time
	log    *slog.Logger
	// stop ends the run when the orchestrator says it is over.
	stop func(error)
	// wake has room for one pending signal.
	wake chan struct{}

	mu sync.Mutex
	// seq and pending are guarded by mu.
	seq     int64
	pending []protocol.Event
}

func newEventQueue(c *protocol.Client, now func() time.Time, log *slog.Logger, stop func(error)) *eventQueue {
	return &eventQueue{client: c, now: now, log: log, stop: stop, wake: make(chan struct{}, 1)}
}

func (q *eventQueue) add(e protocol.Event) {
	q.mu.Lock()
	if n := len(q.pending); n > 0 && e.Kind == protocol.EventStageProgress {
		if last := &q.pending[n-1]; last.Kind == e.Kind && last.Stage == e.Stage {
			seq := last.Seq
			*last = e
			last.Seq = seq
			q.mu.Unlock()
			return
		}
	}
	q.seq++
	e.Seq = q.seq
	q.pending = append(q.pending, e)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// stage is the stages.Runner's Emit.
func (q *eventQueue) stage(e stages.Event) {
	q.add(protocol.Event{Time: e.Time, Kind: protocol.EventKind(e.Kind), Stage: e.Stage, Fraction: e.Fraction,
		Note: e.Note, Timeout: e.Timeout, Result: e.Result})
}

func (q *eventQueue) note(msg string) {
	q.add(protocol.Event{Time: q.now(), Kind: protocol.EventNote, Note: msg})
}

// run sends batches until ctx ends, then closes done. Batches are at least
// 250 ms apart so a chatty stage costs few requests.
func (q *eventQueue) run(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		q.sendPending(ctx)
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// sendPending sends what is queued; on a failed send the events go back to
// the front of the queue (their Seq lets the orchestrator drop duplicates).
func (q *eventQueue) sendPending(ctx context.Context) {
	q.mu.Lock()
	batch := q.pending
	q.pending = nil
	q.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	err := q.client.Send(ctx, &protocol.Events{Events: batch})
	if err != nil {
		q.mu.Lock()
		q.pending = append(batch, q.pending...)
		q.mu.Unlock()
	}
	switch {
	case errors.Is(err, protocol.ErrGone) || errors.Is(err, protocol.ErrRefused):
		q.log.Warn("the orchestrator ended the run", "error", err)
		q.stop(err)
	case err != nil && ctx.Err() == nil:
		q.log.Warn("sending events", "error", err)
	}
}

// flush sends everything queued before ctx ends; call it after run has
// returned, so batches stay in order.
func (q *eventQueue) flush(ctx context.Context) {
	for ctx.Err() == nil {
		q.mu.Lock()
		empty := len(q.pending) == 0
		q.mu.Unlock()
		if empty {
			return
		}
		q.sendPending(ctx)
		if ctx.Err() == nil {
			q.mu.Lock()
			failed := len(q.pending) > 0
			q.mu.Unlock()
			if failed {
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}
}
