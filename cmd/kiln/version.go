package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

// version is set at link time (-X main.version=…) by the Makefile.
var version = "dev"

func runVersion(_ context.Context, _ []string, s stdio) error {
	_, err := fmt.Fprintf(s.out, "kiln %s\n", kilnVersion())
	return err
}

// kilnVersion is the link-time version, else the module's, else "dev".
func kilnVersion() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return v
}
