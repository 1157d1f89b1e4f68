package iscsi

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Op is what a plan step does.
type Op string

// Plan steps. Removals come first, children before parents; then
// creations, parents before children; a TPG is enabled last.
const (
	OpDelACL       Op = "del-acl"       // remove Target's ACL for Initiator (its mapped LUNs first)
	OpUnmapLUN     Op = "unmap-lun"     // remove LUN from Initiator's ACL
	OpDelLUN       Op = "del-lun"       // remove Target's LUN
	OpDelPortal    Op = "del-portal"    // remove Target's Portal
	OpDelTarget    Op = "del-target"    // remove Target and everything below it
	OpDelBackstore Op = "del-backstore" // remove Backstore (its file stays)
	OpAddBackstore Op = "add-backstore" // create Backstore on File with Size and Serial, enable it
	OpResize       Op = "resize"        // set Backstore's size to Size (online grow)
	OpAddTarget    Op = "add-target"    // create Target with its TPG, not enabled
	OpSetAttrib    Op = "set-attrib"    // set TPG attribute Key to Value
	OpSetParam     Op = "set-param"     // set TPG parameter Key to Value
	OpAddPortal    Op = "add-portal"    // listen on Portal
	OpAddLUN       Op = "add-lun"       // export Backstore as LUN
	OpAddACL       Op = "add-acl"       // admit Initiator
	OpSetCHAP      Op = "set-chap"      // set Initiator's CHAP credentials
	OpMapLUN       Op = "map-lun"       // map LUN into Initiator's ACL
	OpEnable       Op = "enable"        // enable Target's TPG
)

// Step is one change.
type Step struct {
	Op        Op
	Target    string
	Backstore string
	File      string
	Size      int64
	Serial    string
	Portal    netip.AddrPort
	LUN       int
	Initiator string
	Key       string
	Value     string
	CHAP      CHAP
}

// String describes s for logs and goldens; CHAP secrets are never shown.
func (s Step) String() string {
	switch s.Op {
	case OpDelBackstore:
		return fmt.Sprintf("%s %s", s.Op, s.Backstore)
	case OpAddBackstore:
		return fmt.Sprintf("%s %s file %s size %d serial %s", s.Op, s.Backstore, s.File, s.Size, s.Serial)
	case OpResize:
		return fmt.Sprintf("%s %s size %d", s.Op, s.Backstore, s.Size)
	case OpDelTarget, OpAddTarget, OpEnable:
		return fmt.Sprintf("%s %s", s.Op, s.Target)
	case OpSetAttrib, OpSetParam:
		return fmt.Sprintf("%s %s %s=%s", s.Op, s.Target, s.Key, s.Value)
	case OpDelPortal, OpAddPortal:
		return fmt.Sprintf("%s %s %s", s.Op, s.Target, s.Portal)
	case OpDelLUN:
		return fmt.Sprintf("%s %s lun %d", s.Op, s.Target, s.LUN)
	case OpAddLUN:
		return fmt.Sprintf("%s %s lun %d %s", s.Op, s.Target, s.LUN, s.Backstore)
	case OpDelACL, OpAddACL:
		return fmt.Sprintf("%s %s %s", s.Op, s.Target, s.Initiator)
	case OpUnmapLUN, OpMapLUN:
		return fmt.Sprintf("%s %s %s lun %d", s.Op, s.Target, s.Initiator, s.LUN)
	case OpSetCHAP:
		mutual := "one-way"
		if s.CHAP.MutualUserID != "" {
			mutual = "mutual " + s.CHAP.MutualUserID
		}
		return fmt.Sprintf("%s %s %s user %s (%s)", s.Op, s.Target, s.Initiator, s.CHAP.UserID, mutual)
	}
	return string(s.Op)
}

// Plan is the ordered list of steps that turns one State into another;
// empty when they agree.
type Plan []Step

