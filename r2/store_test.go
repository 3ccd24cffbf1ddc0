package r2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ferry-dev/ferry/r2"
	"github.com/ferry-dev/ferry/r2/r2test"
)

// The seed's example object, byte for byte as ferry writes it.
func TestRecordMarshalExactSeedFormat(t *testing.T) {
	rec := r2.Record{
		UniqueID: "AgAD-A0AAij8UVE",
		BotFileIDs: r2.BotFileIDs{
			r2.SlotKey(2):  "BQACAgQ-two",
			r2.SlotKey(11): "BQACAgQ-eleven",
			r2.SlotKey(1):  "BQACAgQ-one",
			r2.SlotKey(10): "BQACAgQ-ten",
		},
		Caption:           "movie <1080p> & more.mkv",
		FileSizeBytes:     1774606367,
		FileType:          "document",
		OriginalMessageID: 6402,
		SourceChannelID:   -1001234567890,
		FileName:          "movie.mkv",
		MimeType:          "video/x-matroska",
	}
	got, err := rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"unique_id":"AgAD-A0AAij8UVE","bot_file_ids":{"b_1_file_id":"BQACAgQ-one","b_2_file_id":"BQACAgQ-two","b_10_file_id":"BQACAgQ-ten","b_11_file_id":"BQACAgQ-eleven"},"caption":"movie <1080p> & more.mkv","file_size_bytes":1774606367,"file_type":"document","original_message_id":6402,"source_channel_id":-1001234567890,"file_name":"movie.mkv","mime_type":"video/x-matroska"}`
	if string(got) != want {
		t.Fatalf("record JSON\n got %s\nwant %s", got, want)
	}

	rec.FileType, rec.Duration, rec.Width, rec.Height = "video", 5400, 1920, 1080
	rec.BotFileIDs = nil
	got, err = rec.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want = `{"unique_id":"AgAD-A0AAij8UVE","bot_file_ids":{},"caption":"movie <1080p> & more.mkv","file_size_bytes":1774606367,"file_type":"video","original_message_id":6402,"source_channel_id":-1001234567890,"file_name":"movie.mkv","mime_type":"video/x-matroska","duration":5400,"width":1920,"height":1080}`
	if string(got) != want {
		t.Fatalf("video record JSON\n got %s\nwant %s", got, want)
	}
	back, err := r2.UnmarshalRecord(got)
	if err != nil {
		t.Fatal(err)
	}
	if back.Width != 1920 || back.Duration != 5400 || back.SourceChannelID != -1001234567890 {
		t.Fatalf("round trip lost fields: %+v", back)
	}
}

func TestSlotKey(t *testing.T) {
	for _, n := range []int{1, 2, 11, 40} {
		s, ok := r2.ParseSlotKey(r2.SlotKey(n))
		if !ok || s != n {
			t.Fatalf("ParseSlotKey(SlotKey(%d)) = %d, %v", n, s, ok)
		}
	}
	for _, k := range []string{"b_0_file_id", "b_x_file_id", "file_id", "b_1_file"} {
		if _, ok := r2.ParseSlotKey(k); ok {
			t.Fatalf("ParseSlotKey(%q) accepted", k)
		}
	}
}

func TestNewValidatesAndKeepsSecretsOut(t *testing.T) {
	_, err := r2.New(r2.Options{Bucket: "b", AccessKeyID: "k", SecretAccessKey: "TOPSECRET"})
	if err == nil || strings.Contains(err.Error(), "TOPSECRET") {
		t.Fatalf("missing endpoint: err = %v", err)
	}
	_, err = r2.New(r2.Options{AccountID: "acc", AccessKeyID: "k", SecretAccessKey: "TOPSECRET"})
	if err == nil || strings.Contains(err.Error(), "TOPSECRET") {
		t.Fatalf("missing bucket: err = %v", err)
	}
	s, err := r2.New(r2.Options{AccountID: "acc", Bucket: "b", AccessKeyID: "k", SecretAccessKey: "s", PublicURL: "https://pub.example/"})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Key("AgAD"); got != "linkerz/AgAD.json" {
		t.Fatalf("Key = %q", got)
	}
	if got := s.PublicURL("AgAD"); got != "https://pub.example/linkerz/AgAD.json" {
		t.Fatalf("PublicURL = %q", got)
	}
	s, err = r2.New(r2.Options{Endpoint: "http://127.0.0.1:1", Bucket: "b", AccessKeyID: "k", SecretAccessKey: "TOPSECRET", Folder: "custom/", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Key("x"); got != "custom/x.json" {
		t.Fatalf("Key = %q", got)
	}
	if s.PublicURL("x") != "" {
		t.Fatal("PublicURL without R2_PUBLIC_URL must be empty")
	}
	_, _, err = s.Get(context.Background(), "x")
	if err == nil || errors.Is(err, r2.ErrNotFound) {
		t.Fatalf("unreachable server: err = %v, want a transport error", err)
	}
	if strings.Contains(err.Error(), "TOPSECRET") {
		t.Fatalf("secret in error: %v", err)
	}
	if _, _, err := s.Get(context.Background(), "../etc"); err == nil {
		t.Fatal("path-escaping id accepted")
	}
}

func testCreateGetMerge(t *testing.T, opts r2.Options) {
	ctx := context.Background()
	s, err := r2.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, "AgADnew"); !errors.Is(err, r2.ErrNotFound) {
		t.Fatalf("Get missing: %v, want ErrNotFound", err)
	}
	rec := r2.Record{UniqueID: "AgADnew", BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "fid-1"}, FileName: "a.mkv", FileType: "document", FileSizeBytes: 10}
	if err := s.Create(ctx, rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	other := rec
	other.BotFileIDs = r2.BotFileIDs{r2.SlotKey(1): "someone-else"}
	if err := s.Create(ctx, other); !errors.Is(err, r2.ErrExists) {
		t.Fatalf("second Create: %v, want ErrExists", err)
	}
	got, etag, err := s.Get(ctx, "AgADnew")
	if err != nil {
		t.Fatal(err)
	}
	if etag == "" || got.BotFileIDs[r2.SlotKey(1)] != "fid-1" || got.FileName != "a.mkv" {
		t.Fatalf("Get = %+v etag %q", got, etag)
	}
	// Merge adds b_2, keeps b_1 as first written.
	merged, err := s.Merge(ctx, r2.Record{UniqueID: "AgADnew", BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "other-b1", r2.SlotKey(2): "fid-2"}})
	if err != nil {
		t.Fatalf("Merge: %v", err)
	}
	raw, err := s.GetRaw(ctx, "AgADnew")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"unique_id":"AgADnew","bot_file_ids":{"b_1_file_id":"fid-1","b_2_file_id":"fid-2"},"caption":"","file_size_bytes":10,"file_type":"document","original_message_id":0,"source_channel_id":0,"file_name":"a.mkv","mime_type":""}`
	if string(raw) != want || len(merged.BotFileIDs) != 2 {
		t.Fatalf("after merge\n got %s\nwant %s", raw, want)
	}
	_, etag2, _ := s.Get(ctx, "AgADnew")
	// A merge that adds nothing does not write.
	if _, err := s.Merge(ctx, r2.Record{UniqueID: "AgADnew", BotFileIDs: r2.BotFileIDs{r2.SlotKey(2): "fid-2"}}); err != nil {
		t.Fatal(err)
	}
	_, etag3, _ := s.Get(ctx, "AgADnew")
	if etag2 != etag3 {
		t.Fatalf("no-op merge rewrote the object: %s -> %s", etag2, etag3)
	}
	// Merge creates when absent.
	if _, err := s.Merge(ctx, r2.Record{UniqueID: "AgADabsent", BotFileIDs: r2.BotFileIDs{r2.SlotKey(3): "fid-3"}}); err != nil {
		t.Fatal(err)
	}
	got, _, err = s.Get(ctx, "AgADabsent")
	if err != nil || got.BotFileIDs[r2.SlotKey(3)] != "fid-3" {
		t.Fatalf("Merge into absent: %+v %v", got, err)
	}
}

