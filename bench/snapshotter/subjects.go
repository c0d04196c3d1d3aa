//go:build linux
// +build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/snapshots/overlay"
	"github.com/containerd/containerd/snapshots/proxy"
	"google.golang.org/grpc"
)

const (
	// The name the proxy sends in every request, as containerd does for [proxy_plugins.strata].
	proxyName    = "strata"
	startTimeout = 30 * time.Second
	stopTimeout  = 15 * time.Second
)

// newInProcess is containerd's overlay snapshotter, called directly.
func newInProcess(root string) (*subject, error) {
	sn, err := overlay.NewSnapshotter(filepath.Join(root, "store"))
	if err != nil {
		return nil, fmt.Errorf("overlay snapshotter: %w", err)
	}
	return newSubject("overlay in-process", root, sn, sn.Close), nil
}

// newServed is containerd's overlay snapshotter behind snapshotservice on a unix socket, reached
// through the proxy client: the same gRPC path strata is reached by.
func newServed(ctx context.Context, root string) (*subject, error) {
	sn, err := overlay.NewSnapshotter(filepath.Join(root, "store"))
	if err != nil {
		return nil, fmt.Errorf("overlay snapshotter: %w", err)
	}
	sock := filepath.Join(root, "overlay.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		sn.Close()
		return nil, err
	}
	srv := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
	go srv.Serve(l)
	conn, err := dial(ctx, sock)
	if err != nil {
		srv.Stop()
		sn.Close()
		return nil, err
	}
	closeFn := func() error {
		conn.Close()
		srv.Stop()
		return sn.Close()
	}
	return newSubject("overlay via proxy", root, proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), proxyName), closeFn), nil
}

// newStrata starts `exe args... snapshotter --driver <driver>` and reaches it through the proxy.
func newStrata(ctx context.Context, root, exe string, args []string, driver string) (*subject, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, err
	}
	sock := filepath.Join(root, "strata.sock")
	argv := append(append([]string{}, args...), "snapshotter", "--driver", driver,
		"--root", filepath.Join(root, "store"), "--socket", sock, "--log-level", logLevel())
	var out bytes.Buffer
	cmd := exec.Command(exe, argv...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if lf := os.Getenv("STRATA_BENCH_LOG_DIR"); lf != "" {
		f, err := os.Create(filepath.Join(lf, "strata-"+driver+".log"))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = f, f
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case werr := <-exited:
			return nil, fmt.Errorf("strata %s exited (%v) before listening:\n%s", driver, werr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			kill()
			return nil, fmt.Errorf("strata %s did not listen on %s within %v:\n%s", driver, sock, startTimeout, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn, err := dial(ctx, sock)
	if err != nil {
		kill()
		return nil, err
	}
	closeFn := func() error {
		conn.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("strata exited with %v on SIGTERM:\n%s", err, out.String())
			}
			return nil
		case <-time.After(stopTimeout):
			kill()
			return fmt.Errorf("strata did not exit within %v of SIGTERM: killed it", stopTimeout)
		}
	}
	return newSubject("strata "+driver, root, proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), proxyName), closeFn), nil
}

// logLevel is strata's --log-level: warn, unless STRATA_BENCH_LOG_LEVEL says otherwise (debug
// logs each call's milliseconds, for profiling).
func logLevel() string {
	if l := os.Getenv("STRATA_BENCH_LOG_LEVEL"); l != "" {
		return l
	}
	return "warn"
}

func dial(ctx context.Context, sock string) (*grpc.ClientConn, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(dctx, "unix://"+sock, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}))
	if err != nil {
		return nil, fmt.Errorf("grpc dial %s: %w", sock, err)
	}
	return conn, nil
}

// fill mounts an active snapshot's mounts, writes a 4 KiB file into it and unmounts: what an
// unpacker does between Prepare and Commit, so Commit and Usage see a layer with content.
func (s *subject) fill(mounts []mount.Mount) error {
	target := filepath.Join(s.root, "mnt")
	if err := os.MkdirAll(target, 0o700); err != nil {
		return err
	}
	if err := mount.All(mounts, target); err != nil {
		return err
	}
	werr := os.WriteFile(filepath.Join(target, "file"), make([]byte, 4096), 0o644)
	if err := mount.UnmountAll(target, 0); err != nil {
		return err
	}
	return werr
}

// unmountUnder lazily unmounts whatever is still mounted at or below dir, deepest first.
func unmountUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var left []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			left = append(left, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(left)))
	for _, mp := range left {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			fmt.Fprintf(os.Stderr, "snapshotter-bench: unmount %s: %v\n", mp, err)
		}
	}
	return left
}

func fatalf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "snapshotter-bench: "+format+"\n", args...)
	os.Exit(1)
}
