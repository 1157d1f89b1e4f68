package partitions

// SlotEntry is one root slot and its boot entry as an operator sees them.
// The OTA code (ota/slots) fills it in and the recovery console shows it; it
// lives here, below both, so neither imports the other.
type SlotEntry struct {
	Name Slot
	// Entry is the boot entry's file name, e.g. "kiln-3+2-1.conf"; "" when the
	// slot has no entry (nothing installed, or its install was interrupted).
	Entry   string
	Version string
	// Counting is true when the entry still has a try counter (not yet
	// committed); TriesLeft and TriesDone are then its +left-done numbers.
	Counting  bool
	TriesLeft int
	TriesDone int
}
