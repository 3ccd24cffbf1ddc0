package mtproto_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

const (
	testBotToken = "123456:test-secret-token"
	testChatID   = -1001234567890
	testAPIID    = 17349
	testAPIHash  = "test-api-hash"
)

// writeRandomFile writes size deterministic pseudo-random bytes and returns
// the path and their sha256.
func writeRandomFile(t testing.TB, dir string, size int64, seed uint64) (string, string) {
	t.Helper()
	path := filepath.Join(dir, "src.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	rng := rand.NewChaCha8(key)
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rng, size); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("FERRY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type env struct {
	srv    *mtprototest.Server
	db     db.Driver
	client *mtproto.Client
	store  *mtproto.StateStore
	up     *mtproto.Uploader
	snd    *mtproto.Sender
	peer   *mtproto.Post
}

// startClient logs a bot into srv with its session in db.
func startClient(t testing.TB, ctx context.Context, addr string, keyPEM []byte, d db.Driver, pool int) *mtproto.Client {
	t.Helper()
	sess, err := mtproto.NewSessionStore(d, 123456, "test-session-key")
	if err != nil {
		t.Fatal(err)
	}
	c, err := mtproto.NewClient(mtproto.Options{
		APIID: testAPIID, APIHash: testAPIHash, BotToken: testBotToken,
		DCAddr: addr, PublicKeyPEM: keyPEM, SessionStorage: sess,
		Logger: testLogger(t), PoolSize: pool,
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newEnv(t testing.TB, opts mtprototest.Options, threads int) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{srv: mtprototest.New(t, opts), db: dbtest.New(t)}
	e.client = startClient(t, ctx, e.srv.Addr(), e.srv.PublicKeyPEM(), e.db, threads)
	pool, err := e.client.Pool()
	if err != nil {
		t.Fatal(err)
	}
	e.store = mtproto.NewStateStore(e.db)
	e.up = mtproto.NewUploader(pool, e.store).WithThreads(threads).WithBotID(e.client.BotID()).WithLogger(testLogger(t))
	e.snd = mtproto.NewSender(e.client.API(), e.store).WithLogger(testLogger(t))
	peer, err := mtproto.ResolveChannel(ctx, e.client.API(), testChatID)
	if err != nil {
		t.Fatal(err)
	}
	e.peer = &mtproto.Post{Peer: peer}
	return e
}

func fileSHA(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func newDB(t testing.TB) db.Driver { return dbtest.New(t) }

// helperClient is the set-up shared by the re-executed child processes
// (TestHelperProcess, TestHelperUploadProcess): the database, a started
// client and the thread count, all from the FERRY_MT_* environment the
// parent passes. The database is closed when the test ends.
func helperClient(t *testing.T, ctx context.Context) (db.Driver, *mtproto.Client, int) {
	t.Helper()
	d := dbtest.Open(t, os.Getenv("FERRY_MT_DB"))
	key, err := os.ReadFile(os.Getenv("FERRY_MT_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	threads, _ := strconv.Atoi(os.Getenv("FERRY_MT_THREADS"))
	return d, startClient(t, ctx, os.Getenv("FERRY_MT_ADDR"), key, d, threads), threads
}
