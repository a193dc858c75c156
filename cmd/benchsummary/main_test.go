package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkCatchUp/events=175000/mode=serve-2         	       1	9000000000 ns/op	 19444 events/s	 51.00 peak-live-heap-MB
BenchmarkCatchUp/events=175000/mode=rebuild-2       	       1	5000000000 ns/op	 35000 events/s	 30.00 cpu-µs/event	 60.00 peak-live-heap-MB
PASS
BenchmarkDurability-2   	  100000	     60000 ns/op	 16000 ceiling-events/s	 3.4 ceiling-p50-ms	 14.1 ceiling-p99-ms	 9900 interval-events/s	 22.1 interval-p99-ms	 7000 always-events/s	 31.5 always-p99-ms	 0.6187 interval/ceiling	 0.4375 always/ceiling	   5000 B/op	      40 allocs/op
BenchmarkServeMemory-2  	       1	80000000000 ns/op	 1370 peak-RSS-MB	 1100 peak-anon-RSS-MB	 1200 RSS-MB	 580 heap-inuse-MB	 200000 events	 50000 transfers
BenchmarkLag-2          	   50000	     20000 ns/op	 5000 target-events/s	 3020 events/s	 8.2 lag-p50-ms	 43.8 lag-p99-ms	 12500 lag-samples	 57.2 request-p99-ms
`

func TestSummarize(t *testing.T) {
	rs, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 5 {
		t.Fatalf("parsed %d benchmark lines, want 5", len(rs))
	}
	if got := rs[2].name; got != "BenchmarkDurability" {
		t.Errorf("name %q: the -GOMAXPROCS suffix should be cut", got)
	}
	rows := summarize(rs)
	want := []struct{ figure, value string }{
		{"always", "0.44× (7000 vs 16000 events/s), p99 31.5 ms"},
		{"interval", "0.62× (9900 events/s), p99 22.1 ms"},
		{"RSS", "1370 MB after 200000 events / 50000 transfers (anonymous 1100 MB, heap in use 580 MB)"},
		{"rebuild", "35000 events/s, peak live heap 60 MB"}, // mode=rebuild, not mode=serve
		{"lag", "p99 43.8 ms at 3020 events/s (asked 5000)"},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		if !strings.Contains(rows[i].figure, w.figure) || !strings.Contains(rows[i].value, w.value) {
			t.Errorf("row %d = %q %q, want %q containing %q", i, rows[i].figure, rows[i].value, w.figure, w.value)
		}
	}
}

func TestSummarizeRebuildCeiling(t *testing.T) {
	rs, err := parse(strings.NewReader(
		"BenchmarkCatchUp/events=1000/mode=rebuild-2  1  100 ns/op  40000 events/s  80000 read-events/s  12 peak-live-heap-MB  90 peak-RSS-MB\n"))
	if err != nil {
		t.Fatal(err)
	}
	rows := summarize(rs)
	if len(rows) != 1 || !strings.HasPrefix(rows[0].value, "0.50× reading the stream alone (80000 events/s)") ||
		!strings.HasSuffix(rows[0].value, "peak RSS 90 MB") {
		t.Fatalf("rows = %+v", rows)
	}
}

func TestSummarizeNothing(t *testing.T) {
	rs, err := parse(strings.NewReader("ok  \tgithub.com/x\t0.1s\nBenchmarkOther-2  10  5 ns/op\n"))
	if err != nil {
		t.Fatal(err)
	}
	if rows := summarize(rs); len(rows) != 0 {
		t.Fatalf("rows = %+v, want none", rows)
	}
}
