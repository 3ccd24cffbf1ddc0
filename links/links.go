// Package links signs and checks ferry's file links: /dl/{unique_id}/{name}
// streams and /f/{unique_id} pages carry ?exp=…&sig=… where sig is an
// HMAC-SHA256 under LINK_SECRET over everything that decides what is
// served (the unique id, the expiry and the disposition). Nothing public
// (a file id, its name) forges a signature, and every link expires.
package links

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Disposition is what a signature allows: a stream shown in the browser, a
// download, or the file page.
type Disposition string

const (
	Inline     Disposition = "inline"
	Attachment Disposition = "attachment"
	Page       Disposition = "page"
)

// Errors of Verify; both mean 403.
var (
	ErrBadSignature = errors.New("links: bad signature")
	ErrExpired      = errors.New("links: link expired")
)

// Signer signs and checks links. A nil *Signer means links are off.
type Signer struct {
	key []byte
}

// New derives the signing key from LINK_SECRET; an empty secret gives nil
// (links off).
func New(secret string) *Signer {
	if secret == "" {
		return nil
	}
	// A key of its own: LINK_SECRET could be reused elsewhere (it should
	// not), and the MAC of one purpose must never verify as another.
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("ferry file links v1"))
	return &Signer{key: m.Sum(nil)}
}

func (s *Signer) mac(uniqueID string, exp int64, d Disposition) []byte {
	m := hmac.New(sha256.New, s.key)
	// Length-prefixed fields: no two different triples share an input.
	fmt.Fprintf(m, "%d:%s|%d|%d:%s", len(uniqueID), uniqueID, exp, len(d), d)
	return m.Sum(nil)
}

// Sign returns the signature of (uniqueID, exp, d), URL-safe base64.
func (s *Signer) Sign(uniqueID string, exp time.Time, d Disposition) string {
	return base64.RawURLEncoding.EncodeToString(s.mac(uniqueID, exp.Unix(), d))
}

// Verify checks a link's exp and sig query values at now: ErrBadSignature
// for a malformed or wrong signature (checked first, in constant time, so
// an expired forgery says nothing about expiry), ErrExpired past exp.
func (s *Signer) Verify(uniqueID, exp, sig string, d Disposition, now time.Time) error {
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return ErrBadSignature
	}
	if !hmac.Equal(got, s.mac(uniqueID, e, d)) {
		return ErrBadSignature
	}
	if now.Unix() >= e {
		return ErrExpired
	}
	return nil
}

// Query is the signed query string of a link.
func (s *Signer) Query(uniqueID string, exp time.Time, d Disposition) url.Values {
	q := url.Values{"exp": {strconv.FormatInt(exp.Unix(), 10)}, "sig": {s.Sign(uniqueID, exp, d)}}
	if d == Attachment {
		q.Set("d", string(d))
	}
	return q
}

// DownloadURL is base/dl/{uniqueID}/{name}?…; name is cosmetic (players
// and download managers show it) and not signed: the response's
// Content-Disposition always carries the file's real name.
func (s *Signer) DownloadURL(base, uniqueID, name string, exp time.Time, d Disposition) string {
	if name == "" {
		name = "file"
	}
	return strings.TrimRight(base, "/") + "/dl/" + url.PathEscape(uniqueID) + "/" + url.PathEscape(name) + "?" + s.Query(uniqueID, exp, d).Encode()
}

// PageURL is base/f/{uniqueID}?exp=…&sig=….
func (s *Signer) PageURL(base, uniqueID string, exp time.Time) string {
	return strings.TrimRight(base, "/") + "/f/" + url.PathEscape(uniqueID) + "?" + s.Query(uniqueID, exp, Page).Encode()
}

// DispositionOf reads the d query value of a /dl link.
func DispositionOf(q url.Values) Disposition {
	if q.Get("d") == string(Attachment) {
		return Attachment
	}
	return Inline
}
