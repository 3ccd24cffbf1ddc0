package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunServesAndQueuesStart runs fakebot as main does (with -start) and
// reads the queued /start through the Bot API at the printed URL.
func TestRunServesAndQueuesStart(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-start"}, pw, io.Discard) }()

	lineCh := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		lineCh <- line
	}()
	var started struct {
		URL    string   `json:"url"`
		Tokens []string `json:"tokens"`
	}
	select {
	case line := <-lineCh:
		if err := json.Unmarshal([]byte(line), &started); err != nil {
			t.Fatalf("start line %q: %v", line, err)
		}
	case err := <-done:
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no start line")
	}
	if len(started.Tokens) != 1 || started.Tokens[0] != defaultToken || !strings.HasPrefix(started.URL, "http://127.0.0.1:") {
		t.Fatalf("start line = %+v", started)
	}

	resp, err := http.Get(started.URL + "/bot" + defaultToken + "/getUpdates")
	if err != nil {
		t.Fatal(err)
	}
	var upd struct {
		Result []struct {
			Message struct {
				Text string `json:"text"`
				From struct {
					ID int64 `json:"id"`
				} `json:"from"`
			} `json:"message"`
		} `json:"result"`
	}
	err = json.NewDecoder(resp.Body).Decode(&upd)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(upd.Result) != 1 || upd.Result[0].Message.Text != "/start" || upd.Result[0].Message.From.ID != 1001 {
		t.Fatalf("getUpdates = %+v", upd)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not stop")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	if err := run(t.Context(), []string{"-addr", "127.0.0.1:0", "-tokens", "nocolon"}, io.Discard, io.Discard); err == nil {
		t.Fatal("a token without ':' was accepted")
	}
	if err := run(t.Context(), []string{"-addr", "127.0.0.1:0", "extra"}, io.Discard, io.Discard); err == nil {
		t.Fatal("an argument was accepted")
	}
}
