package mtproto_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

func TestUpload300MiBArrivesIdentical(t *testing.T) {
	e := newEnv(t, mtprototest.Options{}, 8)
	const size = 300 << 20
	path, sum := writeRandomFile(t, t.TempDir(), size, 3)
	start := time.Now()
	deliverFile(t, e, "k300", path, size, nil)
	t.Logf("300 MiB delivered in %v", time.Since(start))
	posts := e.srv.Posts()
	if len(posts) != 1 || posts[0].SHA256 != sum || posts[0].Size != size {
		t.Fatalf("posts = %+v, want one with sha %s", posts, sum)
	}
	if got := e.srv.PartRequests(); got != 600 {
		t.Fatalf("part requests %d, want 600", got)
	}
}

func TestFloodWaitAndInternalCostTimeNotTheFile(t *testing.T) {
	e := newEnv(t, mtprototest.Options{Seed: 7}, 8)
	e.up = e.up.WithRetry(15, 20*time.Millisecond, 200*time.Millisecond)
	e.srv.InjectFaults(
		mtprototest.Fault{Method: mtprototest.MethodUploadPart, Kind: mtprototest.FloodWait, Rate: 0.08, Max: 4, Seconds: 1},
		mtprototest.Fault{Method: mtprototest.MethodUploadPart, Kind: mtprototest.Internal, Rate: 0.15, Max: 12},
		mtprototest.Fault{Method: mtprototest.MethodSendMedia, Kind: mtprototest.Internal, Rate: 1, Max: 1},
	)
	const size = 40<<20 + 999
	path, sum := writeRandomFile(t, t.TempDir(), size, 4)
	start := time.Now()
	deliverFile(t, e, "faults", path, size, nil)
	elapsed := time.Since(start)
	fw, in := e.srv.Injected(mtprototest.FloodWait), e.srv.Injected(mtprototest.Internal)
	t.Logf("flood waits %d, internal %d, elapsed %v", fw, in, elapsed)
	if fw == 0 || in < 2 {
		t.Fatalf("faults did not fire: flood %d internal %d", fw, in)
	}
	if elapsed < time.Second {
		t.Fatalf("FLOOD_WAIT_1 not obeyed: finished in %v", elapsed)
	}
	posts := e.srv.Posts()
	if len(posts) != 1 || posts[0].SHA256 != sum {
		t.Fatalf("posts = %+v", posts)
	}
	// Only failed parts were re-sent: every stored part request is a
	// distinct part.
	if got := e.srv.PartRequests(); got != 81 {
		t.Fatalf("stored part requests %d, want 81", got)
	}
	if e.srv.Calls("messages.sendMedia") != 2 {
		t.Fatalf("sendMedia calls = %d, want 2 (one INTERNAL, one retry)", e.srv.Calls("messages.sendMedia"))
	}
}

func TestDroppedConnectionsSurvived(t *testing.T) {
	e := newEnv(t, mtprototest.Options{Seed: 9}, 8)
	e.up = e.up.WithRetry(15, 20*time.Millisecond, 500*time.Millisecond)
	e.srv.InjectFaults(mtprototest.Fault{Method: mtprototest.MethodUploadPart, Kind: mtprototest.Drop, Rate: 0.1, Max: 3, AfterParts: 10})
	const size = 48 << 20
	path, sum := writeRandomFile(t, t.TempDir(), size, 5)
	deliverFile(t, e, "drops", path, size, nil)
	if n := e.srv.Injected(mtprototest.Drop); n != 3 {
		t.Fatalf("drops injected %d, want 3", n)
	}
	posts := e.srv.Posts()
	if len(posts) != 1 || posts[0].SHA256 != sum {
		t.Fatalf("posts = %+v", posts)
	}
}

