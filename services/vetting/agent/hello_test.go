package agent_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/services/vetting/protocol"
	"kiln.dev/kiln/services/vetting/stages"
)

// TestHelloAddrsAndAssigned: Hello carries the machine's addresses, and the
// live image's Assigned hook sees the assignment (for Assignment.After).
func TestHelloAddrsAndAssigned(t *testing.T) {
	orch := &orchestrator{assignment: protocol.Assignment{After: protocol.AfterReboot}}
	o := serve(t, orch)
	o.Settings = &stages.Profile{Name: "cpu-only", Stages: []string{"cpu"}, CPU: stages.CPU{Duration: 100 * time.Millisecond}}
	o.Addrs = func() []string { return []string{"10.9.0.50/24"} }
	var got protocol.Assignment
	o.Assigned = func(a protocol.Assignment) { got = a }
	if _, err := run(t, o); err != nil {
		t.Fatal(err)
	}
	if got.RunID != "run-7" || got.After != protocol.AfterReboot {
		t.Errorf("Assigned saw %+v, want run-7 with after=reboot", got)
	}
	orch.mu.Lock()
	defer orch.mu.Unlock()
	if orch.hello == nil {
		t.Fatal("no hello")
	}
	if diff := cmp.Diff([]string{"10.9.0.50/24"}, orch.hello.Addrs); diff != "" {
		t.Errorf("Hello.Addrs (-want +got):\n%s", diff)
	}
}
