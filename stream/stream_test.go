package stream

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-dev/ferry/links"
	"github.com/ferry-dev/ferry/mtproto/streamtest"
)

// The whole file, 50 random ranges, open-ended and suffix ranges, a range
// across 1 MiB boundaries at odd offsets, a multi-range request, HEAD,
// 416 and If-Range, for a file on DC 4 served by bots of DC 2.
func TestStreamRanges(t *testing.T) {
	e := newEnv(t, nil)
	const size = 9<<20 + 12345
	_, g := e.addFile("uRanges1", "Mövie 1.mkv", "video/x-matroska", size, 4, 10, testBots[0])
	u := e.url("uRanges1", "Mövie 1.mkv", links.Inline)

	res, body := e.get("GET", u)
	if res.StatusCode != 200 || sha256.Sum256(body) != sha256.Sum256(content(t, g, 0, size)) {
		t.Fatalf("full GET: %d, %d bytes, sha differs", res.StatusCode, len(body))
	}
	h := res.Header
	wantDisp := `inline; filename*=utf-8''M%C3%B6vie%201.mkv; filename="M_vie 1.mkv"`
	if h.Get("Content-Length") != strconv.Itoa(size) || h.Get("Accept-Ranges") != "bytes" || h.Get("ETag") != `"uRanges1"` ||
		h.Get("Content-Type") != "video/x-matroska" || h.Get("Content-Disposition") != wantDisp {
		t.Fatalf("headers %v", h)
	}
	if _, params, err := mime.ParseMediaType(h.Get("Content-Disposition")); err != nil || params["filename"] != "Mövie 1.mkv" {
		t.Fatalf("Content-Disposition parses to %v (%v)", params, err)
	}

	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 50 {
		a := rng.Int64N(size)
		b := a + rng.Int64N(min(size-a, 2<<20))
		res, body := e.get("GET", u, "Range", fmt.Sprintf("bytes=%d-%d", a, b))
		if res.StatusCode != 206 || res.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", a, b, size) ||
			!bytes.Equal(body, content(t, g, a, b+1)) {
			t.Fatalf("range %d bytes=%d-%d: %d %q, %d bytes", i, a, b, res.StatusCode, res.Header.Get("Content-Range"), len(body))
		}
	}
	for _, c := range []struct {
		rng        string
		start, end int64
	}{
		{fmt.Sprintf("bytes=%d-%d", 1<<20-333, 3<<20+777), 1<<20 - 333, 3<<20 + 778},
		{"bytes=8000000-", 8000000, size},
		{"bytes=-1000", size - 1000, size},
		{"bytes=0-0", 0, 1},
	} {
		before := e.srv.GetFileCalls(0)
		res, body := e.get("GET", u, "Range", c.rng)
		if res.StatusCode != 206 || !bytes.Equal(body, content(t, g, c.start, c.end)) {
			t.Fatalf("%s: %d, %d bytes", c.rng, res.StatusCode, len(body))
		}
		// One request per 1 MiB window touched: no read-ahead past the range.
		if n, touched := e.srv.GetFileCalls(0)-before, (c.end-1)>>20-c.start>>20+1; n != touched {
			t.Fatalf("%s: %d getFile requests, want %d", c.rng, n, touched)
		}
	}

	// Two ranges: multipart/byteranges, each part exact.
	res, body = e.get("GET", u, "Range", "bytes=10-20,5000000-5000099")
	mt, params, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if res.StatusCode != 206 || mt != "multipart/byteranges" {
		t.Fatalf("multi-range: %d %s", res.StatusCode, mt)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for _, want := range [][2]int64{{10, 21}, {5000000, 5000100}} {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(p)
		if !bytes.Equal(got, content(t, g, want[0], want[1])) {
			t.Fatalf("part %v differs", want)
		}
	}

	before := e.srv.GetFileCalls(0)
	res, body = e.get("HEAD", u)
	if res.StatusCode != 200 || len(body) != 0 || res.Header.Get("Content-Length") != strconv.Itoa(size) || res.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("HEAD: %d %v", res.StatusCode, res.Header)
	}
	res, _ = e.get("HEAD", u, "Range", "bytes=100-199")
	if res.StatusCode != 206 || res.Header.Get("Content-Length") != "100" {
		t.Fatalf("HEAD range: %d %v", res.StatusCode, res.Header)
	}
	res, _ = e.get("GET", u, "Range", fmt.Sprintf("bytes=%d-", size))
	if res.StatusCode != 416 || res.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
		t.Fatalf("unsatisfiable: %d %v", res.StatusCode, res.Header)
	}
	if n := e.srv.GetFileCalls(0) - before; n != 0 {
		t.Fatalf("HEAD and 416 fetched %d blocks", n)
	}
	// If-Range: the current ETag keeps the range, another gives the whole file.
	res, body = e.get("GET", u, "Range", "bytes=0-99", "If-Range", `"uRanges1"`)
	if res.StatusCode != 206 || len(body) != 100 {
		t.Fatalf("If-Range match: %d, %d bytes", res.StatusCode, len(body))
	}
	res, body = e.get("GET", u, "Range", "bytes=0-99", "If-Range", `"other"`)
	if res.StatusCode != 200 || int64(len(body)) != size || !bytes.Equal(body[:4096], content(t, g, 0, 4096)) {
		t.Fatalf("If-Range mismatch: %d, %d bytes", res.StatusCode, len(body))
	}
	if got := testutil.ToFloat64(e.h.metrics.bytes); got < size*2 {
		t.Fatalf("bytes served metric %v", got)
	}
	if got := testutil.ToFloat64(e.h.metrics.inFlight); got != 0 {
		t.Fatalf("streams in flight %v after all ended", got)
	}
}

