// Package console owns kiln's recovery console: the banner and the line-based
// recovery menu that PID 1 runs on the serial console (ttyS0) and on tty1.
//
// The console never takes over the terminal: kernel and init messages keep
// flowing to it. Once the system is up, PID 1 calls [Console.Run] with the
// terminal (see [OpenTTY]); Run prints a short banner (hostname, slot, version,
// management URLs) and waits quietly for Enter. Enter opens the menu: service
// status, interface addresses, service logs, roll back to the other slot,
// factory reset, a shell, reboot and power off. Destructive items ask first:
// roll back wants "yes", factory reset wants the exact phrase it shows
// ("wipe <hostname>"), reboot and power off want y.
//
// Everything the console acts on is a small interface defined here
// ([StatusSource], [SlotController], [DataWiper], [Power], [ShellRunner],
// [InterfaceLister]); a nil one makes its menu items say they are not available.
// The terminal is an io.ReadWriter, so tests drive the menu through a pipe.
//
// Reading: the terminal is read one line per request, by one goroutine per Run,
// so nothing reads the terminal while the shell owns it, and a pending read never
// keeps Run from reacting to its context. Ctrl-C (delivered as a line ending by
// the mode [OpenTTY] sets) cancels the current prompt. End of input (Ctrl-D, a
// hangup, a closed pipe) returns to a silent wait that retries with growing
// delays, so a dead terminal never makes the console spin; Run only returns when
// its context is done.
//
// Hangups: when the shell exits, the kernel hangs up a serial line or virtual
// console it controlled, and every open file of it (the menu's too) reads only
// end of input from then on. So after the shell, and after each silent wait,
// the menu reopens a terminal that can be reopened ([TTY.Reopen]). It does so
// only between reads (the reader has no read pending then), so the swap never
// races a read and a hung-up file's end of input never reaches a prompt.
package console
