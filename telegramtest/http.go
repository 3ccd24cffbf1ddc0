package telegramtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// FailureKind names a kind of injected failure.
type FailureKind string

// The kinds of failure FailNext can inject.
const (
	// FailTooManyRequests answers 429 with parameters.retry_after.
	FailTooManyRequests FailureKind = "too_many_requests"
	// FailServerError answers 500, 502 or another 5xx status.
	FailServerError FailureKind = "server_error"
	// FailForbidden answers 403 (default "Forbidden: bot was blocked by the user").
	FailForbidden FailureKind = "forbidden"
	// FailBadRequest answers 400 with the given description.
	FailBadRequest FailureKind = "bad_request"
	// FailDropConnection closes the connection without an answer.
	FailDropConnection FailureKind = "drop_connection"
)

// Failure is a fault to inject with FailNext.
type Failure struct {
	Kind FailureKind
	// RetryAfter is the seconds in a 429 answer (default 1).
	RetryAfter int
	// Status is the HTTP status of a server error (default 502).
	Status int
	// Description replaces the default description text.
	Description string
}

// TooManyRequests is a 429 answer asking to retry after retryAfter seconds.
func TooManyRequests(retryAfter int) Failure {
	return Failure{Kind: FailTooManyRequests, RetryAfter: retryAfter}
}

// ServerError is a 5xx answer with status (500, 502, …).
func ServerError(status int) Failure { return Failure{Kind: FailServerError, Status: status} }

// BotBlocked is the 403 "Forbidden: bot was blocked by the user" answer.
func BotBlocked() Failure { return Failure{Kind: FailForbidden} }

// Forbidden is a 403 answer with a custom description such as
// "Forbidden: bot is not a member of the channel chat".
func Forbidden(description string) Failure {
	return Failure{Kind: FailForbidden, Description: description}
}

// BadRequest is a 400 answer with a custom description ("Bad Request: …").
func BadRequest(description string) Failure {
	return Failure{Kind: FailBadRequest, Description: description}
}

// DropConnection closes the connection without answering.
func DropConnection() Failure { return Failure{Kind: FailDropConnection} }

// FailNext makes the next n calls to method (case-insensitive; "*" for
// any method) fail with f, whichever bot makes them. Failures queue up:
// calling FailNext twice for a method injects the first batch, then the
// second. Injected failures are recorded as calls with Call.Injected set.
func (s *Server) FailNext(method string, n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(method)
	for range n {
		s.failures[key] = append(s.failures[key], f)
	}
}

func (s *Server) takeFailureLocked(method string) (Failure, bool) {
	for _, key := range []string{strings.ToLower(method), "*"} {
		if q := s.failures[key]; len(q) > 0 {
			f := q[0]
			s.failures[key] = q[1:]
			return f, true
		}
	}
	return Failure{}, false
}

// apiError is an error answer of the Bot API.
type apiError struct {
	code       int
	desc       string
	retryAfter int
}

func (e *apiError) Error() string { return e.desc }

func badRequest(format string, args ...any) *apiError {
	return &apiError{code: 400, desc: "Bad Request: " + fmt.Sprintf(format, args...)}
}

func forbidden(desc string) *apiError {
	return &apiError{code: 403, desc: "Forbidden: " + desc}
}

func tooMany(retryAfter int) *apiError {
	return &apiError{code: 429, desc: fmt.Sprintf("Too Many Requests: retry after %d", retryAfter), retryAfter: retryAfter}
}

// okResult is a successful answer, optionally with a description (setWebhook).
type okResult struct {
	result      any
	description string
}

type request struct {
	ctx    context.Context
	bot    *botState
	method string
	params map[string]string
	files  map[string]*upload
}

type upload struct {
	UploadedFile
	data []byte // kept when small enough to be downloaded again
}

func (r *request) has(name string) bool {
	_, ok := r.params[name]
	return ok
}

func (r *request) str(name string) string { return r.params[name] }

// int64Param parses an integer parameter; missing gives 0, ok=false.
func (r *request) int64Param(name string) (int64, bool, *apiError) {
	v, ok := r.params[name]
	if !ok || v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, true, badRequest("invalid %s specified", name)
	}
	return n, true, nil
}

func (r *request) boolParam(name string) bool {
	switch strings.ToLower(r.params[name]) {
	case "true", "1", "yes":
		return true
	}
	return false
}

