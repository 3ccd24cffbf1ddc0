// Package r2 keeps ferry's per-file JSON index in Cloudflare R2 (or any S3
// server) in the seed prototype's format, shared by every deployment that
// points at the same bucket.
//
// Writes are race-free: an object is created with If-None-Match: * and a
// second bot's file_id is merged with compare-and-swap on the object's ETag
// (If-Match), retried on conflict. Nothing here reads, merges and writes
// blindly, so concurrent writers in any number of processes never lose each
// other's keys.
package r2

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// ErrNotFound is returned by Get when the bucket has no object for the id.
var ErrNotFound = errors.New("r2: object not found")

// ErrExists is returned by Create when an object for the id already exists
// (or another writer is creating it at this moment): merge into it instead.
var ErrExists = errors.New("r2: object already exists")

// errConflict is a lost compare-and-swap: someone wrote the object between
// our read and our conditional write.
var errConflict = errors.New("r2: concurrent write")

// DefaultFolder is the key prefix the seed's deployments use.
const DefaultFolder = "linkerz"

// Options configures a Store. Endpoint wins over AccountID; with only an
// AccountID the Cloudflare endpoint https://<AccountID>.r2.cloudflarestorage.com
// is used.
type Options struct {
	Endpoint        string // R2_ENDPOINT, e.g. https://<account>.r2.cloudflarestorage.com or a test server
	AccountID       string // R2_ACCOUNT_ID, used when Endpoint is empty
	Bucket          string // R2_BUCKET
	AccessKeyID     string // R2_ACCESS_KEY_ID
	SecretAccessKey string // R2_SECRET_ACCESS_KEY
	Folder          string // R2_FOLDER, default "linkerz"
	PublicURL       string // R2_PUBLIC_URL: public base of the bucket, for View links (optional)
	// HTTPClient overrides the SDK's HTTP client (tests, proxies). Optional.
	HTTPClient *http.Client
	// MaxAttempts is how many times the SDK tries one request on transport
	// errors and 5xx (default 3). Callers that must fail fast, such as the
	// dedupe check, also bound each call with a context deadline.
	MaxAttempts int
	// MaxMergeAttempts bounds the compare-and-swap loop in Merge (default 100;
	// every lost round means another writer succeeded, so 20 concurrent
	// writers need at most 20 rounds).
	MaxMergeAttempts int
}

// Configured reports whether enough is set to talk to a bucket; ferry runs
// without R2 when it is not.
func (o Options) Configured() bool {
	return (o.Endpoint != "" || o.AccountID != "") && o.Bucket != ""
}

// Store reads and writes file records in one bucket folder.
type Store struct {
	client        *s3.Client    // buckets and deletes
	obj           *objectClient // the records' GETs and conditional PUTs
	bucket        string
	folder        string
	publicURL     string
	mergeAttempts int
}

// New checks opts and builds a Store. It does not contact the server.
func New(opts Options) (*Store, error) {
	endpoint := opts.Endpoint
	if endpoint == "" && opts.AccountID != "" {
		endpoint = "https://" + opts.AccountID + ".r2.cloudflarestorage.com"
	}
	if endpoint == "" {
		return nil, errors.New("r2: R2_ENDPOINT or R2_ACCOUNT_ID is required")
	}
	base, err := url.Parse(endpoint)
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, fmt.Errorf("r2: endpoint %q is not an absolute URL", endpoint)
	}
	if opts.Bucket == "" {
		return nil, errors.New("r2: R2_BUCKET is required")
	}
	if opts.AccessKeyID == "" || opts.SecretAccessKey == "" {
		return nil, errors.New("r2: R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY are required")
	}
	folder := strings.Trim(opts.Folder, "/")
	if opts.Folder == "" {
		folder = DefaultFolder
	}
	key, secret := opts.AccessKeyID, opts.SecretAccessKey
	cfg := aws.Config{
		Region: "auto",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: key, SecretAccessKey: secret, Source: "ferry-r2"}, nil
		}),
		RetryMaxAttempts: opts.MaxAttempts,
	}
	hc := opts.HTTPClient
	if hc == nil {
		// Go keeps 2 idle connections per host; the index runs up to a few
		// dozen requests at once, and each one past the second would dial
		// (and TLS-handshake) a connection only to close it after.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 128, 64
		hc = &http.Client{Transport: tr, Timeout: time.Minute}
	}
	cfg.HTTPClient = hc
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
		// R2 and the S3 stand-ins do not all accept the SDK's default
		// CRC32 trailers; send checksums only where the API requires them.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	attempts := opts.MaxMergeAttempts
	if attempts <= 0 {
		attempts = 100
	}
	return &Store{
		client:        client,
		obj:           newObjectClient(hc, base, opts.Bucket, key, secret, opts.MaxAttempts),
		bucket:        opts.Bucket,
		folder:        folder,
		publicURL:     strings.TrimRight(opts.PublicURL, "/"),
		mergeAttempts: attempts,
	}, nil
}

