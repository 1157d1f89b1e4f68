package slots

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"kiln.dev/kiln/ota/bootentry"
	"kiln.dev/kiln/partitions"
)

const (
	uuidA = "AAAAAAAA-0000-5000-8000-000000000001"
	uuidB = "BBBBBBBB-0000-5000-8000-000000000002"
)

var (
	a  = partitions.SlotA
	b  = partitions.SlotB
	t0 = time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)
)

// ent builds an entry; counter "" is committed, else "L-D".
func ent(gen int, s partitions.Slot, counter string) bootentry.Entry {
	e := bootentry.Entry{Generation: gen, Slot: s, Version: fmt.Sprintf("v%d", gen), RootUUID: uuidA}
	if s == b {
		e.RootUUID = uuidB
	}
	if counter != "" {
		var l, d int
		fmt.Sscanf(counter, "%d-%d", &l, &d)
		e.Counter = &bootentry.Counter{Left: l, Done: d}
	}
	return e
}

func TestDerive(t *testing.T) {
	failed2 := Record{Failed: []Failure{{Generation: 2, Reason: "health"}}}
	tests := []struct {
		name    string
		running partitions.Slot
		entries []bootentry.Entry
		rec     Record
		want    [2]State
		next    partitions.Slot
	}{
		{"fresh image", a, []bootentry.Entry{ent(1, a, "")}, Record{}, [2]State{StateGood, StateEmpty}, a},
		{"install under way", a, []bootentry.Entry{ent(1, a, "")},
			Record{Slots: map[partitions.Slot]SlotRecord{b: {Generation: 2, Phase: PhaseInstalling}}}, [2]State{StateGood, StateIncomplete}, a},
		{"installed, reboot pending", a, []bootentry.Entry{ent(1, a, ""), ent(2, b, "3-0")}, Record{}, [2]State{StateGood, StateInstalled}, b},
		{"first boot of the update", b, []bootentry.Entry{ent(1, a, ""), ent(2, b, "2-1")}, Record{}, [2]State{StateGood, StateTrying}, b},
		{"update committed", b, []bootentry.Entry{ent(1, a, ""), ent(2, b, "")}, Record{}, [2]State{StateGood, StateGood}, b},
		{"tries used up", a, []bootentry.Entry{ent(1, a, ""), ent(2, b, "0-3")}, Record{}, [2]State{StateGood, StateBad}, a},
		{"failed health, mark-bad interrupted", a, []bootentry.Entry{ent(1, a, ""), ent(2, b, "1-2")}, failed2, [2]State{StateGood, StateBad}, b},
		{"rolled back from a committed update", a, []bootentry.Entry{ent(1, a, ""), ent(2, b, "0-0")}, failed2, [2]State{StateGood, StateBad}, a},
		// systemd-boot sorts the counted name first; Tidy removes it at boot.
		{"duplicate after an interrupted bless", b, []bootentry.Entry{ent(1, a, ""), ent(2, b, "2-1"), ent(2, b, "")}, Record{}, [2]State{StateGood, StateTrying}, b},
		{"no entries at all", a, nil, Record{}, [2]State{StateEmpty, StateEmpty}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Derive(tt.running, tt.entries, tt.rec)
			states := [2]State{got[0].State, got[1].State}
			if states != tt.want {
				t.Errorf("Derive(%s, %v) states = %v, want %v", tt.running, names(tt.entries), states, tt.want)
			}
			var next partitions.Slot
			for _, s := range got {
				if s.Next {
					next = s.Name
				}
				if s.Running != (s.Name == tt.running) {
					t.Errorf("slot %s Running = %v", s.Name, s.Running)
				}
			}
			if next != tt.next {
				t.Errorf("Derive(%v) next = %q, want %q", names(tt.entries), next, tt.next)
			}
		})
	}
}

func names(es []bootentry.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, string(e.Slot)+":"+e.FileName())
	}
	return out
}

