package urlsource_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/urlsource"
)

func content(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{9}).Read(b)
	return b
}

func allowLoopback(t *testing.T) *urlsource.Guard {
	t.Helper()
	g, err := urlsource.NewGuard([]string{"127.0.0.0/8", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// readParts reads src in 512 KiB parts with workers goroutines taking parts
// in order, as the upload pipeline does, and returns the bytes.
func readParts(t *testing.T, src io.ReaderAt, size int64, workers int) []byte {
	t.Helper()
	const part = 512 << 10
	out := make([]byte, size)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				off := i * part
				if off >= size {
					return
				}
				n := min(part, size-off)
				if _, err := src.ReadAt(out[off:off+n], off); err != nil && !errors.Is(err, io.EOF) {
					errs <- fmt.Errorf("part %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return out
}

func TestRangeReads(t *testing.T) {
	data := content(20<<20 + 12345)
	var ranges atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Range") != "" {
			ranges.Add(1)
		}
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Disposition", `attachment; filename="film part 1.mkv"`)
		http.ServeContent(w, r, "x.bin", time.Unix(1e9, 0), bytes.NewReader(data))
	}))
	defer srv.Close()
	src, err := urlsource.Open(t.Context(), srv.URL+"/dl/x.bin?token=secret", urlsource.Options{Guard: allowLoopback(t), SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if !src.Ranges || src.Size != int64(len(data)) || src.Name != "film part 1.mkv" {
		t.Fatalf("opened %+v", src)
	}
	got := readParts(t, src, src.Size, 8)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatal("bytes read differ from the file")
	}
	// Eleven chunks of 2 MiB, each fetched once (plus the probe).
	if n := src.RangeRequests(); n != 11 {
		t.Fatalf("%d range requests for 11 chunks", n)
	}
	if n := ranges.Load(); n != 12 {
		t.Fatalf("server saw %d range requests, want 12", n)
	}
}

func TestChangedFileIsRefused(t *testing.T) {
	data := content(8 << 20)
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, min(served.Add(1), 3)))
		http.ServeContent(w, r, "x.bin", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	src, err := urlsource.Open(t.Context(), srv.URL+"/x.bin", urlsource.Options{Guard: allowLoopback(t), Parallel: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	buf := make([]byte, 1<<20)
	var readErr error
	for off := int64(0); off < src.Size && readErr == nil; off += int64(len(buf)) {
		_, readErr = src.ReadAt(buf, off)
	}
	if !errors.Is(readErr, urlsource.ErrChanged) {
		t.Fatalf("read of a file whose ETag changed: %v", readErr)
	}
}

func TestNoRangeSpools(t *testing.T) {
	data := content(5<<20 + 7)
	for _, withLength := range []bool{true, false} {
		t.Run(fmt.Sprintf("content-length=%v", withLength), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if withLength {
					w.Header().Set("Content-Length", fmt.Sprint(len(data)))
				}
				w.WriteHeader(200)
				for off := 0; off < len(data); off += 64 << 10 {
					_, _ = w.Write(data[off:min(off+64<<10, len(data))])
					w.(http.Flusher).Flush()
				}
			}))
			defer srv.Close()
			spool := t.TempDir()
			src, err := urlsource.Open(t.Context(), srv.URL+"/files/movie.mp4", urlsource.Options{Guard: allowLoopback(t), SpoolDir: spool})
			if err != nil {
				t.Fatal(err)
			}
			if src.Ranges || src.Size != int64(len(data)) || src.Name != "movie.mp4" {
				t.Fatalf("opened %+v", src)
			}
			if got := readParts(t, src, src.Size, 4); !bytes.Equal(got, data) {
				t.Fatal("bytes read differ from the file")
			}
			if entries, _ := os.ReadDir(spool); len(entries) != 1 {
				t.Fatalf("spool dir holds %d files while reading, want 1", len(entries))
			}
			if err := src.Close(); err != nil {
				t.Fatal(err)
			}
			if entries, _ := os.ReadDir(spool); len(entries) != 0 {
				t.Fatalf("spool file left after Close: %v", entries)
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(data) }))
		defer srv.Close()
		spool := t.TempDir()
		_, err := urlsource.Open(t.Context(), srv.URL+"/big", urlsource.Options{Guard: allowLoopback(t), SpoolDir: spool, MaxSize: 1 << 20})
		if !errors.Is(err, urlsource.ErrTooLarge) {
			t.Fatalf("a 5 MiB file with a 1 MiB limit: %v", err)
		}
		if entries, _ := os.ReadDir(spool); len(entries) != 0 {
			t.Fatalf("spool file left after a refusal: %v", entries)
		}
	})
}

func TestGuard(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "http://127.0.0.1:"+r.URL.Query().Get("port")+"/file", http.StatusFound)
			return
		}
		http.ServeContent(w, r, "f", time.Time{}, strings.NewReader("hello"))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	open := func(allow []string, u string) error {
		g, err := urlsource.NewGuard(allow)
		if err != nil {
			t.Fatal(err)
		}
		s, err := urlsource.Open(context.Background(), u, urlsource.Options{Guard: g})
		if err == nil {
			s.Close()
		}
		return err
	}
	byIP := "http://127.0.0.1:" + port + "/file"
	byName := "http://localhost:" + port + "/file"
	redirect := "http://localhost:" + port + "/redirect?port=" + port
	for _, tc := range []struct {
		allow []string
		url   string
		ok    bool
	}{
		{nil, byIP, false},
		{nil, byName, false}, // refused when dialled, not by its name
		{[]string{"127.0.0.1"}, byIP, true},
		{[]string{"127.0.0.0/8, ::1"}, byName, true},
		{[]string{"localhost"}, byName, true},
		{[]string{"localhost"}, redirect, false}, // the redirect's host is not allowed
		{[]string{"10.0.0.0/8"}, byIP, false},
	} {
		err := open(tc.allow, tc.url)
		if tc.ok != (err == nil) || (!tc.ok && !errors.Is(err, urlsource.ErrForbiddenAddress)) {
			t.Errorf("allow %v, %s: %v", tc.allow, tc.url, err)
		}
	}
	for ip, internal := range map[string]bool{
		"127.0.0.1": true, "10.1.2.3": true, "172.16.0.1": true, "192.168.1.1": true, "169.254.169.254": true,
		"100.64.0.1": true, "0.0.0.0": true, "::1": true, "fe80::1": true, "fd00::1": true, "::ffff:127.0.0.1": true,
		"8.8.8.8": false, "2606:4700::1111": false, "149.154.167.51": false,
	} {
		if got := urlsource.Internal(netip.MustParseAddr(ip)); got != internal {
			t.Errorf("Internal(%s) = %v", ip, got)
		}
	}
	if _, err := urlsource.NewGuard([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad CIDR was accepted")
	}
	if _, err := urlsource.CheckURL("ftp://example.com/x", nil); err == nil {
		t.Error("an ftp URL was accepted")
	}
}
