package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// errHelp is returned after --help has been printed: exit 0, say nothing.
var errHelp = flag.ErrHelp

// usageErr is a mistake on the command line: exit code 2.
type usageErr struct{ msg string }

func (e usageErr) Error() string { return e.msg }

func usageError(msg string) error { return usageErr{msg} }

func exitCode(err error) int {
	var ue usageErr
	switch {
	case errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ue):
		return 2
	}
	return 1
}

// sharedFlags mean the same in every command that has them, so they read
// the same variable, TRANSFERD_<FLAG>, everywhere: where the journal lives,
// the query API token, and what serve is (its base URL, webhook path,
// Forge app and Connect app key), which the other commands must agree with.
var sharedFlags = map[string]bool{
	"data": true, "nats-url": true, "nats-creds": true, "replicas": true, "sync": true,
	"api-token": true, "api-token-file": true,
	"base-url": true, "connect-path": true, "forge-app-ari": true, "app-key": true,
	"log-level": true, "log-format": true,
}

// newFlags returns a flag set whose --help prints about, the flags and the
// environment variable of each. name is the command, then its subcommand
// if any ("tenants add"): the command names the variables (see envName).
// Flags are declared on it as on any flag.FlagSet.
func newFlags(name, about string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("transferd "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: transferd %s [flags]\n\n%s\n", name, strings.TrimSpace(about))
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n == 0 {
			return
		}
		fmt.Fprint(out, "\nFlags (each also read from the environment variable shown):\n")
		fs.VisitAll(func(f *flag.Flag) {
			typ, use := flag.UnquoteUsage(f)
			fmt.Fprintf(out, "  --%s", f.Name)
			if typ != "" {
				fmt.Fprintf(out, " %s", typ)
			}
			if env := envName(fs, f.Name); env != "" {
				fmt.Fprintf(out, "    [%s]", env)
			}
			fmt.Fprintf(out, "\n        %s", strings.ReplaceAll(use, "\n", "\n        "))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
				fmt.Fprintf(out, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(out)
		})
	}
	return fs
}

// commandOf is the command a flag set belongs to: "simulate" for
// "transferd simulate", "tenants" for "transferd tenants add".
func commandOf(fs *flag.FlagSet) string {
	f := strings.Fields(fs.Name())
	if len(f) < 2 {
		return ""
	}
	return strings.SplitN(f[1], "|", 2)[0]
}

// envName is the environment variable of a flag of fs. serve's flags and
// the shared ones read TRANSFERD_<FLAG>; another command's read
// TRANSFERD_<COMMAND>_<FLAG>, so that a setting of one command never
// changes another (TRANSFERD_WEBHOOK_TENANT is not simulate's --tenant).
// One-letter aliases read none: their long flag's variable applies.
// Names are upper case, dashes as underscores.
func envName(fs *flag.FlagSet, flagName string) string {
	if len(flagName) == 1 {
		return ""
	}
	upper := func(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }
	cmd := commandOf(fs)
	if cmd == "serve" || cmd == "" || sharedFlags[flagName] {
		return "TRANSFERD_" + upper(flagName)
	}
	return "TRANSFERD_" + upper(cmd) + "_" + upper(flagName)
}

// parse parses args, then fills every flag not given on the command line
// from its environment variable. A mistake is a usage error naming the
// flag, printed once by main (never with the whole usage).
func parse(fs *flag.FlagSet, args []string, getenv env) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return errHelp
		}
		return usageError(fmt.Sprintf("%s: %v (see %s --help)", strings.TrimPrefix(fs.Name(), "transferd "), err, fs.Name()))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(fs, f.Name)
		if set[f.Name] || err != nil || name == "" {
			return
		}
		if v := getenv(name); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = usageError(fmt.Sprintf("%s=%q: %v", name, v, e))
			}
		}
	})
	return err
}

// listFlag is a repeatable flag; each value may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}