// Tampered, borrowed and expired signatures are refused with a readable
// 403 page and fetch nothing.
func TestStreamRefusesBadLinks(t *testing.T) {
	e := newEnv(t, nil)
	e.addFile("uSigned1", "a.bin", "", 4096, 2, 11, testBots[0])
	e.addFile("uSigned2", "b.bin", "", 4096, 2, 12, testBots[0])
	good := e.url("uSigned1", "a.bin", links.Inline)
	other := e.url("uSigned2", "b.bin", links.Inline)
	_, otherQuery, _ := strings.Cut(other, "?")
	base, _, _ := strings.Cut(good, "?")
	expired := e.links.DownloadURL(e.http.URL, "uSigned1", "a.bin", time.Now().Add(-time.Second), links.Inline)
	sigAt := strings.Index(good, "sig=") + 4
	tampered := good[:sigAt] + string(good[sigAt]^1) + good[sigAt+1:]
	for name, u := range map[string]string{
		"tampered":           tampered,
		"another file's":     base + "?" + otherQuery,
		"expired":            expired,
		"download as inline": strings.Replace(e.url("uSigned1", "a.bin", links.Attachment), "d=attachment&", "", 1),
		"unsigned":           base,
		"stretched expiry":   strings.Replace(good, "exp=", "exp=9", 1),
	} {
		res, body := e.get("GET", u)
		if res.StatusCode != 403 || !strings.Contains(res.Header.Get("Content-Type"), "text/html") || !bytes.Contains(body, []byte("<h1>Link")) {
			t.Errorf("%s link: %d %q", name, res.StatusCode, body)
		}
	}
	if res, _ := e.get("GET", good); res.StatusCode != 200 {
		t.Fatalf("good link: %d", res.StatusCode)
	}
	if n := e.srv.GetFileCalls(0); n != 1 {
		t.Fatalf("getFile calls %d, want 1 (the good link's)", n)
	}
	res, _ := e.get("GET", e.url("uSigned1", "a.bin", links.Attachment))
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Disposition"), `attachment; filename=a.bin`) {
		t.Fatalf("attachment: %d %q", res.StatusCode, res.Header.Get("Content-Disposition"))
	}
}

