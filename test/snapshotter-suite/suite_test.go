//go:build linux
// +build linux

// Package snapshottersuite runs containerd's own, unmodified snapshotter test suite
// (github.com/containerd/containerd/snapshots/testsuite) against proxy snapshotters reached over
// gRPC on a unix socket, the way containerd itself talks to a proxy plugin.
//
//   - TestOverlayBaseline: containerd's overlay snapshotter served in-process through
//     contrib/snapshotservice. It shows the suite, the proxy and this machine work.
//   - TestStrata: a separate process per suite case,
//     $STRATA_SNAPSHOTTER [$STRATA_SNAPSHOTTER_ARGS...] snapshotter --driver $STRATA_SNAPSHOTTER_DRIVER
//     --root <caseRoot>/store --socket <caseRoot>/strata.sock --log-level warn
//
// Both need root (the suite mounts what the snapshotter returns). Run through
// scripts/snapshotter-suite.sh, which builds this in GOPATH mode from Debian's golang-*-dev packages.
package snapshottersuite

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
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/overlay"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

const (
	// The name the proxy sends in every request's Snapshotter field, as containerd would for a
	// proxy_plugins entry called "strata".
	snapshotterName = "strata"
	startTimeout    = 30 * time.Second
	dialTimeout     = 10 * time.Second
	stopTimeout     = 10 * time.Second
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the snapshotter suite needs root: it mounts the overlay filesystems the snapshotter returns")
	}
}

// TestOverlayBaseline runs the suite against containerd's overlay snapshotter behind
// snapshotservice + proxy, each case with its own snapshotter, gRPC server and client.
func TestOverlayBaseline(t *testing.T) {
	requireRoot(t)
	testsuite.SnapshotterSuite(t, "OverlayBaseline", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		sn, err := overlay.NewSnapshotter(filepath.Join(root, "store"))
		if err != nil {
			return nil, nil, fmt.Errorf("overlay snapshotter: %w", err)
		}
		sock := filepath.Join(root, "overlay.sock")
		if err := checkSocketPath(sock); err != nil {
			sn.Close()
			return nil, nil, err
		}
		l, err := net.Listen("unix", sock)
		if err != nil {
			sn.Close()
			return nil, nil, fmt.Errorf("listen on %s: %w", sock, err)
		}
		srv := grpc.NewServer()
		snapshotsapi.RegisterSnapshotsServer(srv, snapshotservice.FromSnapshotter(sn))
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()

		conn, err := dialUnix(ctx, sock, nil)
		if err != nil {
			srv.Stop()
			sn.Close()
			return nil, nil, err
		}
		cleanup := func() error {
			var errs []string
			if err := conn.Close(); err != nil {
				errs = append(errs, "close client: "+err.Error())
			}
			srv.Stop()
			if err := <-served; err != nil {
				errs = append(errs, "serve: "+err.Error())
			}
			if err := sn.Close(); err != nil {
				errs = append(errs, "close overlay snapshotter: "+err.Error())
			}
			if err := checkNoMountsUnder(root); err != nil {
				errs = append(errs, err.Error())
			}
			return joinErrors(errs)
		}
		return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), snapshotterName), cleanup, nil
	})
}

