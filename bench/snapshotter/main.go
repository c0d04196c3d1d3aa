//go:build linux
// +build linux

// Command snapshotter-bench measures snapshotter calls one at a time (Prepare, Mounts, Stat, Usage,
// Commit, View, Remove, List) on four snapshotters side by side:
//
//   - overlay in-process: containerd's overlay snapshotter called directly (no gRPC)
//   - overlay via proxy: the same served through contrib/snapshotservice on a unix socket and
//     reached through snapshots/proxy, the way containerd reaches a proxy plugin
//   - strata overlay, strata vfs: `$exe [args...] snapshotter --driver <d>` started by this program,
//     reached through the same proxy client
//
// Rounds are interleaved (each round runs iterations/rounds iterations on every snapshotter, in an
// order that rotates) so machine noise lands on all of them alike. It prints JSON (for
// bench/snapshotter.ts) or a Markdown table. Needs root when -write is on (it mounts).
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= CGO_ENABLED=0 go build -o /tmp/sb .
//	/tmp/sb -strata dist/strata -n 500 -rounds 5 -format md
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
)

// The ops timed in one iteration, in the order they run.
var ops = []string{"Prepare", "Mounts", "Stat", "Usage", "Commit", "View", "Remove (view)", "List (all)", "Remove (committed)",
	"Prepare (deep parent)", "Mounts (deep parent)", "Remove (deep parent)"}

// A label like the ones containerd's unpacker puts on every snapshot.
const refLabel = "containerd.io/snapshot.ref"

func main() {
	var (
		n          = flag.Int("n", 500, "iterations per snapshotter (each times every op once)")
		rounds     = flag.Int("rounds", 5, "interleaved rounds the iterations are split into")
		background = flag.Int("background", 100, "committed snapshots present throughout (what List returns)")
		depth      = flag.Int("depth", 100, "layers in the chain the \"deep parent\" ops build on")
		write      = flag.Bool("write", true, "mount each active snapshot and write a 4 KiB file before Commit (untimed)")
		strataExe  = flag.String("strata", "", "strata executable; empty leaves the strata columns out")
		strataArgs = flag.String("strata-args", "", "arguments before `snapshotter` (e.g. src/main.bun.ts for bun)")
		drivers    = flag.String("drivers", "overlay,vfs", "strata drivers to run")
		format     = flag.String("format", "md", "md or json")
		tmpdir     = flag.String("tmp", os.TempDir(), "where the snapshotters' roots go (sockets too: keep it short)")
	)
	flag.Parse()
	if *rounds < 1 || *n < *rounds {
		fatalf("-n must be at least -rounds (%d < %d)", *n, *rounds)
	}

	work, err := os.MkdirTemp(*tmpdir, "strata-sbench-")
	if err != nil {
		fatalf("%v", err)
	}
	ctx := namespaces.WithNamespace(context.Background(), "bench")
	var subjects []*subject
	defer func() {
		for _, s := range subjects {
			if err := s.close(); err != nil {
				fmt.Fprintf(os.Stderr, "snapshotter-bench: closing %s: %v\n", s.name, err)
			}
		}
		if left := unmountUnder(work); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "snapshotter-bench: unmounted leftovers: %s\n", strings.Join(left, ", "))
		}
		os.RemoveAll(work)
	}()

	add := func(s *subject, err error) {
		if err != nil {
			fatalf("%v", err)
		}
		subjects = append(subjects, s)
	}
	add(newInProcess(filepath.Join(work, "a")))
	add(newServed(ctx, filepath.Join(work, "b")))
	if *strataExe != "" {
		for _, d := range strings.Split(*drivers, ",") {
			add(newStrata(ctx, filepath.Join(work, "s-"+d), *strataExe, strings.Fields(*strataArgs), d))
		}
	}

	for _, s := range subjects {
		fmt.Fprintf(os.Stderr, "snapshotter-bench: %s: setting up %d background snapshots\n", s.name, *background)
		if err := s.setup(ctx, *background, *depth); err != nil {
			fatalf("%s: setup: %v", s.name, err)
		}
	}
	per := *n / *rounds
	for r := 0; r < *rounds; r++ {
		for j := range subjects {
			s := subjects[(j+r)%len(subjects)]
			fmt.Fprintf(os.Stderr, "snapshotter-bench: round %d/%d: %s\n", r+1, *rounds, s.name)
			for i := 0; i < per; i++ {
				if err := s.iterate(ctx, r*per+i, *write); err != nil {
					fatalf("%s: iteration %d: %v", s.name, r*per+i, err)
				}
			}
		}
	}

	res := report{Iterations: per * *rounds, Rounds: *rounds, Background: *background, Depth: *depth, Write: *write, Ops: ops}
	for _, s := range subjects {
		col := column{Name: s.name, Ops: map[string]quantiles{}}
		for _, op := range ops {
			col.Ops[op] = summarize(s.samples[op])
		}
		res.Columns = append(res.Columns, col)
	}
	if *format == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fatalf("%v", err)
		}
		return
	}
	fmt.Print(res.markdown())
}

