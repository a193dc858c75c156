// Command transferd takes in Atlassian app-migration events (Connect
// webhooks and Forge remote events), appends them to NATS JetStream and
// folds them into transfer state that partners query, subscribe to and
// audit. Run "transferd help" for the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errHelp) {
			fmt.Fprintln(os.Stderr, errorLine(err))
		}
		os.Exit(exitCode(err))
	}
}

// errorLine is how main reports err: once, after one "transferd: " (the
// API client's errors carry that prefix themselves).
func errorLine(err error) string {
	return "transferd: " + strings.TrimPrefix(err.Error(), "transferd: ")
}

// env is the process environment, as os.Getenv.
type env func(string) string

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, getenv env, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "take in migration events and serve queries (the main job)", runServe},
		{"tenants", "add, list or remove Connect tenants (installations)", runTenants},
		{"transfers", "get or list transfers from a running server's query API", runTransfers},
		{"work", "importer work: claim, report, dead letters, requeue (serve --work)", runWork},
		{"replay", "verify the projection against the stream, or rebuild it", runReplay},
		{"audit", "export the stream as JSON Lines with the exact payloads received", runAudit},
		{"simulate", "play the migration platform against a server: signed, shuffled, duplicated events", runSimulate},
		{"webhook", "register, list or clear a tenant's migration webhook (Notification API)", runWebhook},
		{"descriptor", "print the atlassian-connect.json entries for this server", runDescriptor},
		{"version", "print the version", runVersion},
	}
}

// run is main without the process: everything testable lives behind it.
func run(ctx context.Context, args []string, getenv env, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		usage(stderr)
		return usageError("no command given")
	}
	name := args[1]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(args) > 2 {
			return run(ctx, []string{args[0], args[2], "--help"}, getenv, stdin, stdout, stderr)
		}
		usage(stdout)
		return nil
	case "-v", "--version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args[2:], getenv, stdin, stdout, stderr)
		}
	}
	usage(stderr)
	return usageError(fmt.Sprintf("unknown command %q", name))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `transferd — reliable intake of Atlassian app-migration events.

Usage:
  transferd <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "transferd <command> --help" for a command's flags and the environment
variable of each. serve's flags, and those that mean the same everywhere
(--data, --nats-url, --api-token, --base-url …), read TRANSFERD_<FLAG>:
--nats-url is TRANSFERD_NATS_URL. The other commands' flags read
TRANSFERD_<COMMAND>_<FLAG>: simulate --tenants is TRANSFERD_SIMULATE_TENANTS.
`)
}

func runVersion(_ context.Context, args []string, getenv env, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("version", "Print transferd's version.", stderr)
	if err := parse(fs, args, getenv); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "transferd", version)
	return nil
}
