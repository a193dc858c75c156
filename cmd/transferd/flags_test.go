package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func envOf(vars map[string]string) env { return func(k string) string { return vars[k] } }

// TestEnvPerCommand: a variable set for one command does not change
// another whose flag of the same name means something else.
func TestEnvPerCommand(t *testing.T) {
	// Every run stops at the bad --source, after the flags and the
	// environment are read: a variable that is read fails it earlier.
	generic := map[string]string{"TRANSFERD_TENANT": "nocolon", "TRANSFERD_TIMEOUT": "soon", "TRANSFERD_JSON": "maybe",
		"TRANSFERD_VERIFY": "maybe", "TRANSFERD_TENANTS": "lots"}
	var out lockedBuffer
	err := run(context.Background(), []string{"transferd", "simulate", "--install", "none", "--source", "both"}, envOf(generic), strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(err.Error(), `source "both"`) {
		t.Errorf("simulate with another command's generic variables: %v, want only the --source error", err)
	}
	err = run(context.Background(), []string{"transferd", "simulate", "--source", "both"}, envOf(map[string]string{"TRANSFERD_SIMULATE_TENANTS": "lots"}), strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "TRANSFERD_SIMULATE_TENANTS") {
		t.Errorf("TRANSFERD_SIMULATE_TENANTS is not read: %v", err)
	}
	err = run(context.Background(), []string{"transferd", "replay"}, envOf(generic), strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "exactly one of --verify or --rebuild") {
		t.Errorf("replay with TRANSFERD_VERIFY set: %v, want it ignored", err)
	}
	err = run(context.Background(), []string{"transferd", "replay"}, envOf(map[string]string{"TRANSFERD_REPLAY_VERIFY": "maybe"}), strings.NewReader(""), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "TRANSFERD_REPLAY_VERIFY") {
		t.Errorf("TRANSFERD_REPLAY_VERIFY is not read: %v", err)
	}
	// Shared settings keep one name everywhere.
	for _, c := range []struct{ args []string }{{[]string{"replay", "--verify"}}, {[]string{"tenants", "list"}}, {[]string{"audit", "export"}}} {
		err = run(context.Background(), append([]string{"transferd"}, c.args...), envOf(map[string]string{"TRANSFERD_SYNC": "sometimes"}), strings.NewReader(""), &out, &out)
		if err == nil || !strings.Contains(err.Error(), "TRANSFERD_SYNC") {
			t.Errorf("%v does not read TRANSFERD_SYNC: %v", c.args, err)
		}
	}
}

// TestHelpPages: every --help names each flag's variable, the usage
// lines name real flags, and no page ends with an empty Flags heading.
func TestHelpPages(t *testing.T) {
	pages := [][]string{{"serve"}, {"tenants"}, {"tenants", "add"}, {"tenants", "list"}, {"tenants", "remove"},
		{"transfers", "get"}, {"transfers", "list"}, {"replay"}, {"audit"}, {"simulate"}, {"webhook", "register"},
		{"webhook", "list"}, {"descriptor"}, {"version"}}
	for _, p := range pages {
		var out lockedBuffer
		err := run(context.Background(), append(append([]string{"transferd"}, p...), "--help"), noEnv, strings.NewReader(""), &out, &out)
		if !errors.Is(err, errHelp) {
			t.Errorf("%v --help: %v", p, err)
			continue
		}
		text := strings.TrimSpace(out.String())
		if strings.HasSuffix(text, "Flags (each also read from the environment variable shown):") || strings.HasSuffix(text, "Flags:") {
			t.Errorf("%v --help ends with an empty Flags heading:\n%s", p, text)
		}
		if strings.Contains(text, "TRANSFERD_TENANT]") || strings.Contains(text, "TRANSFERD_JSON]") || strings.Contains(text, "TRANSFERD_TIMEOUT]") {
			t.Errorf("%v --help shows a generic variable for a per-command flag:\n%s", p, text)
		}
	}
	var out lockedBuffer
	run(context.Background(), []string{"transferd", "tenants", "add", "--help"}, noEnv, strings.NewReader(""), &out, &out)
	for _, want := range []string{"--tenant-base-url URL", "[TRANSFERD_TENANTS_CLIENT_KEY]", "--force", "[TRANSFERD_DATA]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("tenants add --help lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "[--base-url") {
		t.Errorf("tenants add --help names --base-url, which tenants has not:\n%s", out.String())
	}
}

// TestUnknownFlagOnce: an unknown flag is one error, no usage dump.
func TestUnknownFlagOnce(t *testing.T) {
	var stdout, stderr lockedBuffer
	err := run(context.Background(), []string{"transferd", "replay", "--verfy"}, noEnv, strings.NewReader(""), &stdout, &stderr)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "-verfy") || !strings.Contains(err.Error(), "--help") {
		t.Errorf("unknown flag: %v (exit %d)", err, exitCode(err))
	}
	if stderr.String() != "" || stdout.String() != "" {
		t.Errorf("unknown flag printed more than the error:\n%s%s", stdout.String(), stderr.String())
	}
	if got := errorLine(fmt.Errorf("transferd: 400 invalid_filter: bad")); got != "transferd: 400 invalid_filter: bad" {
		t.Errorf("errorLine = %q", got)
	}
}
