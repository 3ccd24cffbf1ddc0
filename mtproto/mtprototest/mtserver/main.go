// Command mtserver runs the mtprototest MTProto server as its own process,
// for benchmarks and for pointing a real ferry at it (MTPROTO_DC_ADDR,
// MTPROTO_PUBLIC_KEY). It prints one JSON line on stdout:
// {"addr":"127.0.0.1:PORT","key":"DIR/server_key.pem","control":"127.0.0.1:PORT"}.
//
//	go run ./mtproto/mtprototest/mtserver -addr 127.0.0.1:0 -dir DIR [-latency 50ms]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ferry-dev/ferry/mtproto/mtprototest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "MTProto listen address")
	control := flag.String("control", "127.0.0.1:0", "HTTP control listen address")
	dir := flag.String("dir", "", "directory for parts and files (required)")
	latency := flag.Duration("latency", 0, "latency added to every upload/getFile/sendMedia request")
	verbose := flag.Bool("v", false, "log to stderr")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "mtserver: -dir is required")
		os.Exit(2)
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := mtprototest.Start(ctx, mtprototest.Options{Dir: *dir, Addr: *addr, Latency: *latency, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "mtserver:", err)
		os.Exit(1)
	}
	ctl, err := srv.ListenControl(ctx, *control)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mtserver:", err)
		os.Exit(1)
	}
	line, _ := json.Marshal(map[string]string{"addr": srv.Addr(), "key": srv.KeyPath(), "control": ctl})
	fmt.Println(string(line))
	<-ctx.Done()
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
	}
}