// testConcurrentWriters has 20 writers merge their own key into one object
// at once; every key must survive.
func testConcurrentWriters(t *testing.T, opts r2.Options, writers int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := r2.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	const id = "AgADcontended"
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := 1; i <= writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			rec := r2.Record{UniqueID: id, FileName: "x.bin", FileType: "document", BotFileIDs: r2.BotFileIDs{r2.SlotKey(i): fmt.Sprintf("fid-%d", i)}}
			// Same path the index takes: create, and merge when it exists.
			err := s.Create(ctx, rec)
			if errors.Is(err, r2.ErrExists) {
				_, err = s.Merge(ctx, rec)
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
	got, _, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.BotFileIDs) != writers {
		t.Fatalf("object has %d file ids, want %d: %v", len(got.BotFileIDs), writers, got.BotFileIDs)
	}
	for i := 1; i <= writers; i++ {
		if got.BotFileIDs[r2.SlotKey(i)] != fmt.Sprintf("fid-%d", i) {
			t.Fatalf("lost %s: %v", r2.SlotKey(i), got.BotFileIDs)
		}
	}
}

func TestStoreFake(t *testing.T) {
	t.Run("CreateGetMerge", func(t *testing.T) { testCreateGetMerge(t, r2test.Fake(t)) })
	t.Run("20ConcurrentWriters", func(t *testing.T) { testConcurrentWriters(t, r2test.Fake(t), 20) })
}

