package telegramtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot/models"
)

// DefaultUserID is the user a message injected through ControlHandler
// comes from when the request names none. Put it in ferry's ADMIN_IDS to
// try the admin commands.
const DefaultUserID = 1001

// CallJSON is a recorded call as ControlHandler serves it (the token is
// left out; BotID names the bot).
type CallJSON struct {
	BotID       int64                   `json:"bot_id"`
	Method      string                  `json:"method"`
	Params      map[string]string       `json:"params"`
	Files       map[string]UploadedFile `json:"files,omitempty"`
	Time        time.Time               `json:"time"`
	Injected    FailureKind             `json:"injected,omitempty"`
	HTTPStatus  int                     `json:"http_status"`
	OK          bool                    `json:"ok"`
	ErrorCode   int                     `json:"error_code,omitempty"`
	Description string                  `json:"description,omitempty"`
	Result      json.RawMessage         `json:"result,omitempty"`
}

// BotJSON is a registered bot as ControlHandler serves it.
type BotJSON struct {
	ID       int64  `json:"id"`
	Username string `json:"username"`
	Token    string `json:"token"`
}

// ControlHandler drives the server from another process (Serve mounts it
// under /fakebot). Parameters come from the query or a form body:
//
//	GET  /bots                                  registered bots (JSON)
//	POST /bots?token=ID:SECRET                  register a bot
//	POST /message?text=/start[&bot=][&from=][&chat=]
//	                                            a text message from a user (from:
//	                                            DefaultUserID; chat: the user's private
//	                                            chat), queued for getUpdates or the webhook
//	POST /update[?bot=]                         the body is an update's JSON
//	GET  /calls[?method=][&bot=][&min=N&timeout=10s]
//	                                            recorded calls, oldest first; with min,
//	                                            waits until at least N match
//	GET  /messages?chat=ID                      a chat's current messages
//	POST /fail?method=M&kind=K[&n=1][&retry_after=][&status=][&description=]
//	                                            FailNext (kind: too_many_requests,
//	                                            server_error, forbidden, bad_request,
//	                                            drop_connection)
//	POST /reset                                 forget calls and pending failures
//
// bot is a bot's token or numeric id; it may be left out when there is
// one bot. Answers are JSON; errors are 400 or 404 with a text body.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /bots", func(w http.ResponseWriter, r *http.Request) {
		writeControlJSON(w, s.botsJSON())
	})
	mux.HandleFunc("POST /bots", func(w http.ResponseWriter, r *http.Request) {
		token := r.FormValue("token")
		if err := checkToken(token); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		info := s.AddBot(token)
		writeControlJSON(w, BotJSON{ID: info.ID, Username: info.Username, Token: info.Token})
	})
	mux.HandleFunc("POST /message", func(w http.ResponseWriter, r *http.Request) {
		token, err := s.controlBot(r.FormValue("bot"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		text := r.FormValue("text")
		if text == "" {
			http.Error(w, "text is required", http.StatusBadRequest)
			return
		}
		from, err := intParam(r, "from", DefaultUserID)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		chat, err := intParam(r, "chat", from)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		msg, id := s.PushMessage(token, chat, from, text)
		writeControlJSON(w, map[string]any{"update_id": id, "message_id": msg.ID, "chat_id": msg.Chat.ID})
	})
	mux.HandleFunc("POST /update", func(w http.ResponseWriter, r *http.Request) {
		token, err := s.controlBot(r.FormValue("bot"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, fmt.Sprintf("read update: %v", err), http.StatusBadRequest)
			return
		}
		// Checked here so that PushUpdate has nothing to report.
		var u models.Update
		if err := json.Unmarshal(raw, &u); err != nil {
			http.Error(w, fmt.Sprintf("update does not decode: %v", err), http.StatusBadRequest)
			return
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			http.Error(w, fmt.Sprintf("update is not a JSON object: %v", err), http.StatusBadRequest)
			return
		}
		writeControlJSON(w, map[string]any{"update_id": s.PushUpdate(token, json.RawMessage(raw))})
	})
	mux.HandleFunc("GET /calls", func(w http.ResponseWriter, r *http.Request) {
		method := r.FormValue("method")
		var botID int64
		if b := r.FormValue("bot"); b != "" {
			token, err := s.controlBot(b)
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			info, _ := s.Bot(token)
			botID = info.ID
		}
		minCalls, err := intParam(r, "min", 0)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		timeout := 10 * time.Second
		if v := r.FormValue("timeout"); v != "" {
			if timeout, err = time.ParseDuration(v); err != nil {
				http.Error(w, fmt.Sprintf("bad timeout: %v", err), http.StatusBadRequest)
				return
			}
		}
		calls, err := s.controlCalls(r.Context(), method, botID, int(minCalls), timeout)
		if err != nil {
			// Still the calls so far: the caller sees what did happen.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusRequestTimeout)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": err.Error(), "calls": calls})
			return
		}
		writeControlJSON(w, calls)
	})
	mux.HandleFunc("GET /messages", func(w http.ResponseWriter, r *http.Request) {
		chat, err := intParam(r, "chat", 0)
		if err != nil || chat == 0 {
			http.Error(w, "chat (a chat id) is required", http.StatusBadRequest)
			return
		}
		msgs := s.Messages(chat)
		if msgs == nil {
			msgs = []models.Message{}
		}
		writeControlJSON(w, msgs)
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, r *http.Request) {
		f, n, err := failureParams(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.FailNext(r.FormValue("method"), n, f)
		writeControlJSON(w, map[string]any{"queued": n})
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		writeControlJSON(w, map[string]any{"reset": true})
	})
	return mux
}

func writeControlJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// checkToken is AddBot's rule, checked before AddBot so that nothing is
// reported to a test that is not there.
func checkToken(token string) error {
	idPart, _, ok := strings.Cut(token, ":")
	id, err := strconv.ParseInt(idPart, 10, 64)
	if !ok || err != nil || id <= 0 {
		return fmt.Errorf("bot token must look like \"123456:ABC...\"")
	}
	return nil
}

func intParam(r *http.Request, name string, def int64) (int64, error) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s must be an integer, got %q", name, v)
	}
	return n, nil
}