// Key is the object key for a file: {folder}/{unique_id}.json.
func (s *Store) Key(uniqueID string) string {
	if s.folder == "" {
		return uniqueID + ".json"
	}
	return s.folder + "/" + uniqueID + ".json"
}

// Bucket is the bucket the store writes to.
func (s *Store) Bucket() string { return s.bucket }

// PublicURL is the public address of a file's JSON object under
// R2_PUBLIC_URL, or "" when no public URL is configured.
func (s *Store) PublicURL(uniqueID string) string {
	if s.publicURL == "" {
		return ""
	}
	return s.publicURL + "/" + s.Key(uniqueID)
}

// Get reads a file's record and the ETag to compare against when writing it
// back. A missing object is ErrNotFound.
func (s *Store) Get(ctx context.Context, uniqueID string) (Record, string, error) {
	if err := checkID(uniqueID); err != nil {
		return Record{}, "", err
	}
	body, etag, err := s.getObject(ctx, uniqueID)
	if err != nil {
		return Record{}, "", err
	}
	rec, err := UnmarshalRecord(body)
	if err != nil {
		return Record{}, "", fmt.Errorf("r2: %s: %w", s.Key(uniqueID), err)
	}
	return rec, etag, nil
}

// getObject reads an object's bytes and ETag; a missing one is ErrNotFound.
func (s *Store) getObject(ctx context.Context, uniqueID string) ([]byte, string, error) {
	key := s.Key(uniqueID)
	res, err := s.obj.do(ctx, http.MethodGet, key, nil, nil)
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("r2: get %s: %w", key, err)
	case res.status == http.StatusOK:
		return res.body, res.etag, nil
	}
	err = statusError(http.MethodGet, key, res)
	if isNotFound(err) {
		return nil, "", ErrNotFound
	}
	return nil, "", fmt.Errorf("r2: get %s: %w", key, err)
}

// Create writes a new record only if no object exists for its id
// (If-None-Match: *). ErrExists means someone else got there first.
func (s *Store) Create(ctx context.Context, rec Record) error {
	err := s.put(ctx, rec, http.Header{"If-None-Match": {"*"}})
	if errors.Is(err, errConflict) {
		return ErrExists
	}
	return err
}