func (p Plan) String() string {
	var b strings.Builder
	for _, s := range p {
		b.WriteString(s.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Diff returns the steps that turn have into want. A backstore whose file
// changed, or that shrank, is recreated (after the LUNs using it are
// removed); one that grew is resized in place, which initiators see after
// a rescan. A LUN pointing at another backstore is re-added.
func Diff(have, want State) Plan {
	var del, add Plan
	haveB := index(have.Backstores, func(b Backstore) string { return b.Name })
	wantB := index(want.Backstores, func(b Backstore) string { return b.Name })
	// recreate: backstores that must be removed and made again.
	recreate := map[string]bool{}
	for name, w := range wantB {
		if h, ok := haveB[name]; ok && (h.File != w.File || h.Size > w.Size || h.Serial != w.Serial) {
			recreate[name] = true
		}
	}
	haveT := index(have.Targets, func(t Target) string { return t.IQN })
	for _, h := range have.Targets {
		w, ok := indexOf(want.Targets, h.IQN)
		if !ok {
			del = append(del, Step{Op: OpDelTarget, Target: h.IQN})
			continue
		}
		del = append(del, diffTargetRemovals(h, w, recreate)...)
	}
	for _, h := range have.Backstores {
		if _, ok := wantB[h.Name]; !ok || recreate[h.Name] {
			del = append(del, Step{Op: OpDelBackstore, Backstore: h.Name})
		}
	}
	for _, w := range want.Backstores {
		h, ok := haveB[w.Name]
		switch {
		case !ok || recreate[w.Name]:
			add = append(add, Step{Op: OpAddBackstore, Backstore: w.Name, File: w.File, Size: w.Size, Serial: w.Serial})
		case h.Size != w.Size:
			add = append(add, Step{Op: OpResize, Backstore: w.Name, Size: w.Size})
		}
	}
	for _, w := range want.Targets {
		h, ok := haveT[w.IQN]
		if !ok {
			h = Target{IQN: w.IQN}
			add = append(add, Step{Op: OpAddTarget, Target: w.IQN})
		}
		add = append(add, diffTargetAdditions(h, w, recreate)...)
	}
	return append(del, add...)
}

// lunKept reports whether have's LUN survives into want unchanged.
func lunKept(h LUN, w Target, recreate map[string]bool) bool {
	return slices.Contains(w.LUNs, h) && !recreate[h.Backstore]
}

func diffTargetRemovals(h, w Target, recreate map[string]bool) Plan {
	var p Plan
	removedLUN := map[int]bool{}
	for _, l := range h.LUNs {
		if !lunKept(l, w, recreate) {
			removedLUN[l.Index] = true
		}
	}
	for _, ha := range h.ACLs {
		wa, ok := aclOf(w.ACLs, ha.Initiator)
		if !ok {
			p = append(p, Step{Op: OpDelACL, Target: h.IQN, Initiator: ha.Initiator})
			continue
		}
		for _, l := range ha.LUNs {
			if removedLUN[l] || !slices.Contains(wa.LUNs, l) {
				p = append(p, Step{Op: OpUnmapLUN, Target: h.IQN, Initiator: ha.Initiator, LUN: l})
			}
		}
	}
	for _, l := range h.LUNs {
		if removedLUN[l.Index] {
			p = append(p, Step{Op: OpDelLUN, Target: h.IQN, LUN: l.Index})
		}
	}
	for _, a := range h.Portals {
		if !slices.Contains(w.Portals, a) {
			p = append(p, Step{Op: OpDelPortal, Target: h.IQN, Portal: a})
		}
	}
	return p
}

func diffTargetAdditions(h, w Target, recreate map[string]bool) Plan {
	var p Plan
	for _, k := range slices.Sorted(maps.Keys(w.Attrib)) {
		if h.Attrib[k] != w.Attrib[k] {
			p = append(p, Step{Op: OpSetAttrib, Target: w.IQN, Key: k, Value: w.Attrib[k]})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(w.Param)) {
		if h.Param[k] != w.Param[k] {
			p = append(p, Step{Op: OpSetParam, Target: w.IQN, Key: k, Value: w.Param[k]})
		}
	}
	for _, a := range w.Portals {
		if !slices.Contains(h.Portals, a) {
			p = append(p, Step{Op: OpAddPortal, Target: w.IQN, Portal: a})
		}
	}
	for _, l := range w.LUNs {
		if !slices.Contains(h.LUNs, l) || recreate[l.Backstore] {
			p = append(p, Step{Op: OpAddLUN, Target: w.IQN, LUN: l.Index, Backstore: l.Backstore})
		}
	}
	keptLUN := func(n int) bool {
		i := slices.IndexFunc(h.LUNs, func(l LUN) bool { return l.Index == n })
		return i >= 0 && lunKept(h.LUNs[i], w, recreate)
	}
	for _, wa := range w.ACLs {
		ha, ok := aclOf(h.ACLs, wa.Initiator)
		if !ok {
			p = append(p, Step{Op: OpAddACL, Target: w.IQN, Initiator: wa.Initiator})
		}
		if ha.CHAP != wa.CHAP {
			p = append(p, Step{Op: OpSetCHAP, Target: w.IQN, Initiator: wa.Initiator, CHAP: wa.CHAP})
		}
		for _, l := range wa.LUNs {
			if !slices.Contains(ha.LUNs, l) || !keptLUN(l) {
				p = append(p, Step{Op: OpMapLUN, Target: w.IQN, Initiator: wa.Initiator, LUN: l})
			}
		}
	}
	if w.Enabled && !h.Enabled {
		p = append(p, Step{Op: OpEnable, Target: w.IQN})
	}
	return p
}

func aclOf(acls []ACL, initiator string) (ACL, bool) {
	i := slices.IndexFunc(acls, func(a ACL) bool { return a.Initiator == initiator })
	if i < 0 {
		return ACL{}, false
	}
	return acls[i], true
}

func indexOf(ts []Target, iqn string) (Target, bool) {
	i := slices.IndexFunc(ts, func(t Target) bool { return t.IQN == iqn })
	if i < 0 {
		return Target{}, false
	}
	return ts[i], true
}

func index[T any](xs []T, key func(T) string) map[string]T {
	m := make(map[string]T, len(xs))
	for _, x := range xs {
		m[key(x)] = x
	}
	return m
}