func TestStoreVersity(t *testing.T) {
	srv := r2test.StartVersity(t)
	t.Run("CreateGetMerge", func(t *testing.T) { testCreateGetMerge(t, srv.Options()) })
	t.Run("20ConcurrentWriters", func(t *testing.T) { testConcurrentWriters(t, srv.Options(), 20) })
	// versitygw checks every SigV4 signature: a folder that needs escaping
	// must be signed as sent, and a wrong secret refused.
	t.Run("EscapedFolder", func(t *testing.T) {
		o := srv.Options()
		o.Folder = "my files/ü+=&(1)"
		testCreateGetMerge(t, o)
	})
	t.Run("WrongSecret", func(t *testing.T) {
		o := srv.Options()
		o.SecretAccessKey = "WRONG-SECRET-VALUE"
		s, err := r2.New(o)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Create(context.Background(), r2.Record{UniqueID: "AgADsigned", BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "f"}})
		if err == nil || errors.Is(err, r2.ErrExists) || !strings.Contains(err.Error(), "403") || strings.Contains(err.Error(), "WRONG-SECRET") {
			t.Fatalf("Create with a wrong secret: %v, want a 403 without the secret", err)
		}
		if _, _, err := s.Get(context.Background(), "AgADsigned"); err == nil || errors.Is(err, r2.ErrNotFound) {
			t.Fatalf("Get with a wrong secret: %v, want a 403", err)
		}
	})
	t.Run("StopStart", func(t *testing.T) {
		ctx := context.Background()
		s, err := r2.New(srv.Options())
		if err != nil {
			t.Fatal(err)
		}
		srv.Stop()
		err = s.Create(ctx, r2.Record{UniqueID: "AgADoutage", BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "f"}})
		if err == nil || errors.Is(err, r2.ErrExists) {
			t.Fatalf("Create with server down: %v, want a transport error", err)
		}
		if _, _, err := s.Get(ctx, "AgADoutage"); err == nil || errors.Is(err, r2.ErrNotFound) {
			t.Fatalf("Get with server down: %v, want a transport error (not ErrNotFound)", err)
		}
		srv.Start()
		if err := s.Create(ctx, r2.Record{UniqueID: "AgADoutage", BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "f"}}); err != nil {
			t.Fatalf("Create after restart: %v", err)
		}
		// Objects written before the outage are still there.
		if _, _, err := s.Get(ctx, "AgADcontended"); err != nil {
			t.Fatalf("object from before the restart: %v", err)
		}
	})
}

