package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gotd/td/tg"
	"github.com/riverqueue/river/rivertype"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/db/dbtest"
	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

// over2000 is a file size only a premium account may upload.
const over2000 = 3000 << 20

// premiumHarness is startUploads with a user account on the MTProto
// server that the test may log in.
type premiumHarness struct {
	*harness
	mt   *mtprototest.Server
	root string
	cfg  *config.Config
	deps *jobs.Deps
}

func startPremium(t *testing.T, user mtprototest.PremiumUser) *premiumHarness {
	t.Helper()
	p := &premiumHarness{root: t.TempDir()}
	p.mt = mtprototest.New(t, mtprototest.Options{PremiumUser: &user})
	keyPath := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyPath, p.mt.PublicKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	p.harness = startWorkers(t, func(d *jobs.Deps) {
		cfg := *d.Config
		cfg.APIID, cfg.APIHash, cfg.SessionKey = 17349, "test-hash", "session-key"
		cfg.MTProtoDCAddr, cfg.MTProtoPublicKey = p.mt.Addr(), keyPath
		cfg.UploadRoots, cfg.UploadThreads, cfg.DataDir = []string{p.root}, 4, t.TempDir()
		d.Config, p.cfg, p.deps = &cfg, &cfg, d
		clients, err := jobs.NewMTProtoClients(&cfg, d.DB, d.Logger)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { clients.Close() })
		d.MTProto, d.UploadState = clients, mtproto.NewStateStore(d.DB)
	})
	return p
}

// login stores the user session as `ferry login` does.
func (p *premiumHarness) login(t *testing.T, u mtprototest.PremiumUser) {
	t.Helper()
	p.loginWithKey(t, u, p.cfg.SessionKey)
}

