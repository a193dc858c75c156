package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/transferd/transferd/api/client"
)

const workAbout = `Importer work on a running server (serve --work): each uploaded piece of app
data is one unit of work.

  transferd work claim [--json]                  lease the next upload to import
  transferd work report TRANSFER KEY --status done|failed|progress [--retryable]
                        [--percent N] [--message M] [--attempt N]
                                                 progress (percent 0-100) extends the lease
  transferd work dead-letters [--json]           uploads that failed for good
  transferd work requeue TRANSFER KEY [--message M]
  transferd work run [--importers N] [--fail-rate F] [--retry-rate F]
                                                 importers for demos (see work run --help)

A tenant-scoped token (a line "tenant=<issuer> <token>" in serve's
--api-token-file) claims and reports only its tenant's uploads; a report on
another tenant's transfer is refused (403 tenant_mismatch).

The API token is --api-token or TRANSFERD_API_TOKEN.`

func runWork(ctx context.Context, args []string, getenv env, _ io.Reader, stdout, stderr io.Writer) error {
	subs := map[string]int{"claim": 0, "report": 2, "dead-letters": 0, "requeue": 2}
	if len(args) == 0 {
		args = []string{""}
	}
	sub := args[0]
	if sub == "run" {
		return runWorkRun(ctx, args[1:], getenv, stdout, stderr)
	}
	nargs, ok := subs[sub]
	if !ok {
		fs := newFlags("work claim|report|dead-letters|requeue|run", workAbout, stderr)
		if err := parse(fs, args, getenv); err != nil {
			return err
		}
		return usageError("work: want claim, report, dead-letters, requeue or run")
	}
	args = args[1:]
	fs := newFlags("work "+sub, workAbout, stderr)
	var server, token, status, message string
	var asJSON, retryable bool
	var attempt, percent int
	fs.StringVar(&server, "server", "http://127.0.0.1:8080", "`URL` of the transferd server")
	fs.StringVar(&token, "api-token", "", "API `token` (partner-wide or tenant-scoped)")
	switch sub {
	case "claim", "dead-letters":
		fs.BoolVar(&asJSON, "json", false, "print the API's JSON instead of a table")
	case "report":
		fs.StringVar(&status, "status", "", "done, failed or progress")
		fs.IntVar(&percent, "percent", 0, "progress only: how far the import is, 0-100")
		fs.BoolVar(&retryable, "retryable", false, "failed only: try again after a backoff")
		fs.StringVar(&message, "message", "", "what happened")
		fs.IntVar(&attempt, "attempt", 0, "the claim's attempt (default: the open lease's, else the next)")
	case "requeue":
		fs.StringVar(&message, "message", "", "why it is requeued")
	}
	// The transfer id and key may come before the flags.
	var pos []string
	for len(args) > 0 && len(pos) < nargs && !strings.HasPrefix(args[0], "-") {
		pos, args = append(pos, args[0]), args[1:]
	}
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	pos = append(pos, fs.Args()...)
	if len(pos) != nargs {
		return usageError(fmt.Sprintf("work %s: want %d arguments (TRANSFER KEY), got %d", sub, nargs, len(pos)))
	}
	if token == "" {
		return usageError("work: no API token: pass --api-token or set TRANSFERD_API_TOKEN")
	}
	c := client.New(server, token)
	switch sub {
	case "claim":
		it, err := c.Claim(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return writeIndented(stdout, it)
		}
		if it == nil {
			fmt.Fprintln(stdout, "nothing to import now")
			return nil
		}
		fmt.Fprintf(stdout, "transfer %s upload %s (%s) attempt %d, lease until %s\n", it.TransferID, it.Key, it.Label, it.Attempt, it.LeaseUntil.Format("2006-01-02T15:04:05Z07:00"))
		return nil
	case "report":
		if status != "done" && status != "failed" && status != "progress" {
			return usageError("work report: --status must be done, failed or progress")
		}
		res, err := c.Report(ctx, pos[0], pos[1], client.WorkReport{Status: status, Retryable: retryable, Percent: percent, Message: message, Attempt: attempt})
		if err != nil {
			return err
		}
		return writeIndented(stdout, res)
	case "requeue":
		res, err := c.Requeue(ctx, pos[0], pos[1], message)
		if err != nil {
			return err
		}
		return writeIndented(stdout, res)
	}
	dl, err := c.DeadLetters(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return writeIndented(stdout, dl)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TRANSFER\tTENANT\tKEY\tLABEL\tATTEMPT\tBY\tAT\tMESSAGE")
	for _, d := range dl {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", d.TransferID, d.Tenant, d.Key, d.Label, d.Work.Attempt, d.Work.By,
			d.Work.At.Format("2006-01-02T15:04:05Z07:00"), d.Work.Message)
	}
	return tw.Flush()
}