func TestOptionsFromEnv(t *testing.T) {
	env := map[string]string{"R2_ACCOUNT_ID": "acc", "R2_BUCKET": "b", "R2_ACCESS_KEY_ID": "k",
		"R2_SECRET_ACCESS_KEY": "s", "R2_PUBLIC_URL": "https://pub.example"}
	o := r2.OptionsFromEnv(func(k string) string { return env[k] })
	if !o.Configured() || o.AccountID != "acc" || o.Bucket != "b" || o.AccessKeyID != "k" || o.SecretAccessKey != "s" || o.Folder != "" || o.PublicURL != "https://pub.example" {
		t.Fatalf("options = %+v", o)
	}
	s, err := r2.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if s.Key("x") != "linkerz/x.json" {
		t.Fatalf("default folder: %s", s.Key("x"))
	}
	if r2.OptionsFromEnv(func(string) string { return "" }).Configured() {
		t.Fatal("empty env configured")
	}
}

// A 5xx or 429 answer is retried up to MaxAttempts; a 4xx is not.
func TestServerErrorsAreRetried(t *testing.T) {
	var calls atomic.Int32
	failures := int32(2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch {
		case r.URL.Path == "/b/linkerz/AgADdenied.json":
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`)
		case n <= failures:
			w.WriteHeader([]int{http.StatusServiceUnavailable, http.StatusTooManyRequests}[n%2])
		default:
			w.Header().Set("ETag", `"e1"`)
		}
	}))
	defer srv.Close()
	s, err := r2.New(r2.Options{Endpoint: srv.URL, Bucket: "b", AccessKeyID: "k", SecretAccessKey: "s", MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Create(ctx, r2.Record{UniqueID: "AgADretry", BotFileIDs: r2.BotFileIDs{}}); err != nil || calls.Load() != 3 {
		t.Fatalf("Create after a 503 and a 429: %v, %d calls", err, calls.Load())
	}
	calls.Store(0)
	failures = 10
	if err := s.Create(ctx, r2.Record{UniqueID: "AgADretry", BotFileIDs: r2.BotFileIDs{}}); err == nil || calls.Load() != 3 {
		t.Fatalf("Create while the server keeps failing: %v, %d calls", err, calls.Load())
	}
	calls.Store(0)
	err = s.Create(ctx, r2.Record{UniqueID: "AgADdenied", BotFileIDs: r2.BotFileIDs{}})
	if err == nil || !strings.Contains(err.Error(), "AccessDenied: Access Denied") || calls.Load() != 1 {
		t.Fatalf("Create refused: %v, %d calls; want AccessDenied, not retried", err, calls.Load())
	}
}

// BenchmarkPut: one conditional PUT of a record through the Store (plain
// signed requests) against the same PUT through the SDK's client, to a
// local server; cpu_us/op is the process's CPU per PUT, the server's
// included.
func BenchmarkPut(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("ETag", `"e1"`)
	}))
	defer srv.Close()
	rec := r2.Record{UniqueID: "AgADbench000001", BotFileIDs: r2.BotFileIDs{r2.SlotKey(1): "BQACAgQAAxkBAAIBXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"}, FileName: "x.mkv"}
	body, _ := rec.Marshal()
	b.Run("store", func(b *testing.B) {
		s, _ := r2.New(r2.Options{Endpoint: srv.URL, Bucket: "bench", AccessKeyID: "k", SecretAccessKey: "s"})
		defer cpuPerOp(b)()
		for b.Loop() {
			if err := s.Create(context.Background(), rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sdk", func(b *testing.B) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		c := s3.New(s3.Options{Region: "auto", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true, HTTPClient: &http.Client{Transport: tr},
			Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
				return aws.Credentials{AccessKeyID: "k", SecretAccessKey: "s"}, nil
			}),
			RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
			ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired})
		defer cpuPerOp(b)()
		for b.Loop() {
			if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("bench"), Key: aws.String("linkerz/AgADbench000001.json"),
				Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("application/json"),
				IfNoneMatch: aws.String("*")}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// cpuPerOp reports the process's CPU time per iteration when called.
func cpuPerOp(b *testing.B) func() {
	b.ReportAllocs()
	var start syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &start)
	return func() {
		var end syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &end)
		used := end.Utime.Nano() + end.Stime.Nano() - start.Utime.Nano() - start.Stime.Nano()
		b.ReportMetric(float64(used)/1e3/float64(b.N), "cpu_us/op")
	}
}
