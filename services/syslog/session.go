package syslog

import (
	"strings"
	"time"

	"kiln.dev/kiln/services/store"
)

// SessionGap is the quiet time after which a DHCP offer starts a new boot
// session even when it does not come from boot firmware: a machine booting
// from disk asks DHCP once per boot, from its OS.
const SessionGap = 10 * time.Minute

// sessionLookback is how many of a MAC's offers SessionStart is given: one
// boot makes at most three (firmware PXE, iPXE, the OS), a retrying one a
// few more.
const sessionLookback = 16

// SessionStart returns the boot session the newest of offers (a MAC's
// dhcp_offer events, newest first) belongs to: the id of the offer that
// started that boot, 0 when there is none.
//
// One network boot makes several offers (firmware PXE, then iPXE, then the
// booted OS), and they must all be one session. So a session starts at an
// offer to boot firmware (a PXE or HTTP boot client that is not iPXE), or
// at any offer that follows the one before it by SessionGap or more; the
// offers in between continue it.
func SessionStart(offers []store.BootEvent) int64 {
	for i, o := range offers {
		if firmwareBoot(o.Detail) || i+1 == len(offers) || o.Time.Sub(offers[i+1].Time) >= SessionGap {
			return o.ID
		}
	}
	return 0
}

// firmwareBoot reports whether an offer's detail (written by the dhcp
// service: "arch=N" for a network boot client, "ipxe" for iPXE) is an
// answer to boot firmware, the first step of a network boot.
func firmwareBoot(detail string) bool {
	words := strings.Fields(detail)
	arch, ipxe := false, false
	for _, w := range words {
		arch = arch || strings.HasPrefix(w, "arch=")
		ipxe = ipxe || w == "ipxe"
	}
	return arch && !ipxe
}
