// Package powerbutton turns a press of the ACPI power button into a callback
// (PID 1 powers off). It finds input devices named "Power Button" under
// /sys/class/input and reads their evdev events (the button and evdev modules
// must be loaded; coldplug does that).
package powerbutton

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Linux input event constants (linux/input-event-codes.h).
const (
	evKey    = 0x01
	keyPower = 116
)

// eventSize is sizeof(struct input_event) on 64-bit Linux: a 16-byte timeval,
// type and code (u16) and value (s32).
const eventSize = 24

// Find returns the device nodes of input event devices whose name is
// "Power Button", given the input class directory and the dev directory.
func Find(classInput, dev string) ([]string, error) {
	ents, err := os.ReadDir(classInput)
	if err != nil {
		return nil, fmt.Errorf("listing input devices: %w", err)
	}
	var nodes []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "event") {
			continue
		}
		name, err := os.ReadFile(filepath.Join(classInput, e.Name(), "device", "name"))
		if err != nil || strings.TrimSpace(string(name)) != "Power Button" {
			continue
		}
		nodes = append(nodes, filepath.Join(dev, "input", e.Name()))
	}
	return nodes, nil
}

// Presses reads input events from r and calls pressed for every power key
// press (not release or autorepeat), until r fails or ends.
func Presses(r io.Reader, pressed func()) error {
	buf := make([]byte, eventSize*16)
	var pending []byte
	for {
		n, err := r.Read(buf)
		pending = append(pending, buf[:n]...)
		for len(pending) >= eventSize {
			ev := pending[:eventSize]
			typ := binary.LittleEndian.Uint16(ev[16:18])
			code := binary.LittleEndian.Uint16(ev[18:20])
			val := int32(binary.LittleEndian.Uint32(ev[20:24]))
			if typ == evKey && code == keyPower && val == 1 {
				pressed()
			}
			pending = pending[eventSize:]
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// Watch calls pressed for each power button press until ctx is done. It
// looks for power button devices every rescan interval, because the button
// module may load after PID 1 starts.
func Watch(ctx context.Context, classInput, dev string, rescan time.Duration, pressed func(), log *slog.Logger) {
	log = log.With("component", "powerbutton")
	watching := map[string]bool{}
	for {
		nodes, _ := Find(classInput, dev)
		for _, n := range nodes {
			if watching[n] {
				continue
			}
			f, err := os.Open(n)
			if err != nil {
				log.Warn("cannot open power button", "device", n, "err", err)
				continue
			}
			watching[n] = true
			log.Info("watching power button", "device", n)
			context.AfterFunc(ctx, func() { f.Close() })
			go func() {
				defer f.Close()
				if err := Presses(f, pressed); err != nil && ctx.Err() == nil {
					log.Warn("reading power button failed", "device", n, "err", err)
				}
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(rescan):
		}
	}
}
