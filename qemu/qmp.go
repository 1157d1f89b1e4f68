package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// QMP is a minimal client of the QEMU Machine Protocol: JSON objects, one per
// line, over a stream. It sends one command at a time and records events.
type QMP struct {
	conn net.Conn

	// wmu serialises writes of commands.
	wmu sync.Mutex

	// mu guards every field below.
	mu      sync.Mutex
	nextID  int
	pending map[string]chan qmpReply
	events  []Event
	// eventsChanged is closed and replaced when an event arrives or the
	// connection ends.
	eventsChanged chan struct{}
	// err is set once the connection has ended.
	err error
}

// Event is an asynchronous QMP event such as SHUTDOWN, RESET or WATCHDOG.
type Event struct {
	Name string
	Data json.RawMessage
	At   time.Time
}

// QMPError is an error reply to a QMP command.
type QMPError struct {
	Command, Class, Desc string
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("QMP %s: %s: %s", e.Command, e.Class, e.Desc)
}

// ErrQMPClosed means the QMP connection ended (usually: QEMU exited).
var ErrQMPClosed = errors.New("QMP connection closed")

type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	ID        string          `json:"id"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// NewQMP performs the QMP handshake on conn (greeting, qmp_capabilities) and
// starts reading replies and events. It owns conn from then on.
func NewQMP(ctx context.Context, conn net.Conn) (*QMP, error) {
	q := &QMP{conn: conn, pending: map[string]chan qmpReply{}, eventsChanged: make(chan struct{})}
	r := bufio.NewReader(conn)
	if d, ok := ctx.Deadline(); ok {
		conn.SetReadDeadline(d)
	}
	greeting, err := r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("reading the QMP greeting: %w", err)
	}
	var g struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := json.Unmarshal(greeting, &g); err != nil || g.QMP == nil {
		return nil, fmt.Errorf("reading the QMP greeting: unexpected %q", greeting)
	}
	conn.SetReadDeadline(time.Time{})
	go q.read(r)
	if err := q.Execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *QMP) read(r *bufio.Reader) {
	var err error
	for {
		var line []byte
		line, err = r.ReadBytes('\n')
		if err != nil {
			break
		}
		var m qmpReply
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		q.mu.Lock()
		if m.Event != "" {
			at := time.Now()
			if m.Timestamp != nil {
				at = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*1000)
			}
			q.events = append(q.events, Event{Name: m.Event, Data: m.Data, At: at})
			close(q.eventsChanged)
			q.eventsChanged = make(chan struct{})
		} else if ch, ok := q.pending[m.ID]; ok {
			delete(q.pending, m.ID)
			ch <- m
		}
		q.mu.Unlock()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = ErrQMPClosed
	}
	q.mu.Lock()
	q.err = fmt.Errorf("%w: %v", ErrQMPClosed, err)
	for id, ch := range q.pending {
		delete(q.pending, id)
		close(ch)
	}
	close(q.eventsChanged)
	q.eventsChanged = make(chan struct{})
	q.mu.Unlock()
}

// Execute runs a QMP command with optional arguments and decodes its return
// value into result if result is not nil.
func (q *QMP) Execute(ctx context.Context, command string, args, result any) error {
	q.mu.Lock()
	if q.err != nil {
		err := q.err
		q.mu.Unlock()
		return fmt.Errorf("QMP %s: %w", command, err)
	}
	q.nextID++
	id := strconv.Itoa(q.nextID)
	ch := make(chan qmpReply, 1)
	q.pending[id] = ch
	q.mu.Unlock()

	msg := map[string]any{"execute": command, "id": id}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("QMP %s: encoding arguments: %w", command, err)
	}
	q.wmu.Lock()
	if d, ok := ctx.Deadline(); ok {
		q.conn.SetWriteDeadline(d)
	}
	_, err = q.conn.Write(append(b, '\n'))
	q.conn.SetWriteDeadline(time.Time{})
	q.wmu.Unlock()
	if err != nil {
		q.forget(id)
		return fmt.Errorf("QMP %s: %w", command, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("QMP %s: %w", command, ErrQMPClosed)
		}
		if m.Error != nil {
			return &QMPError{Command: command, Class: m.Error.Class, Desc: m.Error.Desc}
		}
		if result != nil {
			if err := json.Unmarshal(m.Return, result); err != nil {
				return fmt.Errorf("QMP %s: decoding %q: %w", command, m.Return, err)
			}
		}
		return nil
	case <-ctx.Done():
		q.forget(id)
		return fmt.Errorf("QMP %s: %w", command, ctx.Err())
	}
}

func (q *QMP) forget(id string) {
	q.mu.Lock()
	delete(q.pending, id)
	q.mu.Unlock()
}

// Events returns the events received so far.
func (q *QMP) Events() []Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]Event(nil), q.events...)
}

// WaitEvent waits for the first event named name received at or after index
// from (an index into Events) and returns it with its index.
func (q *QMP) WaitEvent(ctx context.Context, name string, from int) (Event, int, error) {
	for {
		q.mu.Lock()
		for i := from; i < len(q.events); i++ {
			if q.events[i].Name == name {
				e := q.events[i]
				q.mu.Unlock()
				return e, i, nil
			}
		}
		changed, err := q.eventsChanged, q.err
		q.mu.Unlock()
		if err != nil {
			return Event{}, 0, fmt.Errorf("waiting for QMP event %s: %w", name, err)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Event{}, 0, fmt.Errorf("waiting for QMP event %s: %w", name, ctx.Err())
		}
	}
}

// Close closes the connection.
func (q *QMP) Close() error { return q.conn.Close() }
