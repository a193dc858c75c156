package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/transferd/transferd/api/client"
	"github.com/transferd/transferd/engine"
)

const transfersAbout = `Read transfers from a running server's query API.

  transferd transfers get ID [--at TIME|SEQ] [--json]
  transferd transfers list [--phase P] [--needs-action] [--migration-id ID]
                           [--cloud-url URL] [--tenant KEY] [--limit N] [--all] [--json]

A list by --migration-id or --cloud-url shows one tenant's transfers: --tenant,
else the issuer of the oldest transfer naming the id or site; the others using
it are named.

The API token is --api-token or TRANSFERD_API_TOKEN, the same variable serve
reads its tokens from (make run uses "dev-token").`

func runTransfers(ctx context.Context, args []string, getenv env, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "get" && args[0] != "list") {
		fs := newFlags("transfers get|list", transfersAbout, stderr)
		if err := parse(fs, args, getenv); err != nil {
			return err
		}
		return usageError("transfers: want get or list")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("transfers "+sub, transfersAbout, stderr)
	var server, token, at, phase, migration, cloud, tenant string
	var asJSON, needsAction, all bool
	var limit int
	fs.StringVar(&server, "server", "http://127.0.0.1:8080", "`URL` of the transferd server")
	fs.StringVar(&token, "api-token", "", "API `token` for the query API")
	fs.BoolVar(&asJSON, "json", false, "print the API's JSON instead of a table")
	if sub == "get" {
		fs.StringVar(&at, "at", "", "show the transfer as it stood at this RFC 3339 `time` or stream sequence")
	} else {
		fs.StringVar(&phase, "phase", "", "only transfers in this `phase`")
		fs.BoolVar(&needsAction, "needs-action", false, "only transfers the partner must settle")
		fs.StringVar(&migration, "migration-id", "", "only this migration's transfers, of one tenant")
		fs.StringVar(&cloud, "cloud-url", "", "only transfers to this cloud site, of one tenant")
		fs.StringVar(&tenant, "tenant", "", "only this tenant's (issuer's) transfers")
		fs.IntVar(&limit, "limit", 50, "transfers per page")
		fs.BoolVar(&all, "all", false, "follow the cursor through every page")
	}
	// The transfer id of get may come before or after the flags.
	var id string
	if sub == "get" && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	if sub == "get" {
		if id == "" && fs.NArg() > 0 {
			id = fs.Arg(0)
		}
		if id == "" {
			return usageError("transfers get: a transfer id is required")
		}
	}
	if token == "" {
		return usageError("transfers: no API token: pass --api-token or set TRANSFERD_API_TOKEN")
	}
	c := client.New(server, token)

	if sub == "get" {
		var v *engine.View
		var err error
		if at == "" {
			v, err = c.Transfer(ctx, id)
		} else {
			var p client.Point
			if p, err = parsePoint(at); err != nil {
				return err
			}
			v, err = c.TransferAt(ctx, id, p)
		}
		if err != nil {
			return err
		}
		if asJSON {
			return writeIndented(stdout, v)
		}
		printTransfer(stdout, v)
		return nil
	}

	f := client.Filter{MigrationID: migration, CloudURL: cloud, Tenant: tenant, Phase: engine.Phase(phase), Limit: limit}
	if needsAction {
		f.NeedsAction = "true"
	}
	// The first page says whose transfers a list by migration or site
	// shows; the rest stay with that tenant.
	page, err := c.List(ctx, f)
	if err != nil {
		return err
	}
	views, next := page.Transfers, page.NextCursor
	if all && next != "" {
		f.Cursor, f.Tenant = next, page.Tenant
		for v, err := range c.ListAll(ctx, f) {
			if err != nil {
				return err
			}
			views = append(views, v)
		}
		next = ""
	}
	if asJSON {
		out := map[string]any{"transfers": views}
		if next != "" {
			out["nextCursor"] = next
		}
		if page.Tenant != "" {
			out["tenant"] = page.Tenant
		}
		if len(page.OtherTenants) > 0 {
			out["otherTenants"] = page.OtherTenants
		}
		return writeIndented(stdout, out)
	}
	if page.Tenant != "" {
		fmt.Fprintf(stdout, "tenant %s", page.Tenant)
		if len(page.OtherTenants) > 0 {
			fmt.Fprintf(stdout, " (also used by %s: --tenant lists theirs)", strings.Join(page.OtherTenants, ", "))
		}
		fmt.Fprintln(stdout)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TRANSFER\tSOURCE\tPHASE\tUPLOADS\tNEEDS ACTION\tORIGINAL\tLAST EVENT")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", v.TransferID, v.Source, v.Phase, len(v.Uploads),
			orDash(deref(v.NeedsAction)), orDash(v.OriginalTransferID), ago(v.LastReceivedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if next != "" {
		fmt.Fprintf(stdout, "more: --all, or the API with cursor=%s\n", next)
	}
	return nil
}

func parsePoint(s string) (client.Point, error) {
	var n uint64
	if _, err := fmt.Sscan(s, &n); err == nil && !strings.ContainsAny(s, "-:T") {
		return client.Seq(n), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return client.Point{}, usageError("--at: want an RFC 3339 time or a stream sequence")
	}
	return client.Time(t), nil
}

func printTransfer(w io.Writer, v *engine.View) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	row("transfer", v.TransferID)
	row("phase", string(v.Phase))
	row("needs action", orDash(deref(v.NeedsAction)))
	row("source / issuer", string(v.Source)+" / "+v.Issuer)
	row("events", fmt.Sprint(v.Version))
	if v.Migration != nil {
		row("migration", v.Migration.MigrationID+" "+fmt.Sprintf("%q", v.Migration.Name))
		row("cloud site", v.Migration.CloudURL)
	}
	row("original transfer", orDash(v.OriginalTransferID))
	for _, u := range v.Uploads {
		row("upload", u.Key+" "+u.Label)
	}
	row("export completed", fmt.Sprint(v.ExportCompleted))
	if v.Error != nil {
		row("error", v.Error.ExceptionType)
	}
	if v.Settled != nil {
		row("settled", orDash(v.Settled.Status)+" at "+v.Settled.At.Format(time.RFC3339))
	}
	if v.Deadlines.SettleBy != nil {
		row("settle by", v.Deadlines.SettleBy.Format(time.RFC3339))
	}
	if v.Deadlines.TimesOutAt != nil {
		row("times out at", v.Deadlines.TimesOutAt.Format(time.RFC3339))
	}
	row("last event", v.LastReceivedAt.Format(time.RFC3339))
	tw.Flush()
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}
