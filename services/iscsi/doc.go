// Package iscsi is kiln's iSCSI target for thin nodes: the kernel's LIO
// target, configured through configfs from Go (no targetcli), exporting
// each host's volumes (sparse files on the data partition) to that host
// alone, with CHAP.
//
// # Desired state
//
// Desired computes the whole LIO state from its Inputs (the database's
// volumes and initiators, the naming authority, the provisioning
// addresses) and nothing else: one target per host that has volumes and an
// initiator record, named Names.Target ("iqn.2026-01.example.hall:node1");
// one TPG (tpgt_1) with CHAP enforced (authentication=1, AuthMethod=CHAP),
// no generated ACLs and discovery limited to the targets that list the
// asking initiator; a portal on every local address inside a provisioning
// subnet (never management); the host's volumes as LUNs 0, 1, … in name
// order, each a fileio backstore "<host>.<volume>" (also its SCSI unit
// serial) with buffered I/O and write-cache emulation; and one ACL for the
// host's initiator IQN with its CHAP secret (mutual CHAP when set).
//
// # Applying
//
// Configfs.Observe reads kiln's part of configfs back into a State: the
// backstores of HBA fileio_3260 and the targets named below kiln's naming
// authority or exporting one of those backstores. Other targets and HBAs
// are the operator's and never touched. Diff turns the observed state into
// the desired one with a Plan of small steps (removals children first,
// then creations parents first, a TPG enabled last); Configfs.Apply runs
// it. Applying the same inputs twice plans nothing, orphans (a deleted
// volume, a host that lost its initiator) are removed, a grown volume is
// resized in place (initiators see it after a rescan) and a moved or
// shrunk one is recreated. Plans print without CHAP secrets.
//
// # Names
//
// CheckIQN enforces RFC 3720 §3.2.6.3.1 in the normalized ASCII form of
// RFC 3722: "iqn." yyyy-mm "." reversed domain [":" unique], lower-case
// letters, digits, '-', '.', ':' only, at most 223 bytes.
package iscsi