// Merge adds rec's bot file ids (and any metadata the stored object lacks)
// to the stored object, creating it when there is none. Each round reads the
// object and writes it back only if its ETag is unchanged (If-Match); a lost
// round is retried with a fresh read, so a concurrent writer's keys are never
// overwritten. Keys already stored are kept (first writer wins). It returns
// the record as stored after the merge.
func (s *Store) Merge(ctx context.Context, rec Record) (Record, error) {
	if err := checkID(rec.UniqueID); err != nil {
		return Record{}, err
	}
	var lastErr error
	for attempt := 0; attempt < s.mergeAttempts; attempt++ {
		if attempt > 0 {
			// Jittered pause so the writers that lost this round do not
			// collide again in lockstep.
			d := time.Duration(rand.Int64N(int64(5*time.Millisecond)+int64(attempt)*int64(2*time.Millisecond))) + time.Millisecond
			select {
			case <-ctx.Done():
				return Record{}, fmt.Errorf("r2: merge %s: %w (last: %v)", rec.UniqueID, ctx.Err(), lastErr)
			case <-time.After(d):
			}
		}
		cur, etag, err := s.Get(ctx, rec.UniqueID)
		switch {
		case errors.Is(err, ErrNotFound):
			err = s.Create(ctx, rec)
			if err == nil {
				return rec, nil
			}
			if errors.Is(err, ErrExists) {
				lastErr = err
				continue
			}
			return Record{}, fmt.Errorf("r2: merge %s: %w", rec.UniqueID, err)
		case err != nil:
			return Record{}, fmt.Errorf("r2: merge %s: %w", rec.UniqueID, err)
		}
		if !mergeInto(&cur, rec) {
			return cur, nil // everything is there already: no write
		}
		if etag == "" {
			return Record{}, fmt.Errorf("r2: merge %s: server returned no ETag; cannot compare-and-swap", rec.UniqueID)
		}
		err = s.put(ctx, cur, http.Header{"If-Match": {etag}})
		if err == nil {
			return cur, nil
		}
		if !errors.Is(err, errConflict) {
			return Record{}, fmt.Errorf("r2: merge %s: %w", rec.UniqueID, err)
		}
		lastErr = err
	}
	return Record{}, fmt.Errorf("r2: merge %s: gave up after %d conflicting rounds: %w", rec.UniqueID, s.mergeAttempts, lastErr)
}

// Delete removes a file's object. Used by tests and by operators cleaning a
// bucket; the index never deletes.
func (s *Store) Delete(ctx context.Context, uniqueID string) error {
	if err := checkID(uniqueID); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.Key(uniqueID)),
	})
	if err != nil {
		return fmt.Errorf("r2: delete %s: %w", s.Key(uniqueID), err)
	}
	return nil
}

// GetRaw returns an object's exact bytes, for tests and debugging that must
// see what readers see.
func (s *Store) GetRaw(ctx context.Context, uniqueID string) ([]byte, error) {
	if err := checkID(uniqueID); err != nil {
		return nil, err
	}
	b, _, err := s.getObject(ctx, uniqueID)
	return b, err
}

// CreateBucket makes the store's bucket; for test servers and first-time
// setup. An already existing bucket owned by us is not an error.
func (s *Store) CreateBucket(ctx context.Context) error {
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) {
			return nil
		}
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode() == "BucketAlreadyOwnedByYou" {
			return nil
		}
		return fmt.Errorf("r2: create bucket %s: %w", s.bucket, err)
	}
	return nil
}

func (s *Store) put(ctx context.Context, rec Record, cond http.Header) error {
	if err := checkID(rec.UniqueID); err != nil {
		return err
	}
	body, err := rec.Marshal()
	if err != nil {
		return fmt.Errorf("r2: %w", err)
	}
	key := s.Key(rec.UniqueID)
	cond.Set("Content-Type", "application/json")
	res, err := s.obj.do(ctx, http.MethodPut, key, body, cond)
	switch {
	case err != nil:
		return fmt.Errorf("r2: put %s: %w", key, err)
	case res.status == http.StatusOK:
		return nil
	}
	err = statusError(http.MethodPut, key, res)
	if isPreconditionFailed(err) {
		return errConflict
	}
	return fmt.Errorf("r2: put %s: %w", key, err)
}

// checkID refuses ids that would escape the folder or make odd keys;
// Telegram's file_unique_id is URL-safe base64.
func checkID(id string) error {
	if id == "" {
		return errors.New("r2: empty unique id")
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("r2: unique id %q has characters outside URL-safe base64", id)
		}
	}
	return nil
}

func statusCode(err error) int {
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return true
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		case "NoSuchBucket":
			return false // a misconfigured bucket is an error, not a new file
		}
	}
	return statusCode(err) == http.StatusNotFound
}

// isPreconditionFailed covers 412 (the condition did not hold) and 409
// (S3/R2: a concurrent conditional write to the same key won the race);
// both mean "read again and retry".
func isPreconditionFailed(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "PreconditionFailed", "ConditionalRequestConflict":
			return true
		}
	}
	c := statusCode(err)
	return c == http.StatusPreconditionFailed || c == http.StatusConflict
}
