// Command benchsummary reads the output of `go test -bench` (as `make
// bench` writes it) and prints the figures of issue 11's table: each
// figure, its ratio to the ceiling measured in the same run where one
// applies, and the goal. Figures a run did not measure are left out.
//
//	go run ./cmd/benchsummary < bin/bench.txt
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
)

// result is one benchmark line: its name without the GOMAXPROCS suffix and
// its metrics by unit.
type result struct {
	name    string
	metrics map[string]float64
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parse returns the benchmark lines of r in order.
func parse(r io.Reader) ([]result, error) {
	var out []result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		res := result{name: m[1], metrics: make(map[string]float64, len(f)/2)}
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			res.metrics[f[i+1]] = v
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// last returns the metrics of the last line whose name has prefix and
// contains every one of parts, or nil.
func last(rs []result, prefix string, parts ...string) map[string]float64 {
	for i := len(rs) - 1; i >= 0; i-- {
		if !strings.HasPrefix(rs[i].name, prefix) {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(rs[i].name, p)
		}
		if ok {
			return rs[i].metrics
		}
	}
	return nil
}

// row is one line of the summary.
type row struct{ figure, value, goal string }

// summarize turns the results into the rows of issue 11's table.
func summarize(rs []result) []row {
	var rows []row
	if m := last(rs, "BenchmarkDurability"); m != nil {
		rows = append(rows,
			row{"ingest --sync always, × ceiling (bare handler + JetStream publish)",
				fmt.Sprintf("%.2f× (%.0f vs %.0f events/s), p99 %.1f ms",
					m["always/ceiling"], m["always-events/s"], m["ceiling-events/s"], m["always-p99-ms"]),
				"≥ 0.8×, p99 ≤ 20 ms"},
			row{"ingest --sync interval, × ceiling",
				fmt.Sprintf("%.2f× (%.0f events/s), p99 %.1f ms",
					m["interval/ceiling"], m["interval-events/s"], m["interval-p99-ms"]),
				"≥ 0.9×"})
	}
	if m := last(rs, "BenchmarkServeMemory"); m != nil {
		v := fmt.Sprintf("%.0f MB after %.0f events / %.0f transfers (", m["peak-RSS-MB"], m["events"], m["transfers"])
		if anon, ok := m["peak-anon-RSS-MB"]; ok {
			v += fmt.Sprintf("anonymous %.0f MB, ", anon)
		}
		v += fmt.Sprintf("heap in use %.0f MB)", m["heap-inuse-MB"])
		rows = append(rows, row{"serve peak RSS", v, "≤ 150 MB after 1M events / 250k transfers"})
	}
	if m := last(rs, "BenchmarkCatchUp", "mode=rebuild"); m != nil {
		v := fmt.Sprintf("%.0f events/s, peak live heap %.0f MB", m["events/s"], m["peak-live-heap-MB"])
		if c, ok := m["read-events/s"]; ok && c > 0 {
			v = fmt.Sprintf("%.2f× reading the stream alone (%.0f events/s); ", m["events/s"]/c, c) + v
		}
		if rss, ok := m["peak-RSS-MB"]; ok {
			v += fmt.Sprintf(", peak RSS %.0f MB", rss)
		}
		rows = append(rows, row{"rebuild of the projection", v, "≥ 100k events/s, ≤ 150 MB"})
	}
	if m := last(rs, "BenchmarkLag"); m != nil {
		rows = append(rows, row{"webhook 200 → GET lag, whole serve --sync always",
			fmt.Sprintf("p50 %.1f ms, p99 %.1f ms at %.0f events/s (asked %.0f), request p99 %.1f ms",
				m["lag-p50-ms"], m["lag-p99-ms"], m["events/s"], m["target-events/s"], m["request-p99-ms"]),
			"p99 ≤ 50 ms at 5,000 events/s"})
	}
	return rows
}

func main() {
	rs, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchsummary:", err)
		os.Exit(1)
	}
	rows := summarize(rs)
	if len(rows) == 0 {
		fmt.Fprintln(os.Stderr, "benchsummary: no figures of issue 11's table in the input")
		os.Exit(1)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "figure\tthis run\tgoal")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%s\n", r.figure, r.value, r.goal)
	}
	w.Flush()
}
