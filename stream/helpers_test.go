package stream

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-dev/ferry/botpool"
	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/links"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/streamtest"
)

const (
	testChat    = -1001234567890
	testChannel = 1234567890
	testSecret  = "stream test secret"
)

var testBots = []int64{7001, 7002, 7003}

func testLogger() *slog.Logger {
	if os.Getenv("FERRY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// clients starts MTProto clients on first use, like jobs.MTProtoClients.
type clients struct {
	t   testing.TB
	srv *streamtest.Server
	mu  sync.Mutex
	m   map[int64]*mtproto.Client
}

func (c *clients) Client(ctx context.Context, botID int64) (*mtproto.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.m[botID]; ok {
		return cl, nil
	}
	cl, err := mtproto.NewClient(mtproto.Options{APIID: 1, APIHash: "h", BotToken: fmt.Sprintf("%d:secret", botID),
		DCAddr: c.srv.Addr(c.srv.HomeDC()), DC: c.srv.HomeDC(), PublicKeyPEM: c.srv.PublicKeysPEM(), Logger: testLogger()})
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.Start(sctx); err != nil {
		return nil, err
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	c.m[botID] = cl
	return cl, nil
}

type files struct{ d db.Driver }

func (f files) GetFile(ctx context.Context, id string) (db.File, error) { return f.d.FileGet(ctx, id) }

// env is a stream handler over a two-DC test server, a database holding
// the files, and bots 7001..7003 in slots 1..3.
type env struct {
	t       testing.TB
	srv     *streamtest.Server
	db      db.Driver
	clients *clients
	links   *links.Signer
	h       *Handler
	http    *httptest.Server
	reg     *prometheus.Registry
	flood   []int64
	floodMu sync.Mutex
	opts    Options
}

func newEnv(t testing.TB, tweak func(*Options)) *env {
	t.Helper()
	srv := streamtest.New(t, streamtest.Options{})
	e := &env{t: t, srv: srv, db: dbtest.New(t), links: links.New(testSecret)}
	e.clients = &clients{t: t, srv: srv, m: map[int64]*mtproto.Client{}}
	e.reg = prometheus.NewRegistry()
	e.opts = Options{Files: files{e.db}, Holders: botpool.New(e.db, nil), Clients: e.clients,
		Pools: mtproto.NewStreamPools(4), Links: e.links, Window: 4, Registerer: e.reg, Logger: testLogger(),
		MarkFloodWait: func(_ context.Context, bot int64, _ time.Time) {
			e.floodMu.Lock()
			e.flood = append(e.flood, bot)
			e.floodMu.Unlock()
		}}
	if tweak != nil {
		tweak(&e.opts)
	}
	e.h = New(e.opts)
	mux := http.NewServeMux()
	mux.Handle("/dl/", e.h)
	e.http = httptest.NewServer(mux)
	t.Cleanup(e.http.Close)
	return e
}

// addFile posts a generated document on dc as message msg and indexes it
// with a file_id for each of the bots (slot = position in testBots).
func (e *env) addFile(uniqueID, name, mimeType string, size int64, dc, msg int, bots ...int64) (*streamtest.Document, *streamtest.Generated) {
	e.t.Helper()
	g := streamtest.NewGenerated(uint64(msg)*31+7, size)
	doc := e.srv.Add(streamtest.Document{DC: dc, ChannelID: testChannel, MessageID: msg, Name: name, MimeType: mimeType, Size: size, Content: g})
	e.index(uniqueID, name, mimeType, size, dc, msg, doc, bots...)
	return doc, g
}

func (e *env) index(uniqueID, name, mimeType string, size int64, dc, msg int, doc *streamtest.Document, bots ...int64) {
	e.t.Helper()
	e.indexSeen(uniqueID, name, mimeType, size, dc, msg, msg, doc, bots...)
}

// indexSeen is index with the file's first post at message firstMsg and
// the bots' own sightings at message seenMsg.
func (e *env) indexSeen(uniqueID, name, mimeType string, size int64, dc, firstMsg, seenMsg int, doc *streamtest.Document, bots ...int64) {
	e.t.Helper()
	msg := firstMsg
	ctx := context.Background()
	if err := e.db.FileInsertMany(ctx, &db.FileInsertManyParams{
		UniqueID: []string{uniqueID}, Name: []string{name}, MimeType: []string{mimeType}, Type: []string{"document"},
		Caption: []string{""}, Origin: []string{"local"}, Size: []int64{size}, ChatID: []int64{testChat},
		MessageID: []int64{int64(msg)}, DC: []int32{int32(dc)}, Duration: []int32{0}, Width: []int32{0}, Height: []int32{0},
	}); err != nil {
		e.t.Fatal(err)
	}
	p := &db.FileBotIDUpsertManyParams{}
	for _, b := range bots {
		slot := 0
		for i, tb := range testBots {
			if tb == b {
				slot = i + 1
			}
		}
		p.UniqueID = append(p.UniqueID, uniqueID)
		p.FileID = append(p.FileID, e.srv.FileID(b, doc, dc))
		p.Slot = append(p.Slot, int32(slot))
		p.BotID = append(p.BotID, b)
		p.ChatID = append(p.ChatID, testChat)
		p.MessageID = append(p.MessageID, int64(seenMsg))
	}
	if _, err := e.db.FileBotIDUpsertMany(ctx, p); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) url(uniqueID, name string, d links.Disposition) string {
	return e.links.DownloadURL(e.http.URL, uniqueID, name, time.Now().Add(time.Hour), d)
}

func (e *env) get(method, url string, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return res, body
}

func content(t testing.TB, g *streamtest.Generated, start, end int64) []byte {
	t.Helper()
	b := make([]byte, end-start)
	if _, err := g.ReadAt(b, start); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}