// serveHTTP routes /bot<token>/<method> and /file/bot<token>/<path>.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/file/bot") {
		s.serveFile(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/bot")
	if !ok {
		writeJSON(w, 404, map[string]any{"ok": false, "error_code": 404, "description": "Not Found"})
		return
	}
	token, method, _ := strings.Cut(rest, "/")
	call := Call{Token: token, Method: method, Time: time.Now(), Params: map[string]string{}}
	if id, _, ok := strings.Cut(token, ":"); ok {
		call.BotID, _ = strconv.ParseInt(id, 10, 64)
	}

	params, files, perr := s.readParams(r)
	call.Params = params
	if len(files) > 0 {
		call.Files = map[string]UploadedFile{}
		for k, f := range files {
			call.Files[k] = f.UploadedFile
		}
	}

	s.mu.Lock()
	b, known := s.bots[token]
	s.mu.Unlock()
	if !known {
		s.finish(w, &call, nil, &apiError{code: 401, desc: "Unauthorized"})
		return
	}
	h, canonical := lookupMethod(method)
	if h == nil {
		s.finish(w, &call, nil, &apiError{code: 404, desc: "Not Found"})
		return
	}
	call.Method = canonical
	if perr != nil {
		s.finish(w, &call, nil, perr)
		return
	}

	if d := s.latencyFor(canonical); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		case <-s.closed:
		}
	}

	s.mu.Lock()
	f, inject := s.takeFailureLocked(canonical)
	s.mu.Unlock()
	if inject {
		call.Injected = f.Kind
		if f.Kind == FailDropConnection {
			s.record(call)
			hj, ok := w.(http.Hijacker)
			if !ok {
				panic(http.ErrAbortHandler)
			}
			conn, _, err := hj.Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		s.finish(w, &call, nil, failureError(f))
		return
	}

	req := &request{ctx: r.Context(), bot: b, method: canonical, params: params, files: files}
	var (
		res  any
		aerr *apiError
	)
	if h.blocking {
		res, aerr = h.fn(s, req)
	} else {
		s.mu.Lock()
		res, aerr = h.fn(s, req)
		if aerr == nil {
			s.notifyLocked()
		}
		s.mu.Unlock()
	}
	s.finish(w, &call, res, aerr)
}

func failureError(f Failure) *apiError {
	switch f.Kind {
	case FailTooManyRequests:
		ra := f.RetryAfter
		if ra <= 0 {
			ra = 1
		}
		e := tooMany(ra)
		if f.Description != "" {
			e.desc = f.Description
		}
		return e
	case FailServerError:
		st := f.Status
		if st < 500 || st > 599 {
			st = 502
		}
		desc := f.Description
		if desc == "" {
			desc = "Bad Gateway"
			if st == 500 {
				desc = "Internal Server Error"
			}
		}
		return &apiError{code: st, desc: desc}
	case FailForbidden:
		desc := f.Description
		if desc == "" {
			desc = "Forbidden: bot was blocked by the user"
		}
		return &apiError{code: 403, desc: desc}
	default:
		desc := f.Description
		if desc == "" {
			desc = "Bad Request: injected failure"
		}
		return &apiError{code: 400, desc: desc}
	}
}

// finish records the call and writes the answer.
func (s *Server) finish(w http.ResponseWriter, call *Call, res any, aerr *apiError) {
	var body map[string]any
	status := 200
	if aerr != nil {
		status = aerr.code
		body = map[string]any{"ok": false, "error_code": aerr.code, "description": aerr.desc}
		if aerr.retryAfter > 0 {
			body["parameters"] = map[string]any{"retry_after": aerr.retryAfter}
		}
		call.ErrorCode, call.Description = aerr.code, aerr.desc
	} else {
		body = map[string]any{"ok": true}
		if o, ok := res.(okResult); ok {
			res = o.result
			if o.description != "" {
				body["description"] = o.description
			}
		}
		raw, err := json.Marshal(res)
		if err != nil {
			status = 500
			body = map[string]any{"ok": false, "error_code": 500, "description": "Internal Server Error: telegramtest cannot encode result: " + err.Error()}
			call.ErrorCode, call.Description = 500, body["description"].(string)
		} else {
			body["result"] = json.RawMessage(raw)
			call.OK = true
			call.Result = raw
		}
	}
	call.HTTPStatus = status
	s.record(*call)
	writeJSON(w, status, body)
}

