package metrics

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Gatherer writes one exposition from the local registry and every service
// registry served on a socket in Dir (see ServeUnix), plus
// kiln_metrics_source_up saying which sources answered.
type Gatherer struct {
	// Local is written first; its families win over any source's.
	Local *Registry
	// LocalName names Local in kiln_metrics_source_up (e.g. "mgmt"); its own
	// socket in Dir, if any, is not scraped.
	LocalName string
	// Dir holds the sources' sockets, <service>.sock.
	Dir string
	// Timeout bounds each source (default 2 s).
	Timeout time.Duration
	// Log receives failing sources and dropped families; nil discards.
	Log *slog.Logger
}

// SourceUpFamily is the family the Gatherer adds.
const SourceUpFamily = "kiln_metrics_source_up"

// WriteText writes the merged exposition to b.
func (g *Gatherer) WriteText(ctx context.Context, b *bytes.Buffer) {
	log := g.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var local bytes.Buffer
	if g.Local != nil {
		if err := g.Local.WriteText(ctx, &local); err != nil {
			log.Warn("metrics incomplete", "source", g.LocalName, "err", err)
		}
	}
	names := g.sources(log)
	texts := make([][]byte, len(names))
	errs := make([]error, len(names))
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			texts[i], errs[i] = scrapeUnix(ctx, filepath.Join(g.Dir, name+".sock"))
		})
	}
	wg.Wait()

	seen := map[string]bool{SourceUpFamily: true}
	up := []Sample{}
	if g.Local != nil {
		Merge(b, local.Bytes(), seen)
		up = append(up, Sample{LabelValues: []string{g.LocalName}, Value: 1})
	}
	for i, name := range names {
		v := 1.0
		if errs[i] != nil {
			v = 0
			log.Warn("metrics source unreachable", "source", name, "err", errs[i])
		} else if dropped := Merge(b, texts[i], seen); len(dropped) > 0 {
			log.Warn("metrics source repeats families of an earlier source; dropped", "source", name, "families", dropped)
		}
		up = append(up, Sample{LabelValues: []string{name}, Value: v})
	}
	writeFamily(b, SourceUpFamily, "Whether a service's metrics could be read at this scrape (1) or not (0).", KindGauge, []string{"source"}, up)
}

// sources lists the socket names in Dir but the local one.
func (g *Gatherer) sources(log *slog.Logger) []string {
	if g.Dir == "" {
		return nil
	}
	ents, err := os.ReadDir(g.Dir)
	if err != nil {
		if !os.IsNotExist(err) {
			log.Warn("listing metrics sockets", "dir", g.Dir, "err", err)
		}
		return nil
	}
	var names []string
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".sock")
		if ok && e.Type()&os.ModeSocket != 0 && name != g.LocalName && name != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// ServeHTTP answers a scrape.
func (g *Gatherer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	g.WriteText(r.Context(), &b)
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Length", fmt.Sprint(b.Len()))
	w.Write(b.Bytes())
}

// Merge appends the families of text (an exposition) to b, leaving out
// families whose name is in seen and adding the rest to seen. A family runs
// from its first "# HELP" or "# TYPE" line (or, for a sample without
// either, its first sample) to the next family's; samples whose name
// extends the family name (_bucket, _sum, _count) stay with it. It returns
// the names it left out.
func Merge(b *bytes.Buffer, text []byte, seen map[string]bool) (dropped []string) {
	cur, keep := "", false
	start := func(name string) {
		cur = name
		keep = !seen[name]
		if keep {
			seen[name] = true
		} else {
			dropped = append(dropped, name)
		}
	}
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var name string
		if rest, ok := bytes.CutPrefix(line, []byte("# ")); ok {
			kw, after, _ := bytes.Cut(rest, []byte(" "))
			if string(kw) != "HELP" && string(kw) != "TYPE" {
				if keep {
					b.Write(line)
					b.WriteByte('\n')
				}
				continue
			}
			name = string(firstField(after))
		} else if line[0] == '#' {
			continue // a comment not in the format's grammar
		} else {
			name = string(sampleName(line))
			if cur != "" && strings.HasPrefix(name, cur) {
				name = cur
			}
		}
		if name != cur {
			start(name)
		}
		if keep {
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return dropped
}

func firstField(b []byte) []byte {
	if i := bytes.IndexAny(b, " \t"); i >= 0 {
		return b[:i]
	}
	return b
}

func sampleName(line []byte) []byte {
	if i := bytes.IndexAny(line, "{ \t"); i >= 0 {
		return line[:i]
	}
	return line
}
