package mtprototest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Stats is the JSON the control endpoint serves.
type Stats struct {
	PartRequests int64       `json:"part_requests"`
	PartBytes    int64       `json:"part_bytes"`
	Logins       int         `json:"logins"`
	Posts        []PostStats `json:"posts"`
	Files        []FileStats `json:"files"`
}

// PostStats is a Post without its server-side details.
type PostStats struct {
	MessageID int    `json:"message_id"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	Name      string `json:"name"`
}

// ControlHandler exposes the server to another process: GET /stats,
// POST /latency?d=50ms, POST /faults (JSON []Fault), POST /clear-faults,
// POST /forget (drop stored parts and files, to bound disk use in
// benchmarks).
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		st := Stats{PartRequests: s.PartRequests(), PartBytes: s.PartBytes(), Logins: s.Logins(), Files: s.Files()}
		for _, p := range s.Posts() {
			st.Posts = append(st.Posts, PostStats{MessageID: p.MessageID, Size: p.Size, SHA256: p.SHA256, Name: p.Name})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("POST /latency", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.SetLatency(d)
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var f []Fault
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.InjectFaults(f...)
	})
	mux.HandleFunc("POST /clear-faults", func(w http.ResponseWriter, r *http.Request) { s.ClearFaults() })
	mux.HandleFunc("POST /forget", func(w http.ResponseWriter, r *http.Request) {
		s.ForgetParts()
		s.mu.Lock()
		for _, p := range s.posts {
			_ = os.Remove(p.Path)
		}
		s.mu.Unlock()
	})
	return mux
}

// Remote is a server running as its own process (./mtserver), driven over
// its control endpoint. Benchmarks use it so the server's CPU is not
// counted as the client's.
type Remote struct {
	Addr    string `json:"addr"`
	KeyFile string `json:"key"`
	Control string `json:"control"`
	cmd     *exec.Cmd
}

// StartRemote builds and starts ./mtserver with data under dir. The module
// must be buildable from the working directory (go test runs in the
// package directory, inside the module).
func StartRemote(ctx context.Context, dir string, latency time.Duration) (*Remote, error) {
	bin := filepath.Join(dir, "mtserver")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/ferry-dev/ferry/mtproto/mtprototest/mtserver")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build mtserver: %w: %s", err, out)
	}
	data := filepath.Join(dir, "data")
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-dir", data, "-latency", latency.String())
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("mtserver stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mtserver: %w", err)
	}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("read mtserver address: %w", err)
	}
	r := &Remote{cmd: cmd}
	if err := json.Unmarshal(line, r); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("mtserver said %q: %w", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return r, nil
}

// KeyPEM reads the server's public key.
func (r *Remote) KeyPEM() ([]byte, error) { return os.ReadFile(r.KeyFile) }

func (r *Remote) post(ctx context.Context, path string, body io.Reader) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.Control+path, body)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("mtserver control %s: %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(res.Body)
		return fmt.Errorf("mtserver control %s: %s: %s", path, res.Status, msg)
	}
	return nil
}

// SetLatency sets the per-request latency.
func (r *Remote) SetLatency(ctx context.Context, d time.Duration) error {
	return r.post(ctx, "/latency?d="+d.String(), nil)
}

// Forget drops stored parts and files.
func (r *Remote) Forget(ctx context.Context) error { return r.post(ctx, "/forget", nil) }

// Stats reads the counters.
func (r *Remote) Stats(ctx context.Context) (*Stats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Control+"/stats", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mtserver stats: %w", err)
	}
	defer res.Body.Close()
	var st Stats
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("mtserver stats: %w", err)
	}
	return &st, nil
}

// Close stops the process.
func (r *Remote) Close() error {
	if r.cmd == nil || r.cmd.Process == nil {
		return nil
	}
	_ = r.cmd.Process.Signal(os.Interrupt)
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
	return nil
}

// ListenControl serves ControlHandler on addr until ctx ends and returns
// the bound address.
func (s *Server) ListenControl(ctx context.Context, addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("control listen: %w", err)
	}
	srv := &http.Server{Handler: s.ControlHandler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("control server", "err", err)
		}
	}()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	return l.Addr().String(), nil
}