// loginWithKey is login with the session sealed under key.
func (p *premiumHarness) loginWithKey(t *testing.T, u mtprototest.PremiumUser, key string) {
	t.Helper()
	store, err := mtproto.NewUserSessionStore(p.deps.DB, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = mtproto.Login(ctx, mtproto.Options{APIID: p.cfg.APIID, APIHash: p.cfg.APIHash, DCAddr: p.mt.Addr(),
		PublicKeyPEM: p.mt.PublicKeyPEM(), PoolSize: 1}, store, fixedAnswers{u})
	if err != nil {
		t.Fatal(err)
	}
}

type fixedAnswers struct{ u mtprototest.PremiumUser }

func (a fixedAnswers) Phone(context.Context) (string, error)                  { return a.u.Phone, nil }
func (a fixedAnswers) Code(context.Context, *tg.AuthSentCode) (string, error) { return a.u.Code, nil }
func (a fixedAnswers) Password(context.Context) (string, error)               { return a.u.Password, nil }

// sparseFile makes a file of size bytes that costs almost no disk.
func sparseFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// A 3000 MiB /upload without a user session, and with one whose account is
// not premium, is refused at once with the reason; no upload job is
// queued and no part reaches the server.
func TestOver2000MiBRefusedWithoutPremium(t *testing.T) {
	user := mtprototest.PremiumUser{Phone: "+15550002", Code: "24680", Premium: false, FirstName: "Sam"}
	p := startPremium(t, user)
	path := filepath.Join(p.root, "huge.bin")
	sparseFile(t, path, over2000)

	p.deliver(t, command(1, admin, "/upload "+path))
	r := p.wait(t, "sendMessage", 1)[0].Params["text"]
	if !strings.Contains(r, "Cannot upload <b>huge.bin</b>: 3000.0 MiB is over the 2000 MiB limit for bots; a file over 2000 MiB needs a premium session: run ferry login") {
		t.Fatalf("no session: %q", r)
	}

	p.login(t, user)
	p.deliver(t, command(2, admin, "/upload "+path))
	r = p.wait(t, "sendMessage", 2)[1].Params["text"]
	if !strings.Contains(r, "needs a premium session, and the logged-in account Sam (@ferry_premium) is not premium") {
		t.Fatalf("not premium: %q", r)
	}
	// Over 4000 MiB nobody may upload.
	if err := os.Truncate(path, 4001<<20); err != nil {
		t.Fatal(err)
	}
	p.deliver(t, command(3, admin, "/upload "+path))
	r = p.wait(t, "sendMessage", 3)[2].Params["text"]
	if !strings.Contains(r, "over the 4000 MiB / 8000 parts limit for premium accounts") {
		t.Fatalf("over 4000 MiB: %q", r)
	}
	if n := len(dbtest.Jobs(t, p.deps.DB, jobs.UploadArgs{}.Kind())); n != 0 || p.mt.PartRequests() != 0 {
		t.Fatalf("%d upload jobs, %d parts at the server", n, p.mt.PartRequests())
	}
}

// A premium session sealed under another SESSION_KEY is refused with that
// reason and left as it is (not replaced by a fresh, unauthorized one).
func TestOver2000MiBSessionOfAnotherKeyIsRefused(t *testing.T) {
	user := mtprototest.PremiumUser{Phone: "+15550004", Code: "2222", Premium: true}
	p := startPremium(t, user)
	path := filepath.Join(p.root, "huge.bin")
	sparseFile(t, path, over2000)
	p.loginWithKey(t, user, "an-older-session-key")
	ctx := context.Background()
	before, err := p.deps.DB.SessionGet(ctx, mtproto.UserSessionOwner)
	if err != nil {
		t.Fatal(err)
	}
	p.deliver(t, command(1, admin, "/upload "+path))
	r := p.wait(t, "sendMessage", 1)[0].Params["text"]
	if !strings.HasSuffix(r, "needs a premium session, and the stored user session cannot be decrypted with this SESSION_KEY: run ferry login again") {
		t.Fatalf("reply %q", r)
	}
	after, err := p.deps.DB.SessionGet(ctx, mtproto.UserSessionOwner)
	if err != nil || string(after.Data) != string(before.Data) || p.mt.PartRequests() != 0 {
		t.Fatalf("the session row changed (%v) or parts were sent (%d)", err, p.mt.PartRequests())
	}
}

// An upload job of a 3000 MiB file that finds no premium session when it
// runs (queued before a session was lost, say) is cancelled with the
// reason on its status message, before any part is sent.
func TestUploadJobOver2000MiBWithoutSessionIsCancelled(t *testing.T) {
	p := startPremium(t, mtprototest.PremiumUser{Phone: "+15550003", Code: "1111", Premium: true})
	path := filepath.Join(p.root, "huge.bin")
	sparseFile(t, path, over2000)
	status := p.sendStatus(t, admin, "Queued huge.bin")
	_, err := p.client.Insert(context.Background(), jobs.UploadArgs{BotID: 111, UpdateID: 7, ChatID: admin, StatusID: status, Path: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var edit string
	for deadline := time.Now().Add(20 * time.Second); edit == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no final status; edits %+v", p.tg.CallsTo("editMessageText"))
		}
		for _, e := range p.tg.CallsTo("editMessageText") {
			if e.OK && strings.Contains(e.Params["text"], "Cannot upload") {
				edit = e.Params["text"]
			}
		}
	}
	if !strings.Contains(edit, "needs a premium session: run ferry login") {
		t.Fatalf("final status %q", edit)
	}
	for deadline := time.Now().Add(10 * time.Second); len(dbtest.Jobs(t, p.deps.DB, "upload", rivertype.JobStateCancelled)) != 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the upload job was not cancelled")
		}
	}
	if n := p.mt.PartRequests(); n != 0 {
		t.Fatalf("%d parts sent", n)
	}
}

// sendStatus posts a message as the first bot, the way the /upload
// command makes its status message, and returns its id.
func (p *premiumHarness) sendStatus(t *testing.T, chat int64, text string) int {
	t.Helper()
	res, err := http.PostForm(p.tg.URL()+"/bot"+workerToken+"/sendMessage", url.Values{"chat_id": {fmt.Sprint(chat)}, "text": {text}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		OK     bool `json:"ok"`
		Result struct {
			MessageID int `json:"message_id"`
		} `json:"result"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || !out.OK {
		t.Fatalf("sendMessage: %v %+v", err, out)
	}
	return out.Result.MessageID
}
