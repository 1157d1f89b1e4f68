// Package dns is kiln's DNS service: authoritative for the site zone and the
// reverse zones of the provisioning subnets, a caching forwarder for every
// other name.
//
// # Zone
//
// The zone is built by a pure function (BuildZone) from the records a Source
// returns — hosts with their reserved address or current lease, and their
// aliases — and rebuilt whenever the Source's version changes (polled every
// Options.PollInterval). It holds:
//
//   - SOA and NS at the apex of the site domain and of every reverse zone;
//   - A for every host (and for the NS name when Options.NSAddrs is set);
//   - CNAME for every alias, pointing at its host;
//   - PTR in the in-addr.arpa zones of the configured subnets. A subnet is cut
//     at octet boundaries: a /22 gives four /24 reverse zones, a /16 one; a
//     subnet smaller than a /24 makes kiln authoritative for its whole /24.
//
// Answers from the zone carry the AA flag. A name that exists without the
// asked type, or an empty non-terminal, is NODATA (NOERROR, SOA in the
// authority section); anything else under an apex is NXDOMAIN. When two
// records claim one name the first one wins (the store adapter lists
// reservations before leases); conflicts are logged once per rebuild.
//
// # Forwarding
//
// Names outside every apex are forwarded to Options.Upstreams (tried in order,
// UDP then TCP when the answer is truncated) with a bounded LRU cache that
// respects TTLs (RFC 2308 negative caching from the SOA minimum) and merges
// concurrent identical questions. Only clients inside Options.AllowRecursion
// may use it; others get REFUSED, while authoritative answers are given to
// everybody.
//
// # Transport
//
// The server answers on UDP and TCP on the same port. A UDP answer is cut to
// the client's EDNS0 buffer size (at most Options.MaxUDPSize, 512 without
// EDNS0) and flagged TC when records had to be dropped, so the client retries
// over TCP.
package dns
