package main

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// quantiles of one op on one snapshotter, in microseconds.
type quantiles struct {
	P50 float64 `json:"p50_us"`
	P99 float64 `json:"p99_us"`
	N   int     `json:"n"`
}

type column struct {
	Name string               `json:"name"`
	Ops  map[string]quantiles `json:"ops"`
}

// report is what one run measured; bench/snapshotter.ts reads it as JSON.
type report struct {
	Iterations int      `json:"iterations"`
	Rounds     int      `json:"rounds"`
	Background int      `json:"background"`
	Depth      int      `json:"depth"`
	Write      bool     `json:"write"`
	Ops        []string `json:"ops"`
	Columns    []column `json:"columns"`
}

// summarize takes the nearest-rank p50 and p99.
func summarize(xs []time.Duration) quantiles {
	if len(xs) == 0 {
		return quantiles{}
	}
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.5) - 1
		if i < 0 {
			i = 0
		}
		if i >= len(s) {
			i = len(s) - 1
		}
		return float64(s[i].Nanoseconds()) / 1e3
	}
	return quantiles{P50: at(0.50), P99: at(0.99), N: len(s)}
}

// markdown is a table of p50 / p99 in µs, with each p50's ratio to "overlay via proxy" (the same
// gRPC path strata is reached by).
func (r report) markdown() string {
	var b strings.Builder
	ref := 0
	for i, c := range r.Columns {
		if c.Name == "overlay via proxy" {
			ref = i
		}
	}
	fmt.Fprintf(&b, "\n%d iterations in %d interleaved rounds, %d committed snapshots present, deep parent %d layers down to the base; p50 / p99 µs (p50 ratio to %s)\n\n",
		r.Iterations, r.Rounds, r.Background, r.Depth, r.Columns[ref].Name)
	names := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		names[i] = c.Name
	}
	fmt.Fprintf(&b, "| call | %s |\n|---|%s\n", strings.Join(names, " | "), strings.Repeat("---|", len(names)))
	for _, op := range r.Ops {
		cells := make([]string, len(r.Columns))
		base := r.Columns[ref].Ops[op].P50
		for i, c := range r.Columns {
			q := c.Ops[op]
			cells[i] = fmt.Sprintf("%.0f / %.0f (%.2fx)", q.P50, q.P99, q.P50/base)
		}
		fmt.Fprintf(&b, "| %s | %s |\n", op, strings.Join(cells, " | "))
	}
	return b.String()
}
