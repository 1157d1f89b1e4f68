// Package slots owns the A/B slots' state: which boot entries the ESP holds
// (loader/entries, read through espfs), what the OTA state file on the data
// partition recorded about each slot (/data/state/ota/state.json: version,
// generation, phase, last boot result, failed generations, the data
// snapshot), the pure state machine deriving each slot's state from both,
// and the entry operations — write, bless, mark bad, roll back — ordered so
// that a power cut at any point leaves systemd-boot an entry that boots a
// complete slot.
//
// # Slot states
//
//	empty       no entry and nothing recorded
//	incomplete  an install started and did not finish (its entry is gone)
//	installed   an entry with tries left that has not run (boots next if newest)
//	trying      the running slot booted from a counted entry: not committed yet
//	good        a committed entry (no counter)
//	bad         tries used up, health checks failed, or rolled back from
//
// # Entry changes without a moment of nothing
//
// Entries are never renamed in place: a changed entry (blessed, marked bad)
// is first written under its new name (via a temporary name and a rename,
// then the directory is synced), and only then is the old name removed and
// the directory synced again. After a crash the ESP holds the old entry, the
// new one, or both — all of which boot — never neither. Scan tolerates the
// duplicates and Tidy removes them.
//
// Controller implements the recovery console's SlotController and the
// status the API and CLI show.
package slots
