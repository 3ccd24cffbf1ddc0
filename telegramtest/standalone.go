package telegramtest

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
)

// reporter is what a Server needs of a testing.TB: somewhere to report
// misuse. NewServer passes the test; Serve a logger.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
}

// logReporter reports misuse of a Server that runs outside a test.
type logReporter struct{ logger *slog.Logger }

func (logReporter) Helper() {}

func (r logReporter) Errorf(format string, args ...any) {
	r.logger.Error(fmt.Sprintf(format, args...))
}

func (r logReporter) Logf(format string, args ...any) {
	r.logger.Info(fmt.Sprintf(format, args...))
}

// Fatalf panics: there is no test to stop. Callers outside tests check
// their input first (see ControlHandler), so this means a bug.
func (r logReporter) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.logger.Error(msg)
	panic(msg)
}

// Serve starts a Bot API stand-in outside a test, on l: for a process of
// its own such as telegramtest/cmd/fakebot, which a real ferry talks to
// with BOT_API_URL. It serves the Bot API and, under /fakebot/, the
// control endpoints of ControlHandler (inject updates, read recorded
// calls). Misuse that NewServer would report to its test goes to logger
// (nil: slog.Default()). Close stops it and closes l.
func Serve(l net.Listener, logger *slog.Logger, opts ...Option) *Server {
	if logger == nil {
		logger = slog.Default()
	}
	s := newServer(logReporter{logger: logger}, opts...)
	control := http.StripPrefix("/fakebot", s.ControlHandler())
	s.hs = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fakebot" || strings.HasPrefix(r.URL.Path, "/fakebot/") {
			control.ServeHTTP(w, r)
			return
		}
		s.serveHTTP(w, r)
	}))
	s.hs.Listener.Close() //nolint:errcheck // the default listener is replaced by l
	s.hs.Listener = l
	s.hs.Start()
	return s
}
