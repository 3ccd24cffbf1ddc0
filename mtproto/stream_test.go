package mtproto_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/streamtest"
)

// streamClient logs bot botID in to the home DC of s (memory session).
func streamClient(t testing.TB, s *streamtest.Server, botID int64) *mtproto.Client {
	t.Helper()
	c, err := mtproto.NewClient(mtproto.Options{
		APIID: testAPIID, APIHash: testAPIHash, BotToken: itoa(botID) + ":stream-secret",
		DCAddr: s.Addr(s.HomeDC()), DC: s.HomeDC(), PublicKeyPEM: s.PublicKeysPEM(), Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func itoa(n int64) string {
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

func readRange(t testing.TB, r mtproto.BlockReader, size, start, end int64, window int) []byte {
	t.Helper()
	s := mtproto.NewRangeStream(context.Background(), r, size, start, end, window)
	defer s.Close()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatalf("range [%d, %d): %v", start, end, err)
	}
	return got
}

func want(t testing.TB, g *streamtest.Generated, start, end int64) []byte {
	t.Helper()
	b := make([]byte, end-start)
	if _, err := g.ReadAt(b, start); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

// A document on another DC than the bot's home, read with precise
// requests: the whole file, 50 random ranges and a range across 1 MiB
// boundaries at odd offsets are byte-identical; a file_id naming the wrong
// DC is answered FILE_MIGRATE and followed; an expired reference is
// refreshed once for all blocks in flight.
func TestStreamRangesMultiDC(t *testing.T) {
	srv := streamtest.New(t, streamtest.Options{})
	const bot = 7001
	c := streamClient(t, srv, bot)
	const size = 12<<20 + 4321
	g := streamtest.NewGenerated(11, size)
	doc := srv.Add(streamtest.Document{DC: 4, ChannelID: 1234567890, MessageID: 5, Name: "a.bin", Size: size, Content: g})
	pools := mtproto.NewStreamPools(4)
	f, err := pools.OpenFile(c, srv.FileID(bot, doc, 4), -1001234567890, 5)
	if err != nil {
		t.Fatal(err)
	}
	full := readRange(t, f, size, 0, size, 4)
	if sha256.Sum256(full) != sha256.Sum256(want(t, g, 0, size)) {
		t.Fatal("full stream differs from the source")
	}
	if srv.Calls("auth.exportAuthorization") == 0 || srv.Calls("auth.importAuthorization") == 0 {
		t.Fatal("the DC 4 pool was not authorized by export/import")
	}
	if n := srv.GetFileCalls(bot); n != 13 {
		t.Fatalf("full read took %d getFile calls, want 13 (one per MiB)", n)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		a := rng.Int64N(size)
		b := a + 1 + rng.Int64N(min(size-a, 3<<20))
		if got := readRange(t, f, size, a, b, 3); !bytes.Equal(got, want(t, g, a, b)) {
			t.Fatalf("range %d [%d, %d) differs", i, a, b)
		}
	}
	// Odd offsets across two 1 MiB boundaries: the first block runs to the
	// boundary, none crosses it.
	a, b := int64(1<<20-333), int64(3<<20+777)
	before := srv.GetFileCalls(bot)
	if got := readRange(t, f, size, a, b, 2); !bytes.Equal(got, want(t, g, a, b)) {
		t.Fatal("boundary range differs")
	}
	if n := srv.GetFileCalls(bot) - before; n != 4 {
		t.Fatalf("boundary range took %d requests, want 4", n)
	}
	// The last byte alone.
	if got := readRange(t, f, size, size-1, size, 4); !bytes.Equal(got, want(t, g, size-1, size)) {
		t.Fatal("last byte differs")
	}

	// A file_id naming DC 2: FILE_MIGRATE_4 is followed.
	wrong, err := pools.OpenFile(c, srv.FileID(bot, doc, 2), -1001234567890, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := readRange(t, wrong, size, 5<<20+17, 7<<20, 4); !bytes.Equal(got, want(t, g, 5<<20+17, 7<<20)) {
		t.Fatal("migrated range differs")
	}

	// Expired references: refreshed once through channels.getMessages.
	srv.ExpireReferences()
	refreshed := 0
	f.OnRefresh = func() { refreshed++ }
	if got := readRange(t, f, size, 0, size, 6); sha256.Sum256(got) != sha256.Sum256(full) {
		t.Fatal("stream after expiry differs")
	}
	if refreshed != 1 || srv.Calls("channels.getMessages") != 1 {
		t.Fatalf("refreshes %d, getMessages %d; want 1 and 1", refreshed, srv.Calls("channels.getMessages"))
	}
}

// Precise-rule checks match Telegram's documented limits.
func TestCheckPrecise(t *testing.T) {
	for _, c := range []struct {
		off   int64
		limit int
		ok    bool
	}{
		{0, 1 << 20, true}, {1024, 1<<20 - 1024, true}, {1<<20 - 1024, 1024, true},
		{1<<20 - 1024, 2048, false}, {512, 1024, false}, {0, 1<<20 + 1024, false}, {0, 1000, false}, {0, 0, false},
	} {
		if err := mtproto.CheckPrecise(c.off, c.limit); (err == nil) != c.ok {
			t.Errorf("CheckPrecise(%d, %d) = %v, want ok=%v", c.off, c.limit, err, c.ok)
		}
	}
}
