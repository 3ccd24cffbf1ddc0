package botapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
)

// maxBufferedBody is the largest request body bufferedBodies sends in one
// piece; a larger one (a file upload) streams as before.
const maxBufferedBody = 1 << 20

// bufferedBodies is the Bot API clients' HTTP client, with a fix for how
// go-telegram/bot sends requests: it writes the multipart form through an
// io.Pipe, so net/http sends it chunked, and every field, boundary and
// part header becomes a chunk flushed in a write syscall (and, over HTTPS,
// a TLS record) of its own: some twenty writes for one sendMessage. A small
// body read out first goes with a Content-Length, in one write with the
// headers.
type bufferedBodies struct{ next *http.Client }

// Do sends req, its body read ahead up to maxBufferedBody bytes.
func (c bufferedBodies) Do(req *http.Request) (*http.Response, error) {
	if req.Body == nil || req.Body == http.NoBody || req.ContentLength > 0 {
		return c.next.Do(req)
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(req.Body, maxBufferedBody+1))
	if err != nil {
		req.Body.Close()
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if n > maxBufferedBody {
		// Too large to hold: what was read goes first, the rest streams.
		rest := req.Body
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(&buf, rest), rest}
		return c.next.Do(req)
	}
	req.Body.Close()
	body := buf.Bytes()
	req.ContentLength = n
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	return c.next.Do(req)
}