// subject is one snapshotter under test and its samples per op.
type subject struct {
	name    string
	sn      snapshots.Snapshotter
	root    string
	close   func() error
	samples map[string][]time.Duration
	// The top of the chain setup built.
	deepParent string
}

func newSubject(name, root string, sn snapshots.Snapshotter, closeFn func() error) *subject {
	return &subject{name: name, sn: sn, root: root, close: closeFn, samples: map[string][]time.Duration{}}
}

// setup makes the base every iteration builds on, the background snapshots List returns, and a
// chain of depth committed layers (base at the bottom) whose top is the deep parent.
func (s *subject) setup(ctx context.Context, background, depth int) error {
	if _, err := s.sn.Prepare(ctx, "base-active", ""); err != nil {
		return err
	}
	if err := s.sn.Commit(ctx, "base", "base-active"); err != nil {
		return err
	}
	parent := "base"
	for i := 1; i < depth; i++ {
		key := fmt.Sprintf("chain-%d", i)
		if _, err := s.sn.Prepare(ctx, key+"-active", parent); err != nil {
			return err
		}
		if err := s.sn.Commit(ctx, key, key+"-active"); err != nil {
			return err
		}
		parent = key
	}
	s.deepParent = parent
	for i := 0; i < background; i++ {
		key := fmt.Sprintf("bg-%d", i)
		if _, err := s.sn.Prepare(ctx, key+"-active", "base", snapshots.WithLabels(map[string]string{refLabel: key})); err != nil {
			return err
		}
		if err := s.sn.Commit(ctx, key, key+"-active"); err != nil {
			return err
		}
	}
	return nil
}

func (s *subject) time(op string, fn func() error) error {
	start := time.Now()
	err := fn()
	s.samples[op] = append(s.samples[op], time.Since(start))
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// iterate is what unpacking one layer and looking at it does: Prepare on the base, fill it,
// Mounts/Stat/Usage, Commit, a View of the result, then tear both down again; then what starting
// a container on a deep image does to the snapshotter: Prepare on the deep parent, Mounts, Remove.
func (s *subject) iterate(ctx context.Context, i int, write bool) error {
	active, committed, view, deep := fmt.Sprintf("active-%d", i), fmt.Sprintf("committed-%d", i), fmt.Sprintf("view-%d", i), fmt.Sprintf("deep-%d", i)
	labels := snapshots.WithLabels(map[string]string{refLabel: committed})
	var prepared []mount.Mount
	steps := []struct {
		op string
		fn func() error
	}{
		{"Prepare", func() (err error) { prepared, err = s.sn.Prepare(ctx, active, "base", labels); return err }},
		{"Mounts", func() error { _, err := s.sn.Mounts(ctx, active); return err }},
		{"Stat", func() error { _, err := s.sn.Stat(ctx, active); return err }},
		{"Usage", func() error { _, err := s.sn.Usage(ctx, active); return err }},
		{"Commit", func() error { return s.sn.Commit(ctx, committed, active, labels) }},
		{"View", func() error { _, err := s.sn.View(ctx, view, committed); return err }},
		{"Remove (view)", func() error { return s.sn.Remove(ctx, view) }},
		{"List (all)", func() error {
			n := 0
			err := s.sn.Walk(ctx, func(context.Context, snapshots.Info) error { n++; return nil })
			if err == nil && n < 2 {
				err = fmt.Errorf("walk returned %d snapshots", n)
			}
			return err
		}},
		{"Remove (committed)", func() error { return s.sn.Remove(ctx, committed) }},
		{"Prepare (deep parent)", func() error { _, err := s.sn.Prepare(ctx, deep, s.deepParent, labels); return err }},
		{"Mounts (deep parent)", func() error { _, err := s.sn.Mounts(ctx, deep); return err }},
		{"Remove (deep parent)", func() error { return s.sn.Remove(ctx, deep) }},
	}
	for k, st := range steps {
		if err := s.time(st.op, st.fn); err != nil {
			return err
		}
		// Untimed, between Prepare and the rest: what an unpacker writes into the snapshot.
		if k == 0 && write {
			if err := s.fill(prepared); err != nil {
				return fmt.Errorf("fill %s: %w", active, err)
			}
		}
	}
	return nil
}