// TestStrata runs the suite against a strata snapshotter process started per case.
func TestStrata(t *testing.T) {
	requireRoot(t)
	exe := os.Getenv("STRATA_SNAPSHOTTER")
	if exe == "" {
		t.Skip("STRATA_SNAPSHOTTER is not set: point it at the strata executable (or a wrapper script), " +
			"with STRATA_SNAPSHOTTER_DRIVER=<driver>; scripts/snapshotter-suite.sh strata <driver> <executable> does so")
	}
	driver := os.Getenv("STRATA_SNAPSHOTTER_DRIVER")
	if driver == "" {
		t.Fatal("STRATA_SNAPSHOTTER is set but STRATA_SNAPSHOTTER_DRIVER is not: say which storage driver to run (e.g. overlay)")
	}
	extra := strings.Fields(os.Getenv("STRATA_SNAPSHOTTER_ARGS"))

	testsuite.SnapshotterSuite(t, "Strata", func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		sock := filepath.Join(root, "strata.sock")
		if err := checkSocketPath(sock); err != nil {
			return nil, nil, err
		}
		args := append(append([]string{}, extra...),
			"snapshotter",
			"--driver", driver,
			"--root", filepath.Join(root, "store"),
			"--socket", sock,
			"--log-level", "warn",
		)
		p, err := startProcess(exe, args)
		if err != nil {
			return nil, nil, err
		}
		tb := testFromContext(ctx)

		if err := p.waitListening(sock, startTimeout); err != nil {
			p.kill()
			return nil, nil, err
		}
		conn, err := dialUnix(ctx, sock, p.exited)
		if err != nil {
			p.kill()
			return nil, nil, fmt.Errorf("%w\n%s", err, p.describeOutput())
		}
		cleanup := func() error {
			var errs []string
			if err := conn.Close(); err != nil {
				errs = append(errs, "close client: "+err.Error())
			}
			errs = append(errs, p.stop(stopTimeout)...)
			if err := checkNoMountsUnder(root); err != nil {
				errs = append(errs, err.Error())
			}
			failed := len(errs) > 0 || (tb != nil && tb.Failed())
			switch {
			case failed && tb != nil:
				tb.Logf("%s", p.describeOutput())
			case failed:
				log.G(ctx).Errorf("%s", p.describeOutput())
			case p.output.Len() > 0:
				// Passed: keep the log short, but say there was something.
				log.G(ctx).Infof("the snapshotter wrote %d bytes to stdout/stderr (shown only when the case fails)", p.output.Len())
			}
			return joinErrors(errs)
		}
		return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), snapshotterName), cleanup, nil
	})
}

// process is one snapshotter process: its output is collected from a pipe of our own, so that
// Wait returns when the process exits even if a child of it still holds the pipe open.
type process struct {
	cmdline  string
	cmd      *exec.Cmd
	output   lockedBuffer
	readDone chan struct{}
	exited   chan struct{} // closed when the process has exited; waitErr is then set
	waitErr  error
}

func startProcess(exe string, args []string) (*process, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // its own process group, so that stragglers can be found and killed
		Pdeathsig: syscall.SIGKILL, // and it dies with this test binary
	}
	p := &process{
		cmdline:  strings.Join(append([]string{exe}, args...), " "),
		cmd:      cmd,
		readDone: make(chan struct{}),
		exited:   make(chan struct{}),
	}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("start %s: %w", p.cmdline, err)
	}
	w.Close()
	go func() {
		defer close(p.readDone)
		defer r.Close()
		_, _ = p.output.ReadFrom(r)
	}()
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// describeOutput is what the process printed so far, for a failure message. It waits briefly for
// the pipe to drain when the process has exited.
func (p *process) describeOutput() string {
	if p.hasExited() {
		select {
		case <-p.readDone:
		case <-time.After(time.Second):
		}
	}
	out := strings.TrimRight(p.output.String(), "\n")
	if out == "" {
		return fmt.Sprintf("[%s] printed nothing", p.cmdline)
	}
	return fmt.Sprintf("[%s] printed:\n%s", p.cmdline, out)
}