func TestOnBoot(t *testing.T) {
	installedB := Record{Slots: map[partitions.Slot]SlotRecord{a: {Generation: 1, Phase: PhaseGood, LastBoot: "good"}, b: {Generation: 2, Version: "v2", Phase: PhaseInstalled}}}
	tests := []struct {
		name      string
		running   partitions.Slot
		entries   []bootentry.Entry
		rec       Record
		wantTrial bool
		wantFell  bool
		wantPhase map[partitions.Slot]Phase
		wantFail  []int
	}{
		{name: "first boot of a fresh image", running: a, entries: []bootentry.Entry{ent(1, a, "")},
			wantPhase: map[partitions.Slot]Phase{a: PhaseGood}},
		{name: "trial boot of the update", running: b, entries: []bootentry.Entry{ent(1, a, ""), ent(2, b, "2-1")}, rec: installedB,
			wantTrial: true, wantPhase: map[partitions.Slot]Phase{a: PhaseGood, b: PhaseTrying}},
		{name: "fell back by boot counting", running: a, entries: []bootentry.Entry{ent(1, a, ""), ent(2, b, "0-3")}, rec: installedB,
			wantFell: true, wantPhase: map[partitions.Slot]Phase{a: PhaseGood, b: PhaseBad}, wantFail: []int{2}},
		{name: "fell back while trying", running: a, entries: []bootentry.Entry{ent(1, a, ""), ent(2, b, "0-3")},
			rec:      Record{Slots: map[partitions.Slot]SlotRecord{b: {Generation: 2, Phase: PhaseTrying}}},
			wantFell: true, wantPhase: map[partitions.Slot]Phase{a: PhaseGood, b: PhaseBad}, wantFail: []int{2}},
		{name: "already recorded as failed by health", running: a, entries: []bootentry.Entry{ent(1, a, ""), ent(2, b, "0-1")},
			rec:       Record{Slots: map[partitions.Slot]SlotRecord{b: {Generation: 2, Phase: PhaseBad}}, Failed: []Failure{{Generation: 2}}},
			wantPhase: map[partitions.Slot]Phase{a: PhaseGood, b: PhaseBad}, wantFail: []int{2}},
		{name: "update still pending (not rebooted)", running: a, entries: []bootentry.Entry{ent(1, a, ""), ent(2, b, "3-0")}, rec: installedB,
			wantPhase: map[partitions.Slot]Phase{a: PhaseGood, b: PhaseInstalled}},
		{name: "bad entry of an older, unrelated generation", running: b, entries: []bootentry.Entry{ent(3, a, "0-3"), ent(2, b, "")},
			rec:       Record{Slots: map[partitions.Slot]SlotRecord{a: {Generation: 1, Phase: PhaseGood}}},
			wantPhase: map[partitions.Slot]Phase{a: PhaseGood, b: PhaseGood}},
		{name: "no entry for the running slot", running: b, entries: []bootentry.Entry{ent(1, a, "")},
			wantPhase: map[partitions.Slot]Phase{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, res := OnBoot(tt.rec, tt.running, tt.entries, t0)
			if res.Trial != tt.wantTrial || (res.FellBack != nil) != tt.wantFell {
				t.Errorf("OnBoot(%s, %v) = trial %v fellBack %v, want %v %v", tt.running, names(tt.entries), res.Trial, res.FellBack, tt.wantTrial, tt.wantFell)
			}
			phases := map[partitions.Slot]Phase{}
			for s, r := range got.Slots {
				phases[s] = r.Phase
			}
			if diff := cmp.Diff(tt.wantPhase, phases); diff != "" {
				t.Errorf("OnBoot phases (-want +got):\n%s", diff)
			}
			var fails []int
			for _, f := range got.Failed {
				fails = append(fails, f.Generation)
			}
			if diff := cmp.Diff(tt.wantFail, fails); diff != "" {
				t.Errorf("OnBoot failures (-want +got):\n%s", diff)
			}
			// OnBoot is idempotent: a second call changes nothing more.
			again, res2 := OnBoot(got, tt.running, tt.entries, t0)
			if diff := cmp.Diff(got, again); diff != "" || res2.FellBack != nil {
				t.Errorf("OnBoot twice differs (-first +second):\n%s (fellBack %v)", diff, res2.FellBack)
			}
		})
	}
}

// TestLifecycle walks one update through the state machine end to end.
func TestLifecycle(t *testing.T) {
	var r Record
	entries := []bootentry.Entry{ent(1, a, "")}
	r, _ = OnBoot(r, a, entries, t0)
	r = Installing(r, b, "v2", 2, t0)
	if s := Derive(a, entries, r); s[1].State != StateIncomplete {
		t.Fatalf("during install: slot b %s, want incomplete", s[1].State)
	}
	entries = append(entries, ent(2, b, "3-0"))
	r = Installed(r, b, "v2", 2, 3, t0)
	if s := Derive(a, entries, r); s[1].State != StateInstalled || !s[1].Next {
		t.Fatalf("after install: slot b %+v, want installed and next", s[1])
	}
	entries[1] = entries[1].Attempted() // systemd-boot picks it
	r, res := OnBoot(r, b, entries, t0)
	if !res.Trial {
		t.Fatal("first boot of b is not a trial")
	}
	r = Passed(r, b, entries[1], t0)
	entries[1] = entries[1].Blessed()
	s := Derive(b, entries, r)
	if s[1].State != StateGood || s[1].LastBoot == "" || s[0].State != StateGood {
		t.Fatalf("after commit: %+v", s)
	}
	// Generation 3 fails its health checks.
	r = Installed(r, a, "v3", 3, 3, t0)
	entries[0] = ent(3, a, "2-1")
	r, _ = OnBoot(r, a, entries, t0)
	r = Failed(r, a, entries[0], "service dhcp not ready", t0)
	entries[0] = ent(3, a, "0-1")
	r, res = OnBoot(r, b, entries, t0)
	if res.Trial || res.FellBack != nil {
		t.Fatalf("boot after a recorded health failure: %+v", res)
	}
	if _, ok := r.FailedGeneration(3); !ok {
		t.Fatal("generation 3 not recorded as failed")
	}
	s = Derive(b, entries, r)
	if s[0].State != StateBad || s[0].LastBoot != "failed: service dhcp not ready" || !s[1].Next {
		t.Fatalf("after failure: %+v", s)
	}
}
