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

// newFlags returns a flag set whose --help prints about, the flags and the
// environment variable of each.
func newFlags(name, about string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("transferd "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: transferd %s [flags]\n\n%s\n\nFlags (each also read from the environment variable shown):\n", name, strings.TrimSpace(about))
		fs.VisitAll(func(f *flag.Flag) {
			typ, use := flag.UnquoteUsage(f)
			fmt.Fprintf(out, "  --%s", f.Name)
			if typ != "" {
				fmt.Fprintf(out, " %s", typ)
			}
			fmt.Fprintf(out, "    [%s]\n        %s", envName(f.Name), strings.ReplaceAll(use, "\n", "\n        "))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
				fmt.Fprintf(out, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(out)
		})
	}
	return fs
}

// envName is the environment variable of a flag: TRANSFERD_ and its name
// in upper case with dashes as underscores.
func envName(flagName string) string {
	return "TRANSFERD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse parses args, then fills every flag not given on the command line
// from its environment variable.
func parse(fs *flag.FlagSet, args []string, getenv env) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageError(err.Error())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = usageError(fmt.Sprintf("%s=%q: %v", envName(f.Name), v, e))
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
