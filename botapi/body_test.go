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
