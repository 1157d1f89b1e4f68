package bootentry

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"kiln.dev/kiln/partitions"
)

// Legacy BIOS boots through GRUB (i386-pc) with the same entries and the same
// rules as systemd-boot: GRUB's config (GRUBConfig, rendered at build time) lists
// loader/entries/kiln-*.conf, reads each name's generation and "+left-done"
// counter, boots the highest generation whose tries are not used up, and counts
// the try before starting the kernel. GRUB cannot rename files, so it records the
// count in its environment block (GRUBEnvPath) as the slot's Tries; both loaders
// then see the more-used of the file name's counter and GRUB's record
// (Effective), and at the next boot Linux folds the record into the file name
// (ota/slots.FoldGRUB), so every OTA step (install, bless, mark bad, roll back)
// stays a change of entry files only. The kernel command line of a slot's entry
// reaches GRUB through a per-slot snippet (SlotGRUBPath) written with the entry.

// ESP paths of GRUB's files.
const (
	GRUBDir        = "grub"
	GRUBConfigPath = GRUBDir + "/grub.cfg"
	GRUBEnvPath    = GRUBDir + "/grubenv"
	// GRUBEnvSize is the size of a GRUB environment block.
	GRUBEnvSize = 1024
	// grubMaxCount bounds the counter arithmetic GRUB's script does by table
	// (its language has none); install.MaxTries is 9.
	grubMaxCount = 16
)

// SlotGRUBPath returns the ESP path of a slot's GRUB snippet: "kiln/a/grub.cfg".
func SlotGRUBPath(s partitions.Slot) string { return "kiln/" + string(s) + "/grub.cfg" }

// RenderGRUB returns the GRUB snippet of an entry: its generation, title and
// kernel command line as variables of its slot.
func RenderGRUB(e Entry) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# kiln boot entry %s for GRUB (legacy BIOS); written with it\n", e.FileName())
	fmt.Fprintf(&b, "set kiln_%s_gen=%d\n", e.Slot, e.Generation)
	fmt.Fprintf(&b, "set kiln_%s_title=%s\n", e.Slot, grubQuote(fmt.Sprintf("kiln %s (slot %s)", e.Version, e.Slot)))
	fmt.Fprintf(&b, "set kiln_%s_options=%s\n", e.Slot, grubQuote(e.Options()))
	return b.Bytes()
}

// grubQuote single-quotes s for GRUB's script ('\” for a quote).
func grubQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Tries is GRUB's record of the tries it counted for one slot: the counter of
// generation Generation's entry as GRUB left it.
type Tries struct {
	Generation, Left, Done int
}

// ParseGRUBTries reads GRUB's records from its environment variables
// (kiln_<slot>_tgen, _tleft, _tdone); incomplete or malformed records are skipped.
func ParseGRUBTries(env map[string]string) map[partitions.Slot]Tries {
	out := map[partitions.Slot]Tries{}
	for _, s := range []partitions.Slot{partitions.SlotA, partitions.SlotB} {
		var t Tries
		var err error
		p := "kiln_" + string(s) + "_t"
		if t.Generation, err = strconv.Atoi(env[p+"gen"]); err != nil || t.Generation <= 0 {
			continue
		}
		if t.Left, err = strconv.Atoi(env[p+"left"]); err != nil || t.Left < 0 {
			continue
		}
		if t.Done, err = strconv.Atoi(env[p+"done"]); err != nil || t.Done < 0 {
			continue
		}
		out[s] = t
	}
	return out
}

// GRUBTriesEnv returns the environment variables GRUB saves for records t.
func GRUBTriesEnv(t map[partitions.Slot]Tries) map[string]string {
	env := map[string]string{}
	for s, r := range t {
		p := "kiln_" + string(s) + "_t"
		env[p+"gen"], env[p+"left"], env[p+"done"] = strconv.Itoa(r.Generation), strconv.Itoa(r.Left), strconv.Itoa(r.Done)
	}
	return env
}

