// Package r2test gives tests an S3 server to point package r2 at: Fake, an
// in-process gofakes3 for fast unit tests, and StartVersity, a real
// versitygw gateway process (posix backend) that can be stopped and started
// again on the same port and directory to test outages.
//
// Neither skips: when a server cannot be had the test fails, because a
// green run that never touched S3 would prove nothing.
package r2test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/ferry-dev/ferry/r2"
)

// Test credentials; they only ever reach servers started by this package.
const (
	AccessKey = "ferry-test-key"
	SecretKey = "ferry-test-secret"
	Bucket    = "ferry-test"
)

// Fake starts an in-process gofakes3 server with Bucket created and returns
// options pointing at it. It honours If-None-Match and If-Match atomically.
// The server is closed when the test ends.
func Fake(tb testing.TB) r2.Options {
	tb.Helper()
	backend := s3mem.New()
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	srv := httptest.NewServer(faker.Server())
	tb.Cleanup(srv.Close)
	if err := backend.CreateBucket(Bucket); err != nil {
		tb.Fatalf("r2test: create bucket: %v", err)
	}
	return r2.Options{
		Endpoint:        srv.URL,
		Bucket:          Bucket,
		AccessKeyID:     AccessKey,
		SecretAccessKey: SecretKey,
		Folder:          r2.DefaultFolder,
		HTTPClient:      &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
	}
}

// Server is a versitygw process serving a posix directory on a fixed
// loopback port. Stop and Start keep the port and the directory, so objects
// written before a Stop are there after the next Start.
type Server struct {
	tb   testing.TB
	bin  string
	dir  string
	addr string

	mu     sync.Mutex
	cmd    *exec.Cmd
	out    *lockedWriter
	waitCh chan error
}

// StartVersity builds (once per test process) and starts versitygw with a
// fresh directory and free loopback port, creates Bucket, and stops the
// process when the test ends.
func StartVersity(tb testing.TB) *Server {
	tb.Helper()
	bin, err := versityBinary()
	if err != nil {
		tb.Fatalf("r2test: versitygw is required for S3 integration tests and could not be built: %v\n"+
			"(it is a go tool of this module: `go tool -n versitygw` must work; see TESTING.md)", err)
	}
	s := &Server{tb: tb, bin: bin, dir: dataDir(tb), addr: freeAddr(tb)}
	tb.Cleanup(s.Stop)
	s.Start()
	opts := s.Options()
	store, err := r2.New(opts)
	if err != nil {
		tb.Fatalf("r2test: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := store.CreateBucket(ctx); err != nil {
		tb.Fatalf("r2test: versitygw: %v\n%s", err, s.output())
	}
	return s
}

// dataDir is a fresh directory for the server's objects, removed when the
// test ends: in /dev/shm when the machine has it. versitygw writes each
// object through an O_TMPFILE, and on ext4 that allocation walks the inode
// bitmap past every recently deleted inode: with the thousands of objects a
// benchmark writes (and earlier runs deleted), the stand-in for R2 spent a
// tenth of the machine's CPU there, which Cloudflare's R2 does not charge
// ferry. On tmpfs it costs nothing.
func dataDir(tb testing.TB) string {
	tb.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "ferry-r2test-"); err == nil {
			tb.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return tb.TempDir()
}

// Options points package r2 at the server. The HTTP client keeps no idle
// connections across a Stop, so the first request after Start dials anew.
func (s *Server) Options() r2.Options {
	return r2.Options{
		Endpoint:        "http://" + s.addr,
		Bucket:          Bucket,
		AccessKeyID:     AccessKey,
		SecretAccessKey: SecretKey,
		Folder:          r2.DefaultFolder,
		HTTPClient:      &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		// Fail fast while the server is down: one attempt per call; the
		// callers (River jobs) own the retrying.
		MaxAttempts: 1,
	}
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return s.addr }

// Dir is the posix directory holding the buckets.
func (s *Server) Dir() string { return s.dir }

// Start launches the process (if it is not running) and waits until it
// accepts connections.
func (s *Server) Start() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	out := &lockedWriter{w: &bytes.Buffer{}}
	// --keep-alive as R2 does: versitygw closes every connection after one
	// request otherwise, and clients then spend their CPU dialing.
	cmd := exec.Command(s.bin, "--port", s.addr, "--region", "auto", "--quiet", "--keep-alive", "posix", s.dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey)
	cmd.Stdout = out
	cmd.Stderr = cmd.Stdout
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("r2test: start versitygw: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			s.tb.Fatalf("r2test: versitygw exited at start: %v\n%s", err, out.String())
		default:
		}
		c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			s.tb.Fatalf("r2test: versitygw did not listen on %s within 30s\n%s", s.addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.cmd, s.out = cmd, out
	s.waitCh = exited
}

// Stop ends the process (SIGTERM, then SIGKILL after 5 s) and waits for it.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.waitCh:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.waitCh
	}
	s.cmd = nil
	// Wait until the port is really closed, so a test that stops the server
	// sees connection refused rather than a half-closed listener.
	for i := 0; i < 100; i++ {
		c, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// versityBinary finds versitygw: $FERRY_VERSITYGW if set, else the module's
// go tool, which `go tool -n` builds once and caches in the Go build cache
// (about 90 s the very first time on a 2-core machine, ~5 s after that).
func versityBinary() (string, error) {
	buildOnce.Do(func() {
		if p := os.Getenv("FERRY_VERSITYGW"); p != "" {
			buildPath = p
			return
		}
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "tool", "-n", "versitygw")
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			buildErr = fmt.Errorf("go tool -n versitygw: %w: %s", err, strings.TrimSpace(stderr.String()))
			return
		}
		buildPath = strings.TrimSpace(string(out))
		if _, err := os.Stat(buildPath); err != nil {
			buildErr = fmt.Errorf("go tool -n versitygw printed %q: %w", buildPath, err)
		}
	})
	return buildPath, buildErr
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("r2test: find a free port: %v", err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
