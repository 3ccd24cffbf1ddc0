package telegramtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

const (
	conflictWebhook = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
	conflictPoll    = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)

// getUpdates implements long polling over the bot's queue: offset
// confirms (drops) older updates, a negative offset keeps only the last
// -offset ones, limit is 1..100 (default 100), timeout waits for the
// first update. A newer getUpdates ends a waiting one with 409, and a set
// webhook makes it fail with 409, as in Telegram.
func (s *Server) getUpdates(r *request) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := r.bot
	if b.webhook.url != "" {
		return nil, &apiError{code: 409, desc: conflictWebhook}
	}
	offset, _, err := r.int64Param("offset")
	if err != nil {
		return nil, err
	}
	limit, hasLimit, err := r.int64Param("limit")
	if err != nil {
		return nil, err
	}
	if !hasLimit || limit > 100 {
		limit = 100
	}
	if limit < 1 {
		limit = 1
	}
	timeout, _, err := r.int64Param("timeout")
	if err != nil {
		return nil, err
	}
	if timeout < 0 {
		timeout = 0
	}
	allowed, err := allowedUpdatesParam(r)
	if err != nil {
		return nil, err
	}
	b.pollGen++
	gen := b.pollGen
	s.notifyLocked() // wake an older poll so that it sees the conflict

	if offset < 0 {
		if keep := int(-offset); len(b.updates) > keep {
			b.updates = b.updates[len(b.updates)-keep:]
		}
	} else if offset > 0 {
		b.updates = slices.DeleteFunc(b.updates, func(u queuedUpdate) bool { return u.id < offset })
	}
	if allowed != nil {
		b.updates = slices.DeleteFunc(b.updates, func(u queuedUpdate) bool { return !slices.Contains(allowed, u.kind) })
	}

	deadline := time.Now().Add(time.Duration(timeout) * time.Second)
	for {
		out := make([]json.RawMessage, 0, min(int(limit), len(b.updates)))
		for _, u := range b.updates {
			if len(out) >= int(limit) {
				break
			}
			out = append(out, u.raw)
		}
		if len(out) > 0 {
			return out, nil
		}
		if b.pollGen != gen {
			return nil, &apiError{code: 409, desc: conflictPoll}
		}
		if b.webhook.url != "" {
			return nil, &apiError{code: 409, desc: conflictWebhook}
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return out, nil
		}
		ch := s.changed
		s.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-ch:
		case <-timer.C:
		case <-r.ctx.Done():
		case <-s.closed:
		}
		timer.Stop()
		s.mu.Lock()
		select {
		case <-r.ctx.Done():
			return nil, &apiError{code: 400, desc: "Bad Request: request canceled by the client"}
		case <-s.closed:
			return []json.RawMessage{}, nil
		default:
		}
	}
}

// startDeliveryLocked starts delivering the bot's queued updates to its
// webhook; it stops when the webhook changes (gen) or the server closes.
func (s *Server) startDeliveryLocked(b *botState, gen int64) {
	select {
	case <-s.closed:
		return
	default:
	}
	s.hookWG.Add(1)
	go func() {
		defer s.hookWG.Done()
		s.deliver(b, gen)
	}()
}

func (s *Server) deliver(b *botState, gen int64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		s.mu.Lock()
		if b.hookGen != gen {
			s.mu.Unlock()
			return
		}
		hook := b.webhook
		var next *queuedUpdate
		for i := range b.updates {
			if hook.allowedUpdates == nil || slices.Contains(hook.allowedUpdates, b.updates[i].kind) {
				u := b.updates[i]
				next = &u
				break
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if next == nil {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return
			}
		}
		errMsg := s.post(ctx, hook, next.raw)
		s.mu.Lock()
		if b.hookGen != gen {
			s.mu.Unlock()
			return
		}
		if errMsg == "" {
			b.updates = slices.DeleteFunc(b.updates, func(u queuedUpdate) bool { return u.id == next.id })
			s.notifyLocked()
			s.mu.Unlock()
			continue
		}
		b.webhook.lastErrorDate = int(time.Now().Unix())
		b.webhook.lastErrorMsg = errMsg
		s.notifyLocked()
		s.mu.Unlock()
		select {
		case <-time.After(s.cfg.webhookRetry):
		case <-ctx.Done():
			return
		}
	}
}

// post sends one update to the webhook; it returns "" on a 2xx answer or
// the last_error_message Telegram would show.
func (s *Server) post(ctx context.Context, hook webhookState, body []byte) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.url, bytes.NewReader(body))
	if err != nil {
		return "Failed to create request"
	}
	req.Header.Set("Content-Type", "application/json")
	if hook.secret != "" {
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", hook.secret)
	}
	resp, err := s.cfg.webhookClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "Connection closed"
		}
		return "Connection refused"
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return ""
	}
	return fmt.Sprintf("Wrong response from the webhook: %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
}
