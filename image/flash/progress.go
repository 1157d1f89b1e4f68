package flash

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Bar renders Progress for a terminal (one line redrawn with \r) or a log (a line
// every 10%).
type Bar struct {
	W        io.Writer
	Terminal bool
	Width    int // bar cells (30 when 0)

	// lastPhase and lastTenth remember what a log-style Bar printed last.
	lastPhase string
	lastTenth int64
}

// Update draws p.
func (b *Bar) Update(p Progress) {
	if p.Total <= 0 {
		return
	}
	if !b.Terminal {
		tenth := p.Done * 10 / p.Total
		if p.Phase == b.lastPhase && tenth == b.lastTenth {
			return
		}
		b.lastPhase, b.lastTenth = p.Phase, tenth
		fmt.Fprintln(b.W, b.line(p))
		return
	}
	fmt.Fprintf(b.W, "\r%s\x1b[K", b.line(p))
	if p.Done == p.Total {
		fmt.Fprintln(b.W)
	}
}

// line is "writing   512.0 MiB / 1.3 GiB  38% [======>        ]  41.2 MiB/s  0:19 left".
func (b *Bar) line(p Progress) string {
	w := b.Width
	if w <= 0 {
		w = 30
	}
	pct := p.Done * 100 / p.Total
	fill := int(p.Done * int64(w) / p.Total)
	bar := strings.Repeat("=", fill)
	if fill < w {
		bar += ">" + strings.Repeat(" ", w-fill-1)
	}
	rate := p.Rate()
	eta := "--:--"
	if rate > 0 {
		left := time.Duration(float64(p.Total-p.Done) / rate * float64(time.Second))
		eta = fmt.Sprintf("%d:%02d", int(left.Minutes()), int(left.Seconds())%60)
	}
	return fmt.Sprintf("%-9s %9s / %-9s %3d%% [%s] %8s/s  %s left",
		p.Phase, HumanSize(p.Done), HumanSize(p.Total), pct, bar, HumanSize(int64(rate)), eta)
}
