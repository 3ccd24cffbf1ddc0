package mtproto_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/gotd/td/session"
	"github.com/gotd/td/tg"

	"github.com/ferry-dev/ferry/db"
	"github.com/ferry-dev/ferry/mtproto"
	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

// answers is a UserAuthenticator with fixed answers.
type answers struct{ phone, code, password string }

func (a answers) Phone(context.Context) (string, error)                  { return a.phone, nil }
func (a answers) Code(context.Context, *tg.AuthSentCode) (string, error) { return a.code, nil }
func (a answers) Password(context.Context) (string, error)               { return a.password, nil }

var testUser = mtprototest.PremiumUser{Phone: "+15550001", Code: "31337", Password: "correct horse", Premium: true,
	FirstName: "Pat", Username: "pat_premium"}

func login(t *testing.T, srv *mtprototest.Server, d db.Driver, key string, a answers) (*tg.User, error) {
	t.Helper()
	store, err := mtproto.NewUserSessionStore(d, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return mtproto.Login(ctx, mtproto.Options{APIID: testAPIID, APIHash: testAPIHash, DCAddr: srv.Addr(),
		PublicKeyPEM: srv.PublicKeyPEM(), Logger: testLogger(t), PoolSize: 1}, store, a)
}

// A user signs in with code and 2FA password (SRP); the stored row is
// sealed (neither the auth key nor its base64 form is in it), opens only
// with the same SESSION_KEY, and a client started from it is the premium
// user and can upload a file of more than 4000 parts, which the server
// refuses from a bot.
func TestLoginStoresSealedUserSession(t *testing.T) {
	srv := mtprototest.New(t, mtprototest.Options{PremiumUser: &testUser})
	d := newDB(t)
	u, err := login(t, srv, d, "k1", answers{testUser.Phone, testUser.Code, testUser.Password})
	if err != nil {
		t.Fatal(err)
	}
	if !u.Premium || u.Username != "pat_premium" || srv.UserLogins() != 1 || srv.Calls("auth.checkPassword") != 1 {
		t.Fatalf("user %+v, logins %d, checkPassword %d", u, srv.UserLogins(), srv.Calls("auth.checkPassword"))
	}
	ctx := context.Background()
	raw, err := d.SessionGet(ctx, mtproto.UserSessionOwner)
	if err != nil {
		t.Fatal(err)
	}
	store, _ := mtproto.NewUserSessionStore(d, "k1")
	data, err := (&session.Loader{Storage: store}).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(data.AuthKey) != 256 {
		t.Fatalf("auth key of %d bytes", len(data.AuthKey))
	}
	row := append(append([]byte(nil), raw.Nonce...), raw.Data...)
	for _, clear := range [][]byte{data.AuthKey[:32], data.AuthKey[128:160], []byte(base64.StdEncoding.EncodeToString(data.AuthKey)[:40]),
		[]byte(hex.EncodeToString(data.AuthKey)[:40]), []byte("auth_key"), []byte("AuthKey")} {
		if bytes.Contains(row, clear) {
			t.Fatalf("the stored row contains %q in clear", clear)
		}
	}
	wrong, _ := mtproto.NewUserSessionStore(d, "k2")
	if _, err := wrong.LoadSession(ctx); !errors.Is(err, mtproto.ErrUserSessionSealed) {
		t.Fatalf("another SESSION_KEY read the session: %v", err)
	}

	// Another process: the stored session, no login.
	c, err := mtproto.NewClient(mtproto.Options{APIID: testAPIID, APIHash: testAPIHash, User: true, DCAddr: srv.Addr(),
		PublicKeyPEM: srv.PublicKeyPEM(), SessionStorage: store, Logger: testLogger(t), PoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if self := c.Self(); self == nil || self.ID != u.ID || !self.Premium || srv.UserLogins() != 1 {
		t.Fatalf("started as %+v (logins %d)", c.Self(), srv.UserLogins())
	}
	full, err := c.API().UsersGetFullUser(ctx, &tg.InputUserSelf{})
	if err != nil || len(full.Users) != 1 || !full.Users[0].(*tg.User).Premium || full.FullUser.ID != u.ID {
		t.Fatalf("users.getFullUser: %+v %v", full, err)
	}
	pool, err := c.Pool()
	if err != nil {
		t.Fatal(err)
	}
	// Part 4500 of a 6000-part file: Telegram takes it from a premium
	// account only.
	part := &tg.UploadSaveBigFilePartRequest{FileID: 1, FilePart: 4500, FileTotalParts: 6000, Bytes: make([]byte, 512<<10)}
	if ok, err := tg.NewClient(pool).UploadSaveBigFilePart(ctx, part); err != nil || !ok {
		t.Fatalf("premium user part: %v %v", ok, err)
	}
	bot := startClient(t, ctx, srv.Addr(), srv.PublicKeyPEM(), d, 1)
	if _, err := bot.API().UploadSaveBigFilePart(ctx, part); err == nil || !bytes.Contains([]byte(err.Error()), []byte("FILE_PARTS_INVALID")) {
		t.Fatalf("a bot's part of a 6000-part file: %v", err)
	}
	if n := srv.UserPartRequests(); n != 1 {
		t.Fatalf("%d user parts at the server", n)
	}

	// A wrong SESSION_KEY neither reads nor overwrites the row.
	_ = c.Close()
	before, _ := d.SessionGet(ctx, mtproto.UserSessionOwner)
	cw, _ := mtproto.NewClient(mtproto.Options{APIID: testAPIID, APIHash: testAPIHash, User: true, DCAddr: srv.Addr(),
		PublicKeyPEM: srv.PublicKeyPEM(), SessionStorage: wrong, Logger: testLogger(t)})
	if err := cw.Start(ctx); !errors.Is(err, mtproto.ErrUserSessionSealed) {
		t.Fatalf("start with a wrong SESSION_KEY: %v", err)
	}
	after, _ := d.SessionGet(ctx, mtproto.UserSessionOwner)
	if !bytes.Equal(after.Data, before.Data) || !bytes.Equal(after.Nonce, before.Nonce) {
		t.Fatal("a start with a wrong SESSION_KEY rewrote the stored session")
	}

	// Logged out elsewhere: the session no longer starts, and says so.
	srv.LogOutUser()
	cl, _ := mtproto.NewClient(mtproto.Options{APIID: testAPIID, APIHash: testAPIHash, User: true, DCAddr: srv.Addr(),
		PublicKeyPEM: srv.PublicKeyPEM(), SessionStorage: store, Logger: testLogger(t)})
	if err := cl.Start(ctx); !errors.Is(err, mtproto.ErrUserLoggedOut) || srv.Calls("auth.importBotAuthorization") != 1 {
		t.Fatalf("start of a logged-out session: %v (bot logins %d: only the test's bot)", err, srv.Calls("auth.importBotAuthorization"))
	}
}

// A wrong code or password fails with its own error and stores nothing;
// a phone number Telegram does not know fails too.
func TestLoginRefusedStoresNothing(t *testing.T) {
	srv := mtprototest.New(t, mtprototest.Options{PremiumUser: &testUser})
	d := newDB(t)
	for _, tc := range []struct {
		a    answers
		want error
		code string
	}{
		{answers{testUser.Phone, "00000", testUser.Password}, mtproto.ErrLoginCode, "PHONE_CODE_INVALID"},
		{answers{testUser.Phone, testUser.Code, "wrong horse"}, mtproto.ErrLoginPassword, "PASSWORD_HASH_INVALID"},
		{answers{"+15559999", testUser.Code, testUser.Password}, nil, "PHONE_NUMBER_INVALID"},
	} {
		_, err := login(t, srv, d, "k1", tc.a)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || srv.UserFailures(tc.code) != 1 {
			t.Fatalf("%+v: %v (%s: %d)", tc.a, err, tc.code, srv.UserFailures(tc.code))
		}
		if _, err := d.SessionGet(context.Background(), mtproto.UserSessionOwner); !errors.Is(err, db.ErrNotFound) {
			t.Fatalf("%+v: a session was stored (%v)", tc.a, err)
		}
	}
	if srv.UserLogins() != 0 {
		t.Fatalf("%d logins", srv.UserLogins())
	}
}
