package partitions

import "testing"

func TestLayoutIsContiguousAndAligned(t *testing.T) {
	l := Layout()
	if bios := l[0]; bios.Role != RoleBIOS || bios.Start != 40*SectorSize || bios.End() != FirstLBAByte || bios.Index != 5 {
		t.Errorf("first partition %+v, want the BIOS boot partition (index 5) from sector 40 to 1 MiB", bios)
	}
	prev := uint64(FirstLBAByte)
	for _, p := range l[1:] {
		if p.Start != prev {
			t.Errorf("partition %d starts at %d, want %d", p.Index, p.Start, prev)
		}
		if p.Start%mib != 0 || p.Size%mib != 0 {
			t.Errorf("partition %d is not MiB-aligned: start %d size %d", p.Index, p.Start, p.Size)
		}
		prev = p.End()
	}
}

func TestPartUUIDDiffersPerApplianceAndRole(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"kiln-dev", "rack-7"} {
		for _, p := range Layout() {
			u := PartUUID(id, p.Role)
			key := id + "/" + string(p.Role)
			if other, ok := seen[u]; ok {
				t.Errorf("PartUUID(%s) = %s, same as %s", key, u, other)
			}
			seen[u] = key
			if u != PartUUID(id, p.Role) {
				t.Errorf("PartUUID(%s) is not stable", key)
			}
			if len(u) != 36 || u[14] != '5' {
				t.Errorf("PartUUID(%s) = %s, want a version-5-shaped UUID", key, u)
			}
		}
	}
}
