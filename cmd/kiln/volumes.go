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
	"kiln.dev/kiln/services/iscsi/iscsihttp"
)

const volumesUsage = `  kiln volumes list [--json]
  kiln volumes create HOST/NAME|NAME --size 16G [--from VOLUME]   (NAME alone: a golden volume)
  kiln volumes upload HOST/NAME|NAME --image FILE.raw [--size 16G]
  kiln volumes grow HOST/NAME --size 32G
  kiln volumes rm HOST/NAME [--yes HOST/NAME]                      (asks to type the name)
  kiln volumes chap HOST [--iqn IQN] [--mutual]                    (new CHAP secrets, shown once)`

// runVolumes manages iSCSI volumes and CHAP credentials through the API.
func runVolumes(ctx context.Context, args []string, s stdio) error {
	if len(args) == 0 {
		return fmt.Errorf("volumes: name a subcommand:\n%s: %w", volumesUsage, errUsage)
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("volumes "+sub, flag.ContinueOnError)
	fs.SetOutput(s.err)
	var o apiclient.Options
	o.Register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var size, from, image, yes, iqn *string
	var mutual *bool
	npos := 1
	switch sub {
	case "list":
		npos = 0
	case "create":
		size = fs.String("size", "", "logical size: bytes or a number with M, G or T (16G); with --from, default the source's")
		from = fs.String("from", "", "clone this volume (HOST/NAME, or NAME for a golden one)")
	case "upload":
		image = fs.String("image", "", "raw disk image to copy in (required)")
		size = fs.String("size", "", "logical size (default: the image's, rounded up to a MiB)")
	case "grow":
		size = fs.String("size", "", "new logical size, larger than now (required)")
	case "rm":
		yes = fs.String("yes", "", "confirm without asking: repeat the volume's HOST/NAME")
	case "chap":
		iqn = fs.String("iqn", "", "the host's initiator IQN (default: the stored one, or kiln's iqn.…:initiator:HOST)")
		mutual = fs.Bool("mutual", false, "also make a secret the target proves to the host (mutual CHAP)")
	default:
		return fmt.Errorf("volumes: unknown subcommand %q:\n%s: %w", sub, volumesUsage, errUsage)
	}
	// Flags may come after the positional argument (kiln volumes grow node1/boot --size 32G).
	pos, err := parsePositional(fs, args, npos, "volumes "+sub, volumesUsage)
	if err != nil {
		return err
	}
	bytesOf := func(required bool) (int64, error) {
		if *size == "" {
			if required {
				return 0, fmt.Errorf("volumes %s: --size is required: %w", sub, errUsage)
			}
			return 0, nil
		}
		n, err := parseSize(*size)
		if err != nil {
			return 0, fmt.Errorf("volumes %s: --size: %v: %w", sub, err, errUsage)
		}
		return n, nil
	}
	var label, host, name string
	if npos > 0 {
		label = strings.ToLower(pos[0])
		host, name = iscsi.SplitLabel(label)
	}
	c, err := o.Client()
	if err != nil {
		return fmt.Errorf("volumes %s: %w", sub, err)
	}
	var v iscsihttp.VolumeJSON
	done := func() error {
		if *asJSON {
			return printJSON(s.out, v)
		}
		fmt.Fprintf(s.out, "%s: %s (%s allocated)", v.Label, iscsi.Bytes(v.Size), iscsi.Bytes(v.Allocated))
		if v.Target != "" {
			fmt.Fprintf(s.out, ", target %s", v.Target)
		}
		fmt.Fprintln(s.out)
		return nil
	}
	switch sub {
	case "list":
		var l iscsihttp.ListJSON
		if err := c.Do(ctx, "GET", "/api/v1/volumes", nil, &l); err != nil {
			return fmt.Errorf("volumes list: %w", err)
		}
		if *asJSON {
			return printJSON(s.out, l)
		}
		return printVolumes(s.out, l)
	case "create":
		n, err := bytesOf(*from == "")
		if err != nil {
			return err
		}
		req := iscsihttp.CreateRequest{Host: host, Name: name, Size: n, From: *from}
		if err := c.Do(ctx, "POST", "/api/v1/volumes", req, &v); err != nil {
			return fmt.Errorf("volumes create: %w", err)
		}
		return done()
	case "upload":
		if *image == "" {
			return fmt.Errorf("volumes upload: --image is required: %w", errUsage)
		}
		n, err := bytesOf(false)
		if err != nil {
			return err
		}
		f, err := os.Open(*image)
		if err != nil {
			return fmt.Errorf("volumes upload: %w", err)
		}
		defer f.Close()
		if n == 0 {
			fi, err := f.Stat()
			if err != nil {
				return fmt.Errorf("volumes upload: %w", err)
			}
			n = (fi.Size() + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
		}
		q := url.Values{"host": {host}, "name": {name}, "image_name": {fileBase(*image)}, "size": {fmt.Sprint(n)}}
		if err := c.DoRaw(ctx, "PUT", "/api/v1/volumes/image?"+q.Encode(), f, "application/octet-stream", &v); err != nil {
			return fmt.Errorf("volumes upload: %w", err)
		}
		return done()
	case "grow":
		n, err := bytesOf(true)
		if err != nil {
			return err
		}
		if err := c.Do(ctx, "PATCH", "/api/v1/volumes/"+label, iscsihttp.GrowRequest{Size: n}, &v); err != nil {
			return fmt.Errorf("volumes grow: %w", err)
		}
		if err := done(); err != nil {
			return err
		}
		fmt.Fprintln(s.err, "The host sees the new size after a rescan (iscsiadm -m session -R); then grow its partition and filesystem.")
		return nil
	case "rm":
		confirm := *yes
		if confirm == "" {
			fmt.Fprintf(s.err, "Deleting %s destroys its data. Type %s to confirm: ", label, label)
			line, _ := readLine(s.in)
			confirm = strings.TrimSpace(line)
		}
		if err := c.Do(ctx, "DELETE", "/api/v1/volumes/"+label+"?confirm="+url.QueryEscape(confirm), nil, nil); err != nil {
			return fmt.Errorf("volumes rm: %w", err)
		}
		fmt.Fprintf(s.out, "%s deleted\n", label)
		return nil
	case "chap":
		var cr iscsi.Credentials
		if err := c.Do(ctx, "POST", "/api/v1/hosts/"+url.PathEscape(label)+"/iscsi", iscsihttp.InitiatorRequest{IQN: *iqn, Mutual: *mutual}, &cr); err != nil {
			return fmt.Errorf("volumes chap: %w", err)
		}
		if *asJSON {
			return printJSON(s.out, cr)
		}
		tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "host\t%s\ninitiator IQN\t%s\ntarget IQN\t%s\nCHAP user\t%s\nCHAP secret\t%s\n", cr.Host, cr.IQN, cr.Target, cr.User, cr.Secret)
		if cr.MutualUser != "" {
			fmt.Fprintf(tw, "mutual user\t%s\nmutual secret\t%s\n", cr.MutualUser, cr.MutualSecret)
		}
		tw.Flush()
		fmt.Fprintln(s.err, "The secrets are shown only now; kiln keeps them sealed and hands them to the host in its own boot script.")
		return nil
	}
	return nil
}

func printVolumes(w io.Writer, l iscsihttp.ListJSON) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOLUME\tSIZE\tALLOCATED\tLUN\tTARGET\tSOURCE")
	for _, v := range l.Volumes {
		lun := "-"
		if v.LUN >= 0 {
			lun = fmt.Sprint(v.LUN)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Label, iscsi.Bytes(v.Size), iscsi.Bytes(v.Allocated), lun, dash(v.Target), dash(v.Source))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	sp := l.Space
	_, err := fmt.Fprintf(w, "data partition: %s free of %s; %s promised to volumes' unwritten blocks, %s kept for the appliance\n",
		iscsi.Bytes(sp.Free), iscsi.Bytes(sp.Total), iscsi.Bytes(sp.Promised), iscsi.Bytes(sp.Reserve))
	return err
}

func fileBase(p string) string { return p[strings.LastIndex(p, "/")+1:] }

// parsePositional parses fs's flags wherever they stand among args and
// returns the npos positional arguments; what names the command in errors.
func parsePositional(fs *flag.FlagSet, args []string, npos int, what, usage string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%s: %v: %w", what, err, errUsage)
		}
		if args = fs.Args(); len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) != npos {
		return nil, fmt.Errorf("%s: want %d argument(s), got %d:\n%s: %w", what, npos, len(pos), usage, errUsage)
	}
	return pos, nil
}