// Effective returns e with GRUB's record of its slot applied: a counted entry of
// the generation GRUB counted has the fewer tries left and the more done of the
// two (counters only ever run down, so the more-used one is the newer).
// Committed entries and entries whose tries are used up (marked bad) are never
// counted and stay as they are.
func Effective(e Entry, t map[partitions.Slot]Tries) Entry {
	r, ok := t[e.Slot]
	if !ok || e.Counter == nil || e.Counter.Left == 0 || r.Generation != e.Generation {
		return e
	}
	e.Counter = &Counter{Left: min(e.Counter.Left, r.Left), Done: max(e.Counter.Done, r.Done)}
	return e
}

// PickGRUB models kiln's grub.cfg: every entry gets its effective counter, the
// one systemd-boot would pick among those boots (highest generation whose
// tries are not used up; when every entry is used up, the highest anyway), and
// when it is counted with tries left GRUB saves the try in its record. It
// returns the entry as started (counter after the try) and the records GRUB
// leaves; ok is false with no entry.
func PickGRUB(entries []Entry, t map[partitions.Slot]Tries) (Entry, map[partitions.Slot]Tries, bool) {
	eff := make([]Entry, len(entries))
	for i, e := range entries {
		eff[i] = Effective(e, t)
	}
	e, ok := Pick(eff)
	if !ok {
		return Entry{}, t, false
	}
	at := e.Attempted()
	out := map[partitions.Slot]Tries{}
	for s, r := range t {
		out[s] = r
	}
	if e.Counter != nil && e.Counter.Left > 0 {
		out[e.Slot] = Tries{Generation: e.Generation, Left: at.Counter.Left, Done: at.Counter.Done}
	}
	return at, out, true
}

