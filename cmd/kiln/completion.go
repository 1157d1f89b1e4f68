package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// subcommands are the second words completion offers.
var subcommands = map[string][]string{
	"hosts":      {"list", "get", "add", "rm", "import", "export", "registrations", "approve", "reject"},
	"image":      {"build", "lock", "fetch"},
	"vm":         {"run"},
	"ntp":        {"query"},
	"backup":     {"keygen"},
	"config":     {"validate"},
	"password":   {"show", "reset"},
	"completion": {"bash", "zsh"},
	"init":       {"reboot", "poweroff"},
	"volumes":    {"list", "create", "upload", "grow", "rm", "chap"},
	"roots":      {"list", "import", "promote", "rm"},
	"vet":        {"start", "list", "show", "stop", "release", "report", "ssh", "tunnel"},
}

// runCompletion prints a shell completion script: "kiln completion bash|zsh".
// Load it with: source <(kiln completion bash).
func runCompletion(ctx context.Context, args []string, s stdio) error {
	if len(args) != 1 || (args[0] != "bash" && args[0] != "zsh") {
		return fmt.Errorf("completion: want bash or zsh (source <(kiln completion bash)): %w", errUsage)
	}
	var names []string
	for n := range commands() {
		names = append(names, n)
	}
	sort.Strings(names)
	var cases strings.Builder
	subs := make([]string, 0, len(subcommands))
	for k := range subcommands {
		subs = append(subs, k)
	}
	sort.Strings(subs)
	for _, k := range subs {
		fmt.Fprintf(&cases, "    %s) words=%q ;;\n", k, strings.Join(subcommands[k], " "))
	}
	script := bashCompletion
	if args[0] == "zsh" {
		script = "autoload -U +X bashcompinit && bashcompinit\n" + bashCompletion
	}
	script = strings.NewReplacer("@COMMANDS@", strings.Join(names, " "), "@CASES@", cases.String()).Replace(script)
	_, err := fmt.Fprint(s.out, script)
	return err
}

const bashCompletion = `# kiln shell completion (kiln completion bash|zsh)
_kiln() {
  local cur=${COMP_WORDS[COMP_CWORD]} words=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    words="@COMMANDS@"
  elif [ "$COMP_CWORD" -eq 2 ]; then
    case ${COMP_WORDS[1]} in
@CASES@    logs) words=$(kiln status --json 2>/dev/null | sed -n 's/^ *"name": "\(.*\)",$/\1/p') ;;
    esac
  fi
  if [ -z "$words" ] && [[ $cur == -* ]]; then
    words="--json --url --credentials --help"
  fi
  if [ -n "$words" ]; then
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -F _kiln kiln
`