func (s *Server) botsJSON() []BotJSON {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []BotJSON{}
	for _, b := range s.bots {
		out = append(out, BotJSON{ID: b.info.ID, Username: b.info.Username, Token: b.info.Token})
	}
	return out
}

// controlBot finds a bot's token from its token or numeric id; "" means
// the only bot.
func (s *Server) controlBot(ref string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ref == "" {
		if len(s.bots) != 1 {
			return "", fmt.Errorf("%d bots are registered: name one with bot=", len(s.bots))
		}
		for token := range s.bots {
			return token, nil
		}
	}
	if _, ok := s.bots[ref]; ok {
		return ref, nil
	}
	for token, b := range s.bots {
		if strconv.FormatInt(b.info.ID, 10) == ref {
			return token, nil
		}
	}
	return "", fmt.Errorf("no bot %q is registered", ref)
}

// controlCalls returns the calls to method (all when "") of botID (all
// when 0), waiting up to timeout for at least minCalls of them.
func (s *Server) controlCalls(ctx context.Context, method string, botID int64, minCalls int, timeout time.Duration) ([]CallJSON, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		s.mu.Lock()
		var out []CallJSON
		for _, c := range s.calls {
			if (method == "" || strings.EqualFold(c.Method, method)) && (botID == 0 || c.BotID == botID) {
				out = append(out, CallJSON{
					BotID: c.BotID, Method: c.Method, Params: c.Params, Files: c.Files, Time: c.Time,
					Injected: c.Injected, HTTPStatus: c.HTTPStatus, OK: c.OK, ErrorCode: c.ErrorCode,
					Description: c.Description, Result: c.Result,
				})
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if out == nil {
			out = []CallJSON{}
		}
		if len(out) >= minCalls {
			return out, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return out, fmt.Errorf("waiting for %d calls, got %d: %w", minCalls, len(out), ctx.Err())
		case <-s.closed:
			return out, fmt.Errorf("server closed while waiting for %d calls, got %d", minCalls, len(out))
		}
	}
}

func failureParams(r *http.Request) (Failure, int, error) {
	if r.FormValue("method") == "" {
		return Failure{}, 0, fmt.Errorf("method is required (\"*\" for any)")
	}
	n, err := intParam(r, "n", 1)
	if err != nil || n < 1 {
		return Failure{}, 0, fmt.Errorf("n must be a positive integer")
	}
	retryAfter, err := intParam(r, "retry_after", 0)
	if err != nil {
		return Failure{}, 0, err
	}
	status, err := intParam(r, "status", 0)
	if err != nil {
		return Failure{}, 0, err
	}
	f := Failure{Kind: FailureKind(r.FormValue("kind")), RetryAfter: int(retryAfter), Status: int(status), Description: r.FormValue("description")}
	switch f.Kind {
	case FailTooManyRequests, FailServerError, FailForbidden, FailBadRequest, FailDropConnection:
	default:
		return Failure{}, 0, fmt.Errorf("unknown kind %q", f.Kind)
	}
	return f, int(n), nil
}