func (s *Server) record(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c)
	s.notifyLocked()
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	raw, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
	w.WriteHeader(status)
	_, _ = w.Write(raw)
}

// readParams collects parameters from the query string and the body
// (multipart/form-data, application/x-www-form-urlencoded or
// application/json), like the Bot API.
func (s *Server) readParams(r *http.Request) (map[string]string, map[string]*upload, *apiError) {
	params := map[string]string{}
	files := map[string]*upload{}
	for k, v := range r.URL.Query() {
		if len(v) > 0 {
			params[k] = v[0]
		}
	}
	if r.Body == nil || r.Method == http.MethodGet {
		return params, files, nil
	}
	ct := r.Header.Get("Content-Type")
	mt, mp, _ := mime.ParseMediaType(ct)
	switch mt {
	case "multipart/form-data":
		mr := multipart.NewReader(r.Body, mp["boundary"])
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return params, files, badRequest("can't parse multipart/form-data: %v", err)
			}
			name := part.FormName()
			if part.FileName() != "" {
				h := sha256.New()
				var keep bytes.Buffer
				lim := &limitedBuffer{buf: &keep, max: s.cfg.maxDownloadSize}
				n, err := io.Copy(io.MultiWriter(h, lim), io.LimitReader(part, s.cfg.maxUploadBytes+1))
				if err != nil {
					return params, files, badRequest("can't read file %q: %v", name, err)
				}
				if n > s.cfg.maxUploadBytes {
					_, _ = io.Copy(io.Discard, part)
					return params, files, &apiError{code: 413, desc: "Request Entity Too Large"}
				}
				u := &upload{UploadedFile: UploadedFile{Filename: part.FileName(), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}}
				if !lim.over {
					u.data = keep.Bytes()
				}
				files[name] = u
				continue
			}
			v, err := io.ReadAll(io.LimitReader(part, 1<<20))
			if err != nil {
				return params, files, badRequest("can't read field %q: %v", name, err)
			}
			params[name] = string(v)
		}
	case "application/x-www-form-urlencoded":
		raw, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		if err != nil {
			return params, files, badRequest("can't read request body: %v", err)
		}
		vals, err := url.ParseQuery(string(raw))
		if err != nil {
			return params, files, badRequest("can't parse application/x-www-form-urlencoded body")
		}
		for k, v := range vals {
			if len(v) > 0 {
				params[k] = v[0]
			}
		}
	case "application/json":
		raw, err := io.ReadAll(io.LimitReader(r.Body, 10<<20))
		if err != nil {
			return params, files, badRequest("can't read request body: %v", err)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			break
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return params, files, badRequest("can't parse JSON object")
		}
		for k, v := range obj {
			var str string
			if len(v) > 0 && v[0] == '"' && json.Unmarshal(v, &str) == nil {
				params[k] = str
				continue
			}
			if string(v) == "null" {
				continue
			}
			params[k] = string(v)
		}
	default:
		// Telegram ignores bodies of other types; only the query counts.
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 10<<20))
	}
	return params, files, nil
}

type limitedBuffer struct {
	buf  *bytes.Buffer
	max  int64
	over bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if !l.over {
		if int64(l.buf.Len()+len(p)) > l.max {
			l.over = true
			l.buf.Reset()
		} else {
			l.buf.Write(p)
		}
	}
	return len(p), nil
}

// serveFile serves GET /file/bot<token>/<file_path> for files whose bytes
// the server has (uploaded through it, or added with AddFile and content).
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, "/file/bot")
	token, path, _ := strings.Cut(rest, "/")
	s.mu.Lock()
	b, ok := s.bots[token]
	var rec *fileRecord
	if ok {
		for _, f := range s.files {
			if f.path == path && f.owner == b.info.ID {
				rec = f
				break
			}
		}
	}
	s.mu.Unlock()
	if !ok {
		writeJSON(w, 401, map[string]any{"ok": false, "error_code": 401, "description": "Unauthorized"})
		return
	}
	if rec == nil || rec.data == nil {
		writeJSON(w, 404, map[string]any{"ok": false, "error_code": 404, "description": "Not Found"})
		return
	}
	http.ServeContent(w, r, rec.name, time.Time{}, bytes.NewReader(rec.data))
}

func jsonUnmarshalStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}