func TestExpiredPartsStartOverWithOnePost(t *testing.T) {
	e := newEnv(t, mtprototest.Options{}, 4)
	const size = 12 << 20
	path, sum := writeRandomFile(t, t.TempDir(), size, 6)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	req := mtproto.UploadRequest{Key: "expire", Name: "e.bin", Size: size, ReaderAt: f}
	if _, err := e.up.Upload(ctx, req); err != nil {
		t.Fatal(err)
	}
	// Telegram forgets the parts (hours pass) before the post is sent.
	e.srv.ForgetParts()
	p := *e.peer
	if _, err := mtproto.Deliver(ctx, e.up, e.snd, req, p); err != nil {
		t.Fatal(err)
	}
	posts := e.srv.Posts()
	if len(posts) != 1 || posts[0].SHA256 != sum {
		t.Fatalf("posts = %+v", posts)
	}
	if got := e.srv.PartRequests(); got != 48 {
		t.Fatalf("part requests %d, want 48 (24 + 24 after restart)", got)
	}
	if e.srv.Calls("messages.sendMedia") != 2 {
		t.Fatalf("sendMedia calls %d, want 2", e.srv.Calls("messages.sendMedia"))
	}

	// A state older than the max age starts over too, without asking.
	req.Key = "old"
	if _, err := e.up.Upload(ctx, req); err != nil {
		t.Fatal(err)
	}
	st1, _, _ := e.store.Load(ctx, "old")
	if _, err := e.up.WithMaxStateAge(time.Nanosecond).Upload(ctx, req); err != nil {
		t.Fatal(err)
	}
	st2, _, _ := e.store.Load(ctx, "old")
	if st1.FileID == st2.FileID || e.srv.PartRequests() != 48+48 {
		t.Fatalf("old state reused: file ids %d %d, parts %d", st1.FileID, st2.FileID, e.srv.PartRequests())
	}
	// A fresh state is resumed: nothing is sent again.
	if _, err := e.up.Upload(ctx, req); err != nil {
		t.Fatal(err)
	}
	if e.srv.PartRequests() != 96 {
		t.Fatalf("complete upload re-sent parts: %d", e.srv.PartRequests())
	}
}

func TestSessionReusedWithoutSecondLogin(t *testing.T) {
	srv := mtprototest.New(t, mtprototest.Options{})
	db := newDB(t)
	ctx := context.Background()
	c1 := startClient(t, ctx, srv.Addr(), srv.PublicKeyPEM(), db, 2)
	if c1.Self() == nil || c1.Self().ID != 123456 || !c1.Self().Bot {
		t.Fatalf("self = %+v", c1.Self())
	}
	_ = c1.Close()
	c2 := startClient(t, ctx, srv.Addr(), srv.PublicKeyPEM(), db, 2)
	if c2.Self() == nil || c2.Self().ID != 123456 {
		t.Fatalf("self = %+v", c2.Self())
	}
	if n := srv.Logins(); n != 1 {
		t.Fatalf("logins = %d, want 1 (session reused)", n)
	}
	sealed, err := db.SessionGet(ctx, 123456)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed.Data) < 100 {
		t.Fatalf("stored session is %d bytes", len(sealed.Data))
	}
	// A wrong SESSION_KEY cannot open it: the bot logs in again.
	wrong, err := mtproto.NewSessionStore(db, 123456, "another-key")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.LoadSession(ctx); err == nil {
		t.Fatal("session opened with the wrong key")
	}
}

// The server also runs as its own process (what benchmarks use); a client
// pointed at it by address and key file uploads and posts.
func TestSeparateProcessServer(t *testing.T) {
	ctx := context.Background()
	r, err := mtprototest.StartRemote(ctx, t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	key, err := r.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	db := newDB(t)
	c := startClient(t, ctx, r.Addr, key, db, 4)
	pool, err := c.Pool()
	if err != nil {
		t.Fatal(err)
	}
	store := mtproto.NewStateStore(db)
	e := &env{db: db, client: c, store: store,
		up:  mtproto.NewUploader(pool, store).WithThreads(4).WithBotID(c.BotID()),
		snd: mtproto.NewSender(c.API(), store)}
	peer, err := mtproto.ResolveChannel(ctx, c.API(), testChatID)
	if err != nil {
		t.Fatal(err)
	}
	e.peer = &mtproto.Post{Peer: peer}
	const size = 11<<20 + 3
	path, sum := writeRandomFile(t, t.TempDir(), size, 12)
	id := deliverFile(t, e, "remote", path, size, nil)
	st, err := r.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Posts) != 1 || st.Posts[0].SHA256 != sum || st.Posts[0].MessageID != id || st.PartRequests != 23 || st.Logins != 1 {
		t.Fatalf("remote stats %+v", st)
	}
}
