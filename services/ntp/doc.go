// Package ntp is kiln's time service: it keeps the appliance's clock from
// upstream NTP servers (config ntp.servers) and serves NTPv4 to the
// provisioning subnets, which DHCP points at it (option 42).
//
// # Server
//
// Server answers client-mode requests (RFC 5905 section 9.2, NTP versions
// 1-4, the version echoed) with one 48-byte reply from the address the
// request was sent to. Nothing else is answered: no symmetric, broadcast or
// control (mode 6/7) packets, so the server is no amplifier. Until kiln's
// clock has been set from an upstream server, replies carry leap indicator 3
// and stratum 16 (refid INIT): clients refuse them, so a LAN never takes its
// time from an appliance whose own clock is unknown — which is also what it
// serves when ntp.servers is empty. Once synchronized it serves the
// upstream's stratum + 1 with the upstream's address as refid and the root
// delay and dispersion accumulated on the way; the dispersion grows by 15
// ppm per second without an update, and past a root distance of 1.5 s
// (about a day without reaching any upstream) the clock counts as
// unsynchronized again.
//
// # Keeping the clock
//
// Syncer polls every server every 64 s with a burst of 4 queries 2 s apart
// and keeps each server's least delayed sample. With three or more servers,
// those more than the step threshold from the median offset are dropped as
// falsetickers; the sample with the smallest root distance is followed.
// Requests carry a random transmit timestamp that a genuine reply echoes.
//
// Stepping or slewing: the first correction after start steps the clock
// when the offset is above 128 ms (ntpd's threshold) — an appliance often
// boots with a wrong clock (no RTC battery, a VM restored from a snapshot),
// and the services and logs that follow should not run on it for minutes
// while a slew catches up at the kernel's 500 ppm. Smaller offsets, and
// every later correction, are slewed (adjtime-style ADJ_OFFSET_SINGLESHOT),
// so timestamps never jump backwards while kiln runs; only an offset above
// the threshold seen on two polls in a row steps again (the clock really
// jumped; one bad sample is not enough). This is an SNTP-grade discipline
// (RFC 4330): each poll corrects the phase, with no frequency loop, which
// keeps kiln within milliseconds of its upstream — plenty for provisioning
// and logs, not a stratum-1 replacement.
package ntp
