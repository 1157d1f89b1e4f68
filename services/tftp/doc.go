// Package tftp is kiln's read-only TFTP service: it hands network boot
// programs (the iPXE binaries under /usr/share/kiln/ipxe) to PXE firmware.
// Kernels and images go over HTTP (package httpboot), never TFTP.
//
// The protocol is github.com/pin/tftp/v3 (v3.1.0); this package adds the
// policy around it:
//
//   - Read only. Write requests are answered with an ERROR packet and
//     nothing is written.
//   - No way out of Options.Root: a leading "/" is taken as the root (like
//     tftpd-hpa --secure), backslashes are separators, any ".." component,
//     NUL or control byte is refused, and files are opened through os.Root,
//     so a symlink pointing outside the root is refused too. Only regular
//     files are served (a FIFO or device is refused without blocking).
//   - Options: blksize (RFC 2348) is capped at the link MTU minus 32 (IPv4
//     20 + UDP 8 + TFTP 4 bytes) of the interface serving the listen address
//     — for a wildcard listener the smallest MTU of the up, non-loopback
//     interfaces — and at Options.MaxBlockSize; the library also caps at the
//     receiving interface's MTU minus 28 per request. tsize (RFC 2349) is
//     answered with the real file size. The timeout option is not negotiated
//     (the server's Options.Timeout and Options.Retries apply).
//   - windowsize (RFC 7440) is NOT supported: pin/tftp v3.1.0 drops unknown
//     options from its OACK, so RFC 7440 clients fall back to one block per
//     ACK. Its "anticipate" mode is a non-standard sender window that still
//     expects one ACK per block, so it is left off.
//   - Concurrency: at most Options.MaxTransfers transfers at once and
//     Options.MaxPerClient per client address; requests above either limit
//     are answered with an ERROR packet ("server busy").
//   - Every request (served, refused or failed) is reported to an EventSink
//     as a boot event with the client address, file, bytes and outcome.
//
// Error packets carry code 1 for every refusal: the library does not let a
// handler choose the code. Messages are short and never echo paths outside the
// request.
package tftp
