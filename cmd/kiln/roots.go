package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"kiln.dev/kiln/services/api/apiclient"
	"kiln.dev/kiln/services/iscsi"
	"kiln.dev/kiln/services/nfs/nfshttp"
	"kiln.dev/kiln/services/nfs/roots"
)

const rootsUsage = `  kiln roots list [--json]
  kiln roots import DIR|TARBALL|SQUASHFS --name NAME [--promote]   (a new version of NAME)
  kiln roots promote NAME@VERSION                                   (what hosts naming NAME boot next)
  kiln roots rm NAME@VERSION [--force]                              (--force: even if a client used it within the hour)`

// runRoots manages the root images of diskless machines through the API.
func runRoots(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 {
		return fmt.Errorf("roots: name a subcommand:\n%s: %w", rootsUsage, errUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("roots "+sub, flag.ContinueOnError)
	fs.SetOutput(s.err)
	var o apiclient.Options
	o.Register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var name *string
	var promote, force *bool
	npos := 1
	switch sub {
	case "list":
		npos = 0
	case "import":
		name = fs.String("name", "", "the root image's name (required): lower case letters, digits, '.', '_', '-'")
		promote = fs.Bool("promote", false, "promote the new version at once")
	case "promote":
	case "rm":
		force = fs.Bool("force", false, "remove even if a client used the version within the last hour")
	default:
		return fmt.Errorf("roots: unknown subcommand %q:\n%s: %w", sub, rootsUsage, errUsage)
	}
	pos, err := parsePositional(fs, args, npos, "roots "+sub, rootsUsage)
	if err != nil {
		return err
	}
	c, err := o.Client()
	if err != nil {
		return fmt.Errorf("roots %s: %w", sub, err)
	}
	switch sub {
	case "list":
		var l nfshttp.ListJSON
		if err := c.Do(ctx, "GET", "/api/v1/roots", nil, &l); err != nil {
			return fmt.Errorf("roots list: %w", err)
		}
		if *asJSON {
			return printJSON(s.out, l)
		}
		return printRoots(s.out, l)
	case "import":
		if *name == "" {
			return fmt.Errorf("roots import: --name is required: %w", errUsage)
		}
		body, source, err := rootUpload(pos[0])
		if err != nil {
			return fmt.Errorf("roots import: %w", err)
		}
		defer body.Close()
		q := url.Values{"source": {source}}
		if *promote {
			q.Set("promote", "true")
		}
		var got nfshttp.ImportJSON
		if err := c.DoRaw(ctx, "POST", "/api/v1/roots/"+url.PathEscape(*name)+"?"+q.Encode(), body, "application/octet-stream", &got); err != nil {
			return fmt.Errorf("roots import: %s: %w", pos[0], err)
		}
		if *asJSON {
			return printJSON(s.out, got)
		}
		state := "staged: hosts pin it with root_image " + got.Ref + "; kiln roots promote " + got.Ref + " makes it the default"
		if got.Promoted {
			state = "promoted"
		}
		fmt.Fprintf(s.out, "imported %s: %s in %d files, %s\n", got.Ref, iscsi.Bytes(got.Size), got.Files, state)
		if got.Skipped > 0 {
			fmt.Fprintf(s.err, "%d device nodes or FIFOs were left out: diskless clients mount devtmpfs on /dev\n", got.Skipped)
		}
		return nil
	case "promote":
		var got nfshttp.RootJSON
		if err := c.Do(ctx, "POST", "/api/v1/roots/"+url.PathEscape(pos[0])+"/promote", nil, &got); err != nil {
			return fmt.Errorf("roots promote: %w", err)
		}
		fmt.Fprintf(s.out, "%s promoted: hosts naming %s boot it from their next boot; running ones keep their version\n", got.Ref, got.Name)
		return nil
	case "rm":
		path := "/api/v1/roots/" + url.PathEscape(pos[0])
		if *force {
			path += "?force=true"
		}
		if err := c.Do(ctx, "DELETE", path, nil, nil); err != nil {
			return fmt.Errorf("roots rm: %w", err)
		}
		fmt.Fprintf(s.out, "%s removed\n", pos[0])
		return nil
	}
	return nil
}

// rootUpload opens what import sends: a directory as a tar stream made on
// the fly, a file (tarball or squashfs image) as it is.
func rootUpload(p string) (io.ReadCloser, string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, "", err
	}
	if !fi.IsDir() {
		f, err := os.Open(p)
		return f, fileBase(p), err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(roots.WriteTar(pw, p)) }()
	return pr, fileBase(strings.TrimRight(p, "/")) + "/", nil
}

func printRoots(w io.Writer, l nfshttp.ListJSON) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROOT\tPROMOTED\tSIZE\tFILES\tBOOTS\tIN USE\tSOURCE")
	for _, r := range l.Roots {
		p := "-"
		if r.Promoted {
			p = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Ref, p, iscsi.Bytes(r.Size), r.Files,
			dash(strings.Join(r.Boots, ",")), dash(strings.Join(r.InUse, ",")), dash(r.Source))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range l.Refused {
		fmt.Fprintf(w, "refused: %s %s: %s\n", r.Host, r.Addr, r.Reason)
	}
	return nil
}
