package botapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-telegram/bot"

	"github.com/ferry-dev/ferry/config"
)

// request is what the test server saw of one request.
type request struct {
	chunked bool
	length  int64
	sum     [32]byte
	form    map[string]string
}

func recordingServer(t *testing.T) (*httptest.Server, func() []request) {
	var mu sync.Mutex
	var seen []request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := request{chunked: len(r.TransferEncoding) > 0, length: r.ContentLength, form: map[string]string{}}
		if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/") {
			if err := r.ParseMultipartForm(1 << 20); err != nil {
				t.Errorf("parse form: %v", err)
			}
			for k, v := range r.MultipartForm.Value {
				got.form[k] = v[0]
			}
		} else {
			body, _ := io.ReadAll(r.Body)
			got.sum = sha256.Sum256(body)
		}
		mu.Lock()
		seen = append(seen, got)
		mu.Unlock()
		io.WriteString(w, `{"ok":true,"result":{"message_id":7,"date":1,"chat":{"id":-100,"type":"channel"}}}`)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []request { mu.Lock(); defer mu.Unlock(); return append([]request(nil), seen...) }
}

// A Bot API call goes out with a Content-Length, not chunked, and the form
// arrives whole.
func TestSendMessageIsNotChunked(t *testing.T) {
	srv, seen := recordingServer(t)
	bots, err := New([]config.Bot{{Token: "123:abc", ID: 123, Slot: 1}}, srv.URL, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := bots.ByID(123)
	if _, err := b.Client.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: -100, Text: "héllo <b>x</b>"}); err != nil {
		t.Fatal(err)
	}
	got := seen()
	if len(got) != 1 {
		t.Fatalf("%d requests", len(got))
	}
	if got[0].chunked || got[0].length <= 0 {
		t.Errorf("chunked=%v Content-Length=%d, want a length", got[0].chunked, got[0].length)
	}
	if got[0].form["chat_id"] != "-100" || got[0].form["text"] != "héllo <b>x</b>" {
		t.Errorf("form %v", got[0].form)
	}
}

// A body larger than maxBufferedBody still arrives intact (streamed).
func TestLargeBodyStreamsIntact(t *testing.T) {
	srv, seen := recordingServer(t)
	data := make([]byte, maxBufferedBody*2+12345)
	rand.Read(data)
	pr, pw := io.Pipe()
	go func() {
		for b := data; len(b) > 0; b = b[min(len(b), 4000):] {
			pw.Write(b[:min(len(b), 4000)])
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, pr)
	res, err := bufferedBodies{http.DefaultClient}.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	got := seen()
	if len(got) != 1 || got[0].sum != sha256.Sum256(data) || !got[0].chunked {
		t.Fatalf("got %+v, want the body intact and streamed", got)
	}
}

// A body that fails while it is read fails the call with that error.
func TestBodyErrorFailsCall(t *testing.T) {
	srv, seen := recordingServer(t)
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte("part")); pw.CloseWithError(io.ErrUnexpectedEOF) }()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, pr)
	if _, err := (bufferedBodies{http.DefaultClient}).Do(req); err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Fatalf("err %v", err)
	}
	if n := len(seen()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

// Calls in flight at once reuse their connections afterwards instead of
// dialing new ones (Go's default keeps two idle per host).
func TestConnectionsAreReused(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		io.WriteString(w, `{"ok":true,"result":{"message_id":7,"date":1,"chat":{"id":-100,"type":"channel"}}}`)
	}))
	srv.Start()
	t.Cleanup(srv.Close)
	bots, err := New([]config.Bot{{Token: "123:abc", ID: 123, Slot: 1}}, srv.URL, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := bots.ByID(123)
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := b.Client.SendMessage(context.Background(), &bot.SendMessageParams{ChatID: -100, Text: "x"}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	// Eight suffice; a round can start before the last one's connections
	// are back in the idle pool, so a few more are allowed. Without reuse
	// beyond Go's two idle per host it takes about 8 + 4×6 = 32.
	if n := len(conns); n > 12 {
		t.Fatalf("%d connections for 40 calls, 8 at a time", n)
	}
}
