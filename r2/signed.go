package r2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/encoding/httpbinding"
)

// objectClient sends the requests the index makes for every file, a
// conditional PUT and a GET of one object, as plain HTTP requests signed
// with the SDK's SigV4 signer. Through the SDK's client each went through
// some forty middlewares: a PUT to a local server cost 365–395 µs of CPU
// and 43 KB in 520 allocations with the endpoint cache this package used
// to keep, 650–700 µs without it (BenchmarkPut/sdk), against 155–180 µs
// and 14 KB here (BenchmarkPut/store); it was the largest part of the
// index's R2 cost. The SDK client still does the rest (buckets, deletes).
type objectClient struct {
	http     *http.Client
	signer   *v4.Signer
	creds    aws.Credentials
	endpoint *url.URL
	bucket   string
	attempts int
}

// emptySHA256 is the payload hash of a request without a body.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// maxObject bounds what a GET reads: a record is a few hundred bytes.
const maxObject = 1 << 20

func newObjectClient(hc *http.Client, endpoint *url.URL, bucket, key, secret string, attempts int) *objectClient {
	if attempts <= 0 {
		attempts = 3
	}
	return &objectClient{
		http: hc,
		// S3 signs the path as sent, without escaping it a second time.
		signer:   v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }),
		creds:    aws.Credentials{AccessKeyID: key, SecretAccessKey: secret},
		endpoint: endpoint,
		bucket:   bucket,
		attempts: attempts,
	}
}

// response is what the server answered: status, ETag and body.
type response struct {
	status int
	etag   string
	body   []byte
}

// do sends one request for key (path style: /bucket/key) and returns the
// answer of any status; an error is a transport failure, or a 5xx or 429
// that persisted over every attempt. header is added to the request.
func (c *objectClient) do(ctx context.Context, method, key string, body []byte, header http.Header) (response, error) {
	payloadHash := emptySHA256
	if body != nil {
		sum := sha256.Sum256(body)
		payloadHash = hex.EncodeToString(sum[:])
	}
	path := "/" + c.bucket + "/" + key
	u := *c.endpoint
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawPath = strings.TrimRight(c.endpoint.EscapedPath(), "/") + httpbinding.EscapePath(path, false)
	var last error
	for attempt := 0; attempt < c.attempts; attempt++ {
		if attempt > 0 {
			// 50 ms, 100 ms, … with jitter, as the SDK's retryer would.
			d := time.Duration(50<<min(attempt-1, 5)) * time.Millisecond
			d = d/2 + time.Duration(rand.Int64N(int64(d)))
			select {
			case <-ctx.Done():
				return response{}, fmt.Errorf("%w (last: %v)", ctx.Err(), last)
			case <-time.After(d):
			}
		}
		res, err := c.once(ctx, method, &u, body, payloadHash, header)
		if err == nil && res.status < 500 && res.status != http.StatusTooManyRequests {
			return res, nil
		}
		if err == nil {
			err = statusError(method, key, res)
		}
		if ctx.Err() != nil {
			return response{}, err
		}
		last = err
	}
	return response{}, last
}

func (c *objectClient) once(ctx context.Context, method string, u *url.URL, body []byte, payloadHash string, header http.Header) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return response{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	if err := c.signer.SignHTTP(ctx, c.creds, req, payloadHash, "s3", "auto", time.Now().UTC()); err != nil {
		return response{}, fmt.Errorf("sign: %w", err)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxObject+1))
	if err != nil {
		return response{}, fmt.Errorf("read answer: %w", err)
	}
	if len(b) > maxObject {
		return response{}, fmt.Errorf("answer larger than %d bytes", maxObject)
	}
	return response{status: res.StatusCode, etag: res.Header.Get("ETag"), body: b}, nil
}

// apiError is an S3 error answer. It satisfies smithy.APIError and the
// HTTPStatusCode interface, as the SDK's errors do, so one set of checks
// (isNotFound, isPreconditionFailed) serves both clients.
type apiError struct {
	method, key string
	status      int
	code, msg   string
}

var _ smithy.APIError = (*apiError)(nil)

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s %s: HTTP %d", e.method, e.key, e.status)
	if e.code != "" {
		s += " " + e.code
	}
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

func (e *apiError) ErrorCode() string    { return e.code }
func (e *apiError) ErrorMessage() string { return e.msg }
func (e *apiError) HTTPStatusCode() int  { return e.status }

func (e *apiError) ErrorFault() smithy.ErrorFault {
	if e.status >= 500 {
		return smithy.FaultServer
	}
	return smithy.FaultClient
}

// statusError makes the error of a non-2xx answer from its XML body
// (<Error><Code>…</Code><Message>…</Message></Error>), when it has one.
func statusError(method, key string, res response) error {
	var body struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	_ = xml.Unmarshal(res.body, &body)
	return &apiError{method: method, key: key, status: res.status, code: body.Code, msg: body.Message}
}
