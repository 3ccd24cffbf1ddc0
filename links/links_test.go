package links_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/links"
)

func parse(t *testing.T, raw string) (path string, q url.Values) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path, u.Query()
}

func TestSignVerify(t *testing.T) {
	s := links.New("a secret")
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(24 * time.Hour)
	path, q := parse(t, s.DownloadURL("https://ferry.example/", "AgAD-A0AAij8UVE", "my movie.mkv", exp, links.Attachment))
	if path != "/dl/AgAD-A0AAij8UVE/my movie.mkv" || q.Get("d") != "attachment" {
		t.Fatalf("url path %q query %v", path, q)
	}
	if err := s.Verify("AgAD-A0AAij8UVE", q.Get("exp"), q.Get("sig"), links.DispositionOf(q), now); err != nil {
		t.Fatalf("good link refused: %v", err)
	}
	cases := []struct {
		name         string
		id, exp, sig string
		d            links.Disposition
		now          time.Time
		want         error
	}{
		{"another file", "AgAD-B0AAij8UVE", q.Get("exp"), q.Get("sig"), links.Attachment, now, links.ErrBadSignature},
		{"other disposition", "AgAD-A0AAij8UVE", q.Get("exp"), q.Get("sig"), links.Inline, now, links.ErrBadSignature},
		{"page from a download", "AgAD-A0AAij8UVE", q.Get("exp"), q.Get("sig"), links.Page, now, links.ErrBadSignature},
		{"longer expiry", "AgAD-A0AAij8UVE", "1900000000", q.Get("sig"), links.Attachment, now, links.ErrBadSignature},
		{"tampered sig", "AgAD-A0AAij8UVE", q.Get("exp"), flip(q.Get("sig")), links.Attachment, now, links.ErrBadSignature},
		{"truncated sig", "AgAD-A0AAij8UVE", q.Get("exp"), q.Get("sig")[:20], links.Attachment, now, links.ErrBadSignature},
		{"no sig", "AgAD-A0AAij8UVE", q.Get("exp"), "", links.Attachment, now, links.ErrBadSignature},
		{"junk exp", "AgAD-A0AAij8UVE", "soon", q.Get("sig"), links.Attachment, now, links.ErrBadSignature},
		{"expired", "AgAD-A0AAij8UVE", q.Get("exp"), q.Get("sig"), links.Attachment, exp, links.ErrExpired},
	}
	for _, c := range cases {
		if err := s.Verify(c.id, c.exp, c.sig, c.d, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// Another secret signs differently.
	if err := links.New("other secret").Verify("AgAD-A0AAij8UVE", q.Get("exp"), q.Get("sig"), links.Attachment, now); !errors.Is(err, links.ErrBadSignature) {
		t.Fatalf("other secret: %v", err)
	}
	// Page links.
	_, pq := parse(t, s.PageURL("https://ferry.example", "AgAD-A0AAij8UVE", exp))
	if err := s.Verify("AgAD-A0AAij8UVE", pq.Get("exp"), pq.Get("sig"), links.Page, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify("AgAD-A0AAij8UVE", pq.Get("exp"), pq.Get("sig"), links.Inline, now); !errors.Is(err, links.ErrBadSignature) {
		t.Fatalf("page signature used as a stream: %v", err)
	}
	if links.New("") != nil {
		t.Fatal("empty secret must turn links off")
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestNameEscaped(t *testing.T) {
	s := links.New("k")
	u := s.DownloadURL("http://h", "id_1", "a/b?c#d.mp4", time.Unix(2_000_000_000, 0), links.Inline)
	if !strings.HasPrefix(u, "http://h/dl/id_1/a%2Fb%3Fc%23d.mp4?exp=2000000000&sig=") {
		t.Fatal(u)
	}
}