// A reference that expired after the link was made is refreshed without
// the client noticing.
func TestStreamRefreshesReference(t *testing.T) {
	e := newEnv(t, nil)
	const size = 3<<20 + 5
	_, g := e.addFile("uRefresh1", "r.bin", "", size, 4, 13, testBots[0])
	e.srv.ExpireReferences()
	res, body := e.get("GET", e.url("uRefresh1", "r.bin", links.Inline))
	if res.StatusCode != 200 || !bytes.Equal(body, content(t, g, 0, size)) {
		t.Fatalf("GET after expiry: %d, %d bytes", res.StatusCode, len(body))
	}
	if got := testutil.ToFloat64(e.h.metrics.refreshes); got != 1 {
		t.Fatalf("refreshes %v, want 1", got)
	}
	if n := e.srv.Calls("channels.getMessages"); n != 1 {
		t.Fatalf("getMessages %d, want 1", n)
	}
}

// The reference is refreshed from the serving bot's own post, not the
// file's first one: here the first post (message 99) is gone and the bot
// saw the file in message 14, where the document is.
func TestStreamRefreshesFromTheBotsOwnPost(t *testing.T) {
	e := newEnv(t, nil)
	const size = 2<<20 + 77
	g := streamtest.NewGenerated(991, size)
	doc := e.srv.Add(streamtest.Document{DC: 4, ChannelID: testChannel, MessageID: 14, Name: "own.bin", Size: size, Content: g})
	e.indexSeen("uOwnPost1", "own.bin", "", size, 4, 99, 14, doc, testBots[0])
	e.srv.ExpireReferences()
	res, body := e.get("GET", e.url("uOwnPost1", "own.bin", links.Inline))
	if res.StatusCode != 200 || !bytes.Equal(body, content(t, g, 0, size)) {
		t.Fatalf("GET after expiry: %d, %d bytes (the refresh asked the wrong post?)", res.StatusCode, len(body))
	}
	if got := testutil.ToFloat64(e.h.metrics.refreshes); got != 1 {
		t.Fatalf("refreshes %v, want 1", got)
	}
}

// A bot failing before the first byte and another failing mid-stream are
// replaced by the next holder; the client gets every byte.
func TestStreamFailover(t *testing.T) {
	const size = 8<<20 + 99
	for _, c := range []struct {
		name  string
		fault streamtest.Fault
	}{
		{"before the first byte", streamtest.Fault{Kind: streamtest.Internal}},
		{"mid-stream", streamtest.Fault{Kind: streamtest.Internal, After: 3}},
		{"revoked mid-stream", streamtest.Fault{Kind: streamtest.Revoked, After: 5}},
		{"flood wait", streamtest.Fault{Kind: streamtest.FloodWait, Seconds: 30, After: 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			_, g := e.addFile("uFail1", "f.bin", "", size, 4, 14, testBots[0], testBots[1])
			e.srv.SetFault(testBots[0], c.fault)
			t0 := time.Now()
			res, body := e.get("GET", e.url("uFail1", "f.bin", links.Inline))
			if res.StatusCode != 200 || !bytes.Equal(body, content(t, g, 0, size)) {
				t.Fatalf("GET: %d, %d bytes", res.StatusCode, len(body))
			}
			t.Logf("served in %v; bot 1 %d requests, bot 2 %d", time.Since(t0), e.srv.GetFileCalls(testBots[0]), e.srv.GetFileCalls(testBots[1]))
			if e.srv.GetFileCalls(testBots[0]) == 0 || e.srv.GetFileCalls(testBots[1]) == 0 {
				t.Fatal("both bots should have been asked")
			}
			if got := testutil.ToFloat64(e.h.metrics.failovers); got != 1 {
				t.Fatalf("failovers %v, want 1", got)
			}
			if c.fault.Kind == streamtest.FloodWait {
				if len(e.flood) != 1 || e.flood[0] != testBots[0] {
					t.Fatalf("flood wait recorded for %v", e.flood)
				}
				// The next stream starts on the other bot.
				before := e.srv.GetFileCalls(testBots[0])
				if res, _ := e.get("GET", e.url("uFail1", "f.bin", links.Inline), "Range", "bytes=0-10"); res.StatusCode != 206 {
					t.Fatal(res.Status)
				}
				if e.srv.GetFileCalls(testBots[0]) != before {
					t.Fatal("a bot in flood wait was asked first")
				}
			}
			if e.h.load.streams(testBots[0])+e.h.load.streams(testBots[1]) != 0 {
				t.Fatal("stream slots not released")
			}
		})
	}
	t.Run("every bot fails", func(t *testing.T) {
		e := newEnv(t, nil)
		e.addFile("uFail2", "f.bin", "", size, 4, 15, testBots[0], testBots[1])
		e.srv.SetFault(testBots[0], streamtest.Fault{Kind: streamtest.Internal})
		e.srv.SetFault(testBots[1], streamtest.Fault{Kind: streamtest.Internal})
		res, body := e.get("GET", e.url("uFail2", "f.bin", links.Inline))
		if res.StatusCode != 502 || !bytes.Contains(body, []byte("Not available")) || res.Header.Get("Content-Length") == strconv.Itoa(size) {
			t.Fatalf("all bots down: %d %v %q", res.StatusCode, res.Header, body)
		}
	})
}