// GRUBConfig renders grub.cfg: serial and VGA console, a hidden menu (Esc shows
// it) whose first item runs the pick, one item per slot, and the count before
// the kernel starts. It reads the entry names on the ESP, the per-slot snippets
// and the records in grubenv; see the package doc for the rules it implements.
func GRUBConfig() []byte {
	var b strings.Builder
	b.WriteString(`# kiln legacy BIOS boot (GRUB i386-pc), rendered by ota/bootentry.GRUBConfig.
# Boots loader/entries/kiln-<generation>[+left-done].conf by systemd-boot's rules:
# the highest generation whose tries are not used up; a counted entry's try is
# saved in grubenv (kiln_<slot>_t*) before the kernel starts.
insmod part_gpt
insmod fat
insmod regexp
insmod test
insmod loadenv
insmod echo
insmod linux
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout_style=hidden
set timeout=0
set default=0

set kiln_env=${prefix}/grubenv
load_env -f ${kiln_env} kiln_a_tgen kiln_a_tleft kiln_a_tdone kiln_b_tgen kiln_b_tleft kiln_b_tdone
set kiln_a_gen=none
set kiln_b_gen=none
`)
	for _, s := range []string{"a", "b"} {
		fmt.Fprintf(&b, "if [ -f /%s ]; then source /%s; fi\n", SlotGRUBPath(partitions.Slot(s)), SlotGRUBPath(partitions.Slot(s)))
	}
	// kiln_dec N / kiln_inc N set kiln_n to N-1 / N+1 (by table).
	b.WriteString("\nfunction kiln_dec {\n  set kiln_n=$1\n")
	for i := 1; i <= grubMaxCount; i++ {
		fmt.Fprintf(&b, "  if [ \"$1\" = %d ]; then set kiln_n=%d; fi\n", i, i-1)
	}
	b.WriteString("}\nfunction kiln_inc {\n  set kiln_n=$1\n")
	for i := 0; i < grubMaxCount; i++ {
		fmt.Fprintf(&b, "  if [ \"$1\" = %d ]; then set kiln_n=%d; fi\n", i, i+1)
	}
	b.WriteString("}\n")
	b.WriteString(`
# kiln_better BAD GEN COUNTED LEFT DONE compares an entry with the one in
# kiln_c_* and sets kiln_take=1 when the entry sorts first in systemd-boot's
# order: tries not used up first, then the higher generation, then (duplicates
# left by an interrupted rename) counted before committed, more tries left,
# more done.
function kiln_better {
  set kiln_take=0
  if [ "$kiln_c_gen" = none ]; then set kiln_take=1
  elif [ "$1" -lt "$kiln_c_bad" ]; then set kiln_take=1
  elif [ "$1" = "$kiln_c_bad" ]; then
    if [ "$2" -gt "$kiln_c_gen" ]; then set kiln_take=1
    elif [ "$2" = "$kiln_c_gen" ]; then
      if [ "$3" -gt "$kiln_c_counted" ]; then set kiln_take=1
      elif [ "$3" = 1 ]; then
        if [ "$kiln_c_counted" = 1 ]; then
          if [ "$4" -gt "$kiln_c_left" ]; then set kiln_take=1
          elif [ "$4" = "$kiln_c_left" ]; then
            if [ "$5" -gt "$kiln_c_done" ]; then set kiln_take=1; fi
          fi
        fi
      fi
    fi
  fi
}
`)
	for _, s := range []string{"a", "b", "pick"} {
		fmt.Fprintf(&b, "set kiln_%[1]s_best=none\nset kiln_%[1]s_bad=1\nset kiln_%[1]s_counted=0\nset kiln_%[1]s_left=0\nset kiln_%[1]s_done=0\nset kiln_%[1]s_slot=none\n", s)
	}
	b.WriteString(`
for kiln_f in /loader/entries/kiln-*.conf; do
  set kiln_g=none
  set kiln_counted=1
  set kiln_l=0
  set kiln_d=0
  if regexp --set=1:kiln_g --set=2:kiln_l --set=3:kiln_d '/kiln-([0-9]+)\+([0-9]+)-([0-9]+)\.conf$' "$kiln_f"; then set kiln_counted=1
  elif regexp --set=1:kiln_g --set=2:kiln_l '/kiln-([0-9]+)\+([0-9]+)\.conf$' "$kiln_f"; then set kiln_d=0
  elif regexp --set=1:kiln_g '/kiln-([0-9]+)\.conf$' "$kiln_f"; then set kiln_counted=0
  else set kiln_g=none
  fi
  set kiln_s=none
  if [ "$kiln_g" = "$kiln_a_gen" ]; then set kiln_s=a
  elif [ "$kiln_g" = "$kiln_b_gen" ]; then set kiln_s=b
  fi
`)
	// Per slot: apply GRUB's record, then consider the entry for the slot and overall.
	for _, s := range []string{"a", "b"} {
		fmt.Fprintf(&b, `  if [ "$kiln_s" = %[1]s ]; then
    set kiln_bad=0
    if [ "$kiln_counted" = 1 -a "$kiln_l" != 0 ]; then
      if [ "$kiln_%[1]s_tgen" = "$kiln_g" ]; then
        if [ "$kiln_%[1]s_tleft" -lt "$kiln_l" ]; then set kiln_l=$kiln_%[1]s_tleft; fi
        if [ "$kiln_%[1]s_tdone" -gt "$kiln_d" ]; then set kiln_d=$kiln_%[1]s_tdone; fi
      fi
    fi
    if [ "$kiln_counted" = 1 -a "$kiln_l" = 0 ]; then set kiln_bad=1; fi
`, s)
		for _, into := range []string{s, "pick"} {
			fmt.Fprintf(&b, `    set kiln_c_gen=$kiln_%[1]s_best
    set kiln_c_bad=$kiln_%[1]s_bad
    set kiln_c_counted=$kiln_%[1]s_counted
    set kiln_c_left=$kiln_%[1]s_left
    set kiln_c_done=$kiln_%[1]s_done
    kiln_better $kiln_bad $kiln_g $kiln_counted $kiln_l $kiln_d
    if [ "$kiln_take" = 1 ]; then
      set kiln_%[1]s_best=$kiln_g
      set kiln_%[1]s_bad=$kiln_bad
      set kiln_%[1]s_counted=$kiln_counted
      set kiln_%[1]s_left=$kiln_l
      set kiln_%[1]s_done=$kiln_d
      set kiln_%[1]s_slot=%[2]s
    fi
`, into, s)
		}
		b.WriteString("  fi\n")
	}
	b.WriteString("done\n")
	// kiln_boot SLOT: count the try of the slot's entry (when counted with tries left), then boot it.
	b.WriteString("\nfunction kiln_boot {\n")
	for _, s := range []string{"a", "b"} {
		fmt.Fprintf(&b, `  if [ "$1" = %[1]s ]; then
    if [ "$kiln_%[1]s_best" = none ]; then
      echo "kiln-grub: slot %[1]s has no boot entry"
    else
      if [ "$kiln_%[1]s_counted" = 1 ]; then
        if [ "$kiln_%[1]s_bad" = 0 ]; then
          kiln_dec $kiln_%[1]s_left
          set kiln_%[1]s_tleft=$kiln_n
          kiln_inc $kiln_%[1]s_done
          set kiln_%[1]s_tdone=$kiln_n
          set kiln_%[1]s_tgen=$kiln_%[1]s_best
          save_env -f ${kiln_env} kiln_%[1]s_tgen kiln_%[1]s_tleft kiln_%[1]s_tdone
          echo "kiln-grub: trying generation $kiln_%[1]s_best in slot %[1]s, tries left $kiln_%[1]s_tleft done $kiln_%[1]s_tdone"
        fi
      fi
      echo "kiln-grub: booting generation $kiln_%[1]s_best from slot %[1]s"
      linux /kiln/%[1]s/vmlinuz $kiln_%[1]s_options
      initrd /kiln/%[1]s/initrd
      boot
    fi
  fi
`, s)
	}
	b.WriteString("}\n")
	b.WriteString(`
if [ "$kiln_pick_slot" = none ]; then
  echo "kiln-grub: no kiln boot entry in /loader/entries: the ESP is damaged; rebooting in 60 s"
  sleep 60
  reboot
fi
menuentry "kiln (newest working slot: $kiln_pick_slot)" {
  kiln_boot $kiln_pick_slot
}
if [ "$kiln_a_best" != none ]; then
  menuentry "$kiln_a_title" { kiln_boot a }
fi
if [ "$kiln_b_best" != none ]; then
  menuentry "$kiln_b_title" { kiln_boot b }
fi
`)
	return []byte(b.String())
}