// waitListening waits until sock accepts a connection, the process exits, or the timeout passes.
func (p *process) waitListening(sock string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		if p.hasExited() {
			return fmt.Errorf("snapshotter exited (%v) before listening on %s\n%s", p.waitErr, sock, p.describeOutput())
		}
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("snapshotter did not listen on %s within %v (last dial: %v)\n%s", sock, timeout, lastErr, p.describeOutput())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits; a process that does not exit in time is SIGKILLed and reported.
// A non-zero exit status after SIGTERM, and processes of its group left behind, are reported too.
func (p *process) stop(timeout time.Duration) []string {
	var errs []string
	if !p.hasExited() {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, "SIGTERM: "+err.Error())
		}
		select {
		case <-p.exited:
		case <-time.After(timeout):
			p.kill()
			errs = append(errs, fmt.Sprintf("snapshotter did not exit within %v of SIGTERM: killed it", timeout))
		}
	} else {
		errs = append(errs, fmt.Sprintf("snapshotter had exited (%v) before the case ended", p.waitErr))
	}
	if p.waitErr != nil && len(errs) == 0 {
		errs = append(errs, fmt.Sprintf("snapshotter exited with %v on SIGTERM (want status 0)", p.waitErr))
	}
	// Anything left in its process group (children it did not reap) is a leak too.
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, 0); err == nil {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		errs = append(errs, fmt.Sprintf("processes of the snapshotter's group %d were still running after it exited: killed them", pgid))
	}
	return errs
}

// kill SIGKILLs the process and its group and waits for it.
func (p *process) kill() {
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
	}
}

// dialUnix dials a gRPC server on a unix socket and waits until the connection is ready. When
// exited is closed first (the server process died) it gives up at once.
func dialUnix(ctx context.Context, sock string, exited <-chan struct{}) (*grpc.ClientConn, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if exited != nil {
		go func() {
			select {
			case <-exited:
				cancel()
			case <-dctx.Done():
			}
		}()
	}
	conn, err := grpc.DialContext(dctx, "unix://"+sock,
		grpc.WithInsecure(),
		grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("grpc dial %s: %w", sock, err)
	}
	return conn, nil
}

// checkSocketPath fails early, and clearly, on a socket path longer than sun_path allows.
func checkSocketPath(sock string) error {
	if len(sock) >= 108 {
		return fmt.Errorf("socket path %s is %d bytes, over the 107 a unix socket allows: use a shorter TMPDIR", sock, len(sock))
	}
	return nil
}

// checkNoMountsUnder reports mount points at or below dir in this mount namespace.
func checkNoMountsUnder(dir string) error {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	defer f.Close()
	var left []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			left = append(left, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	if len(left) == 0 {
		return nil
	}
	// Report them, then take them away (deepest first, lazily) so the machine is left clean and the
	// suite can remove its temp dir.
	var stuck []string
	for i := len(left) - 1; i >= 0; i-- {
		if err := syscall.Unmount(left[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			stuck = append(stuck, fmt.Sprintf("%s (%v)", left[i], err))
		}
	}
	msg := fmt.Sprintf("still mounted under %s after the snapshotter stopped: %s (the harness unmounted them)", dir, strings.Join(left, ", "))
	if len(stuck) > 0 {
		msg += "; could not unmount: " + strings.Join(stuck, ", ")
	}
	return errors.New(msg)
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space and so on).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func joinErrors(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// testFromContext finds the suite case's *testing.T: the suite hands fn only a context, whose
// logger (logtest.WithT) has a hook holding it. The hook's field is unexported, hence reflect and
// unsafe; when the layout differs this returns nil and failures are logged through the logger.
func testFromContext(ctx context.Context) testing.TB {
	entry := log.G(ctx)
	if entry == nil || entry.Logger == nil {
		return nil
	}
	for _, hooks := range entry.Logger.Hooks {
		for _, h := range hooks {
			v := reflect.ValueOf(h)
			if v.Kind() != reflect.Ptr || v.Elem().Kind() != reflect.Struct {
				continue
			}
			f := v.Elem().FieldByName("t")
			if !f.IsValid() || !f.CanAddr() {
				continue
			}
			field := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
			if tb, ok := field.Interface().(testing.TB); ok && tb != nil {
				return tb
			}
		}
	}
	return nil
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) ReadFrom(r *os.File) (int64, error) {
	chunk := make([]byte, 32*1024)
	var total int64
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			b.mu.Lock()
			b.buf.Write(chunk[:n])
			b.mu.Unlock()
			total += int64(n)
		}
		if err != nil {
			return total, nil
		}
	}
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}
