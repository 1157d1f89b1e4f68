package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// fakeQMP is a tiny QMP server: it answers query-status, fails everything else
// it does not know, and emits a SHUTDOWN event on system_powerdown.
func fakeQMP(t *testing.T, conn net.Conn) {
	t.Helper()
	go func() {
		defer conn.Close()
		fmt.Fprintln(conn, `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`)
		r := bufio.NewReader(conn)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var m struct {
				Execute string `json:"execute"`
				ID      string `json:"id"`
			}
			if err := json.Unmarshal(line, &m); err != nil {
				return
			}
			switch m.Execute {
			case "qmp_capabilities":
				fmt.Fprintf(conn, `{"return": {}, "id": %q}`+"\n", m.ID)
			case "query-status":
				fmt.Fprintln(conn, `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RTC_CHANGE", "data": {}}`)
				fmt.Fprintf(conn, `{"return": {"status": "running", "running": true}, "id": %q}`+"\n", m.ID)
			case "system_powerdown":
				fmt.Fprintf(conn, `{"return": {}, "id": %q}`+"\n", m.ID)
				fmt.Fprintln(conn, `{"timestamp": {"seconds": 3, "microseconds": 0}, "event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}`)
			case "quit":
				return // QEMU may close before it answers
			default:
				fmt.Fprintf(conn, `{"error": {"class": "CommandNotFound", "desc": "The command %s has not been found"}, "id": %q}`+"\n", m.Execute, m.ID)
			}
		}
	}()
}

func TestQMP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, server := net.Pipe()
	fakeQMP(t, server)
	q, err := NewQMP(ctx, client)
	if err != nil {
		t.Fatalf("NewQMP() error = %v", err)
	}
	defer q.Close()

	var st struct {
		Status string `json:"status"`
	}
	if err := q.Execute(ctx, "query-status", nil, &st); err != nil || st.Status != "running" {
		t.Fatalf("Execute(query-status) = %+v, %v, want status running", st, err)
	}
	var qe *QMPError
	if err := q.Execute(ctx, "frobnicate", map[string]any{"x": 1}, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("Execute(frobnicate) error = %v, want a CommandNotFound QMPError", err)
	}
	if err := q.Execute(ctx, "system_powerdown", nil, nil); err != nil {
		t.Fatalf("Execute(system_powerdown) error = %v", err)
	}
	ev, i, err := q.WaitEvent(ctx, "SHUTDOWN", 0)
	if err != nil || ev.Name != "SHUTDOWN" || i != 1 || ev.At.Unix() != 3 {
		t.Fatalf("WaitEvent(SHUTDOWN) = %+v, %d, %v, want the second event at t=3", ev, i, err)
	}
	if err := q.Execute(ctx, "quit", nil, nil); !errors.Is(err, ErrQMPClosed) {
		t.Fatalf("Execute(quit) error = %v, want ErrQMPClosed", err)
	}
	if err := q.Execute(ctx, "query-status", nil, nil); !errors.Is(err, ErrQMPClosed) {
		t.Errorf("Execute after close error = %v, want ErrQMPClosed", err)
	}
	if _, _, err := q.WaitEvent(ctx, "RESET", 0); !errors.Is(err, ErrQMPClosed) {
		t.Errorf("WaitEvent after close error = %v, want ErrQMPClosed", err)
	}
}
