package main

import (
	"bytes"
	"regexp"
	"testing"
)

// TestProgressLine checks the line a non-terminal gets: events done of
// the total, the share, the rate and an ETA, and a last line at the end.
func TestProgressLine(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, "events")
	p.update(0, 200)
	p.update(200, 200)
	p.finish()
	want := regexp.MustCompile(`(?m)^200/200 events \(100%\), \d+/s, ETA 0s$`)
	if !want.Match(out.Bytes()) {
		t.Fatalf("progress output %q has no line matching %s", out.String(), want)
	}
	if !regexp.MustCompile(`(?m)^0/200 events \(0%\), 0/s, ETA -$`).Match(out.Bytes()) {
		t.Fatalf("progress output %q: the first line should show no ETA yet", out.String())
	}
}
