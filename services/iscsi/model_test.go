package iscsi

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// model applies p to st the way LIO's configfs would, and panics on a step
// LIO would refuse (removing a backstore still exported, mapping a LUN
// that does not exist, a second backstore of one name).
func model(st State, p Plan) State {
	st = clone(st)
	tgt := func(iqn string) *Target {
		for i := range st.Targets {
			if st.Targets[i].IQN == iqn {
				return &st.Targets[i]
			}
		}
		panic(fmt.Sprintf("no target %s", iqn))
	}
	acl := func(t *Target, ini string) *ACL {
		for i := range t.ACLs {
			if t.ACLs[i].Initiator == ini {
				return &t.ACLs[i]
			}
		}
		panic(fmt.Sprintf("no ACL %s", ini))
	}
	for _, s := range p {
		switch s.Op {
		case OpDelACL:
			t := tgt(s.Target)
			t.ACLs = slices.DeleteFunc(t.ACLs, func(a ACL) bool { return a.Initiator == s.Initiator })
		case OpUnmapLUN:
			a := acl(tgt(s.Target), s.Initiator)
			a.LUNs = slices.DeleteFunc(a.LUNs, func(n int) bool { return n == s.LUN })
		case OpDelLUN:
			t := tgt(s.Target)
			for _, a := range t.ACLs {
				if slices.Contains(a.LUNs, s.LUN) {
					panic(fmt.Sprintf("%s: LUN still mapped for %s", s, a.Initiator))
				}
			}
			t.LUNs = slices.DeleteFunc(t.LUNs, func(l LUN) bool { return l.Index == s.LUN })
		case OpDelPortal:
			t := tgt(s.Target)
			t.Portals = slices.DeleteFunc(t.Portals, func(a netip.AddrPort) bool { return a == s.Portal })
		case OpDelTarget:
			st.Targets = slices.DeleteFunc(st.Targets, func(t Target) bool { return t.IQN == s.Target })
		case OpDelBackstore:
			for _, t := range st.Targets {
				for _, l := range t.LUNs {
					if l.Backstore == s.Backstore {
						panic(fmt.Sprintf("%s: still exported by %s", s, t.IQN))
					}
				}
			}
			st.Backstores = slices.DeleteFunc(st.Backstores, func(b Backstore) bool { return b.Name == s.Backstore })
		case OpAddBackstore:
			if slices.ContainsFunc(st.Backstores, func(b Backstore) bool { return b.Name == s.Backstore }) {
				panic(fmt.Sprintf("%s: exists", s))
			}
			st.Backstores = append(st.Backstores, Backstore{Name: s.Backstore, File: s.File, Size: s.Size, Serial: s.Serial})
		case OpResize:
			i := slices.IndexFunc(st.Backstores, func(b Backstore) bool { return b.Name == s.Backstore })
			st.Backstores[i].Size = s.Size
		case OpAddTarget:
			st.Targets = append(st.Targets, Target{IQN: s.Target})
		case OpSetAttrib:
			t := tgt(s.Target)
			if t.Attrib == nil {
				t.Attrib = map[string]string{}
			}
			t.Attrib[s.Key] = s.Value
		case OpSetParam:
			t := tgt(s.Target)
			if t.Param == nil {
				t.Param = map[string]string{}
			}
			t.Param[s.Key] = s.Value
		case OpAddPortal:
			t := tgt(s.Target)
			t.Portals = append(t.Portals, s.Portal)
		case OpAddLUN:
			if !slices.ContainsFunc(st.Backstores, func(b Backstore) bool { return b.Name == s.Backstore }) {
				panic(fmt.Sprintf("%s: no such backstore", s))
			}
			t := tgt(s.Target)
			t.LUNs = slices.DeleteFunc(t.LUNs, func(l LUN) bool { return l.Index == s.LUN })
			t.LUNs = append(t.LUNs, LUN{Index: s.LUN, Backstore: s.Backstore})
		case OpAddACL:
			t := tgt(s.Target)
			t.ACLs = append(t.ACLs, ACL{Initiator: s.Initiator})
		case OpSetCHAP:
			acl(tgt(s.Target), s.Initiator).CHAP = s.CHAP
		case OpMapLUN:
			t := tgt(s.Target)
			if !slices.ContainsFunc(t.LUNs, func(l LUN) bool { return l.Index == s.LUN }) {
				panic(fmt.Sprintf("%s: no such LUN", s))
			}
			a := acl(t, s.Initiator)
			if !slices.Contains(a.LUNs, s.LUN) {
				a.LUNs = append(a.LUNs, s.LUN)
			}
		case OpEnable:
			tgt(s.Target).Enabled = true
		default:
			panic("unknown op " + string(s.Op))
		}
	}
	st.sort()
	return st
}

func clone(st State) State {
	st.Backstores = slices.Clone(st.Backstores)
	st.Targets = slices.Clone(st.Targets)
	for i := range st.Targets {
		t := &st.Targets[i]
		t.Portals = slices.Clone(t.Portals)
		t.LUNs = slices.Clone(t.LUNs)
		t.Attrib = maps.Clone(t.Attrib)
		t.Param = maps.Clone(t.Param)
		t.ACLs = slices.Clone(t.ACLs)
		for j := range t.ACLs {
			t.ACLs[j].LUNs = slices.Clone(t.ACLs[j].LUNs)
		}
	}
	return st
}