// A client that goes away stops the fetches at once.
func TestStreamClientDisconnect(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.SetLatency(50 * time.Millisecond)
	const size = 200 << 20
	e.addFile("uGone1", "big.bin", "", size, 2, 16, testBots[0])
	res, err := http.Get(e.url("uGone1", "big.bin", links.Inline))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, res.Body, 3<<20); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	closed := time.Now()
	deadline := closed.Add(time.Second)
	for e.srv.InFlight() > 0 || testutil.ToFloat64(e.h.metrics.inFlight) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("1 s after the client left: %d requests in flight at the server, %v streams", e.srv.InFlight(), testutil.ToFloat64(e.h.metrics.inFlight))
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped := time.Since(closed)
	n := e.srv.GetFileCalls(0)
	time.Sleep(300 * time.Millisecond)
	if m := e.srv.GetFileCalls(0); m != n {
		t.Fatalf("getFile requests went on after the client left: %d then %d", n, m)
	}
	if n > 3+4+2 {
		t.Fatalf("%d getFile requests for 3 MiB read with a window of 4", n)
	}
	t.Logf("fetches stopped %v after the client left; %d requests in all", stopped, n)
}

// Per-IP and per-bot limits answer 429 with Retry-After.
func TestStreamLimits(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PerIP = 1; o.PerBot = 1 })
	e.srv.SetLatency(200 * time.Millisecond)
	e.addFile("uLimit1", "l.bin", "", 64<<20, 2, 17, testBots[0])
	res, err := http.Get(e.url("uLimit1", "l.bin", links.Inline))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	second, body := e.get("GET", e.url("uLimit1", "l.bin", links.Inline))
	if second.StatusCode != 429 || second.Header.Get("Retry-After") == "" || !bytes.Contains(body, []byte("Too many streams")) {
		t.Fatalf("second stream from one IP: %d %q", second.StatusCode, body)
	}
	// Another client IP, same (only) bot: the bot is at its limit.
	e.h.o.ClientIP = func(*http.Request) string { return "192.0.2.7" }
	third, body := e.get("GET", e.url("uLimit1", "l.bin", links.Inline))
	if third.StatusCode != 429 || third.Header.Get("Retry-After") == "" || !bytes.Contains(body, []byte("Busy")) {
		t.Fatalf("stream over the bot's limit: %d %q", third.StatusCode, body)
	}
}