// EncodeGRUBEnv renders a GRUB environment block (GRUBEnvSize bytes: the
// signature line, name=value lines with \ and newline escaped, '#' padding).
func EncodeGRUBEnv(env map[string]string) ([]byte, error) {
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteString("# GRUB Environment Block\n")
	for _, k := range names {
		if k == "" || strings.ContainsAny(k, "=\n\\#") {
			return nil, fmt.Errorf("grub environment: bad variable name %q", k)
		}
		v := strings.NewReplacer(`\`, `\\`, "\n", "\\\n").Replace(env[k])
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	if b.Len() > GRUBEnvSize {
		return nil, fmt.Errorf("grub environment: %d bytes of variables, more than the %d-byte block", b.Len(), GRUBEnvSize)
	}
	b.Write(bytes.Repeat([]byte{'#'}, GRUBEnvSize-b.Len()))
	return b.Bytes(), nil
}

// DecodeGRUBEnv parses a GRUB environment block as GRUB does: the signature
// line first, lines starting with '#' skipped, name=value with backslash
// escapes.
func DecodeGRUBEnv(b []byte) (map[string]string, error) {
	const sig = "# GRUB Environment Block\n"
	if !bytes.HasPrefix(b, []byte(sig)) {
		return nil, fmt.Errorf("grub environment: no %q signature", strings.TrimSpace(sig))
	}
	env := map[string]string{}
	rest := b[len(sig):]
	for len(rest) > 0 {
		if rest[0] == '#' {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				break
			}
			rest = rest[i+1:]
			continue
		}
		var line []byte
		i := 0
		for ; i < len(rest); i++ {
			if rest[i] == '\\' && i+1 < len(rest) {
				line = append(line, rest[i+1])
				i++
				continue
			}
			if rest[i] == '\n' {
				break
			}
			line = append(line, rest[i])
		}
		if i >= len(rest) {
			break // unterminated: GRUB ignores it too
		}
		rest = rest[i+1:]
		k, v, ok := bytes.Cut(line, []byte("="))
		if !ok || len(k) == 0 {
			continue
		}
		env[string(k)] = string(v)
	}
	return env, nil
}
