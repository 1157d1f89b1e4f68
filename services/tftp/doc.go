// Package tftp is kiln's read-only TFTP service: it hands network boot
// programs (the iPXE binaries under /usr/share/kiln/ipxe) to PXE firmware.
// Kernels and images go over HTTP (package httpboot), never TFTP.
//
// # Protocol
//
// The server is kiln's own sender of RFC 1350 (octet and netascii), RFC 2347
// (option negotiation), RFC 2348 (blksize), RFC 2349 (timeout, tsize) and RFC
// 7440 (windowsize). It used to be github.com/pin/tftp/v3 v3.1.0, which drops
// windowsize from its OACK (its "anticipate" mode is a non-standard sender
// window that still expects an ACK per block); a read-only sender is small,
// so it is written here rather than forked. pin/tftp's client remains in the
// tests as an independent implementation to interoperate with.
//
// Each request is answered from a new socket (the transfer ID) bound to the
// address the client sent the request to (IP_PKTINFO), so a multi-homed
// appliance answers from the address the client knows. A request
// retransmitted while its transfer runs (same address, port and bytes) is ignored.
//
//   - blksize (RFC 2348) is capped at the MTU of the interface the request
//     arrived on minus 32 (IPv4 20 + UDP 8 + TFTP 4 bytes), so DATA packets
//     are never fragmented, and at Options.MaxBlockSize. Without packet info
//     the cap is BlockSizeCap of the listen address.
//   - tsize (RFC 2349) is answered with the real size (of the converted data
//     in netascii mode).
//   - timeout (RFC 2349) is accepted within [1, Options.MaxTimeout] seconds
//     and then used for retransmissions; otherwise it is left out of the OACK
//     and Options.Timeout applies.
//   - windowsize (RFC 7440) is granted up to Options.MaxWindowSize: that many
//     DATA blocks are sent before waiting for the ACK of the last one. An ACK
//     of a block inside the window (the client saw a gap) starts the next
//     window right after it; an ACK of the block before the window (the
//     client got none of it) resends the window at once, once per window; a
//     timeout resends it, Options.Retries times in a row at most. With a
//     window of 1 duplicate ACKs are ignored (no Sorcerer's Apprentice).
//   - Block numbers wrap from 65535 to 0, so files above 32 MiB work at the
//     default 512-byte blocks.
//   - Unknown options are left out of the OACK; a request without known
//     options gets DATA 1 directly, like an RFC 1350 server.
//
// # Policy
//
//   - Read only. Write requests are answered with ERROR 2 and nothing is
//     written.
//   - No way out of Options.Root: a leading "/" is taken as the root (like
//     tftpd-hpa --secure), backslashes are separators, any ".." component,
//     NUL or control byte is refused, and files are opened through os.Root,
//     so a symlink pointing outside the root is refused too. Only regular
//     files are served (a FIFO or device is refused without blocking).
//   - Concurrency: at most Options.MaxTransfers transfers at once and
//     Options.MaxPerClient per client address; requests above either limit
//     get ERROR 0 "server busy, try again". Request handling goroutines are
//     bounded too: beyond MaxTransfers+32 requests in progress, new ones are
//     dropped (the client retransmits).
//   - Every request (served, refused or failed) is reported to an EventSink
//     as a boot event with the client address, file, negotiated sizes, bytes
//     acknowledged and outcome. Error messages are short and never echo paths
//     outside the request.
package tftp
