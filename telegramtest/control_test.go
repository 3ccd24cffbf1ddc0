package telegramtest

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-telegram/bot/models"
)

// controlTestServer starts a Server the way fakebot does: Serve on a
// listener, with the control endpoints under /fakebot.
func controlTestServer(t *testing.T) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := Serve(l, slog.New(slog.DiscardHandler))
	t.Cleanup(s.Close)
	const token = "4242:control-test-token-aaaaaaaaaaaaaaaaaaaa"
	s.AddBot(token)
	return s, token
}

func doJSON(t *testing.T, method, u string, body io.Reader, wantStatus int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: status %d, want %d: %s", method, u, resp.StatusCode, wantStatus, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, u, raw, err)
		}
	}
}

func TestControlMessageThenCalls(t *testing.T) {
	s, token := controlTestServer(t)
	base := s.URL()

	var pushed struct {
		UpdateID int64 `json:"update_id"`
		ChatID   int64 `json:"chat_id"`
	}
	doJSON(t, "POST", base+"/fakebot/message?text=/start", nil, 200, &pushed)
	if pushed.UpdateID == 0 || pushed.ChatID != DefaultUserID {
		t.Fatalf("pushed = %+v, want an update id and chat %d", pushed, DefaultUserID)
	}

	// The bot sees it through the Bot API itself.
	var upd struct {
		OK     bool            `json:"ok"`
		Result []models.Update `json:"result"`
	}
	doJSON(t, "GET", base+"/bot"+token+"/getUpdates", nil, 200, &upd)
	if len(upd.Result) != 1 || upd.Result[0].ID != pushed.UpdateID || upd.Result[0].Message.Text != "/start" ||
		upd.Result[0].Message.From.ID != DefaultUserID || len(upd.Result[0].Message.Entities) != 1 {
		t.Fatalf("getUpdates = %+v", upd)
	}

	q := url.Values{"chat_id": {"1001"}, "text": {"hello"}}
	doJSON(t, "POST", base+"/bot"+token+"/sendMessage?"+q.Encode(), nil, 200, nil)

	var calls []CallJSON
	doJSON(t, "GET", base+"/fakebot/calls?method=sendmessage&bot=4242&min=1", nil, 200, &calls)
	if len(calls) != 1 || calls[0].Method != "sendMessage" || calls[0].Params["text"] != "hello" ||
		calls[0].Params["chat_id"] != "1001" || !calls[0].OK || calls[0].BotID != 4242 {
		t.Fatalf("calls = %+v", calls)
	}
	// min that is not reached answers 408 with the calls so far.
	var timedOut struct {
		Error string     `json:"error"`
		Calls []CallJSON `json:"calls"`
	}
	doJSON(t, "GET", base+"/fakebot/calls?method=sendMessage&min=2&timeout=50ms", nil, http.StatusRequestTimeout, &timedOut)
	if len(timedOut.Calls) != 1 || timedOut.Error == "" {
		t.Fatalf("timed out answer = %+v", timedOut)
	}

	var msgs []models.Message
	doJSON(t, "GET", base+"/fakebot/messages?chat=1001", nil, 200, &msgs)
	if len(msgs) != 2 || msgs[0].Text != "/start" || msgs[1].Text != "hello" {
		t.Fatalf("messages = %+v", msgs)
	}
}

func TestControlFailUpdateAndBots(t *testing.T) {
	s, token := controlTestServer(t)
	base := s.URL()

	doJSON(t, "POST", base+"/fakebot/fail?method=sendMessage&kind=too_many_requests&retry_after=7", nil, 200, nil)
	var failed struct {
		ErrorCode  int `json:"error_code"`
		Parameters struct {
			RetryAfter int `json:"retry_after"`
		} `json:"parameters"`
	}
	doJSON(t, "POST", base+"/bot"+token+"/sendMessage?chat_id=5&text=x", nil, 429, &failed)
	if failed.ErrorCode != 429 || failed.Parameters.RetryAfter != 7 {
		t.Fatalf("injected failure answered %+v", failed)
	}
	doJSON(t, "POST", base+"/fakebot/fail?method=sendMessage&kind=nonsense", nil, 400, nil)

	var pushed struct {
		UpdateID int64 `json:"update_id"`
	}
	doJSON(t, "POST", base+"/fakebot/update", strings.NewReader(`{"update_id":777,"message":{"message_id":1,"date":1,"chat":{"id":9,"type":"private"},"text":"hi"}}`), 200, &pushed)
	if pushed.UpdateID != 777 || s.PendingUpdates(token) != 1 {
		t.Fatalf("pushed %+v, pending %d", pushed, s.PendingUpdates(token))
	}
	doJSON(t, "POST", base+"/fakebot/update", strings.NewReader(`[1]`), 400, nil)

	doJSON(t, "POST", base+"/fakebot/bots?token=nonsense", nil, 400, nil)
	doJSON(t, "POST", base+"/fakebot/bots?token=5151:second-bot-token-bbbbbbbbbbbbbbbbbbbbbb", nil, 200, nil)
	var bots []BotJSON
	doJSON(t, "GET", base+"/fakebot/bots", nil, 200, &bots)
	if len(bots) != 2 {
		t.Fatalf("bots = %+v", bots)
	}
	// Two bots: a message must name its bot.
	doJSON(t, "POST", base+"/fakebot/message?text=/start", nil, 404, nil)
	doJSON(t, "POST", base+"/fakebot/message?text=/start&bot=5151", nil, 200, nil)

	doJSON(t, "POST", base+"/fakebot/reset", nil, 200, nil)
	if n := len(s.Calls()); n != 0 {
		t.Fatalf("%d calls after reset", n)
	}
}
