package update

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"kiln.dev/kiln/internal/testlog"
	"kiln.dev/kiln/services/config"
	"kiln.dev/kiln/services/svc"
)

// TestRunIdlesWithoutChannel checks that the service, with nothing to pull
// (no update.channel, or not on an appliance), reports ready and waits for
// the end instead of crash-looping.
func TestRunIdlesWithoutChannel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	env := svc.Env{Config: config.Default(), StateDir: t.TempDir(), RunDir: t.TempDir(), Logger: testlog.New(t, slog.LevelDebug),
		Ready: func() { close(ready) }}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, env) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned %v before it was ready, want it to idle", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not report ready within 30s")
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while its context was live, want it to idle", err)
	default:
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its context ending")
	}
}
