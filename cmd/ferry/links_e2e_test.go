package main

import (
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/ferry-dev/ferry/links"
	"github.com/ferry-dev/ferry/telegramtest"
)

// checkPageLink fails t unless u is PUBLIC_URL/f/{uid} signed under secret
// for the page, valid for about lifetime from now; it returns the query.
func checkPageLink(t *testing.T, what, u, secret, uid string, lifetime time.Duration) url.Values {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil || pu.Scheme+"://"+pu.Host != "https://ferry.example.org" || pu.Path != "/f/"+uid {
		t.Fatalf("%s: link %q, want https://ferry.example.org/f/%s?…", what, u, uid)
	}
	q := pu.Query()
	s := links.New(secret)
	if err := s.Verify(uid, q.Get("exp"), q.Get("sig"), links.Page, time.Now()); err != nil {
		t.Fatalf("%s: link %q does not verify: %v", what, u, err)
	}
	exp, _ := strconv.ParseInt(q.Get("exp"), 10, 64)
	if left := time.Until(time.Unix(exp, 0)); left < lifetime-time.Minute || left > lifetime+time.Minute {
		t.Fatalf("%s: link valid for %s, want LINK_LIFETIME %s", what, left, lifetime)
	}
	// Not a link to any other file, nor a stream.
	if s.Verify(uid+"x", q.Get("exp"), q.Get("sig"), links.Page, time.Now()) == nil ||
		s.Verify(uid, q.Get("exp"), q.Get("sig"), links.Inline, time.Now()) == nil {
		t.Fatalf("%s: the signature of %q verifies for another file or as a stream", what, u)
	}
	return q
}

// TestSignedLinksInReplyAndGet: with LINK_SECRET, the index reply's View
// File button and /get's answer carry fresh signed page links valid for
// LINK_LIFETIME; the page opens with the signature and refuses without it.
func TestSignedLinksInReplyAndGet(t *testing.T) {
	const channel, secret, lifetime = -1001234567891, "links-e2e-secret", 2 * time.Hour
	w := newWorld(t, map[string]string{"PUBLIC_URL": "https://ferry.example.org", "LINK_SECRET": secret,
		"LINK_LIFETIME": lifetime.String()})
	w.tg.SetChat(models.Chat{ID: channel, Type: models.ChatTypeChannel, Title: "Files"})
	w.tg.SetChatAdmins(channel, e2eBotID)
	p := start(t, w.env, "serve")
	p.waitReady(t, time.Now())

	ref := w.tg.AddFile(e2eToken, telegramtest.FileSpec{Kind: telegramtest.KindDocument, Name: "notes & more.pdf", MimeType: "application/pdf", Size: 123456, UniqueKey: "links"})
	uid := ref.FileUniqueID
	post := fmt.Sprintf(`{"update_id":3,"channel_post":{"message_id":40,"date":%d,"chat":{"id":%d,"type":"channel","title":"Files"},"document":{"file_id":%q,"file_unique_id":%q,"file_name":"notes & more.pdf","mime_type":"application/pdf","file_size":123456}}}`,
		time.Now().Unix(), channel, ref.FileID, uid)
	if code := w.post(t, p, w.secret, []byte(post)); code != 200 {
		t.Fatalf("channel post: %d", code)
	}
	reply := w.waitSent(t, channel, 1)[0]
	var markup models.InlineKeyboardMarkup
	if err := json.Unmarshal([]byte(reply.Params["reply_markup"]), &markup); err != nil || len(markup.InlineKeyboard) != 1 ||
		len(markup.InlineKeyboard[0]) != 1 || markup.InlineKeyboard[0][0].Text != "View File" {
		t.Fatalf("index reply's keyboard %q (%v)", reply.Params["reply_markup"], err)
	}
	q := checkPageLink(t, "View button", markup.InlineKeyboard[0][0].URL, secret, uid, lifetime)

	// The page: 200 with the signature, 403 without or with another's.
	for _, c := range []struct {
		query string
		want  int
	}{{"?" + q.Encode(), 200}, {"", 403}, {"?exp=" + q.Get("exp") + "&sig=AAAA", 403}} {
		res, err := http.Get(p.url("/f/" + uid + c.query))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Fatalf("GET /f/%s%s: %d, want %d", uid, c.query, res.StatusCode, c.want)
		}
	}

	// /get: the file, then a fresh link to its page.
	w.post(t, p, w.secret, commandUpdate(4, adminID, "/get "+uid))
	answer := w.waitSent(t, adminID, 1)[0].Params["text"]
	if docs := w.tg.CallsTo("sendDocument"); len(docs) != 1 || !docs[0].OK || docs[0].Params["chat_id"] != fmt.Sprint(adminID) {
		t.Fatalf("/get sent %+v", docs)
	}
	m := regexp.MustCompile(`^<a href="([^"]+)">View File</a>: notes &amp; more\.pdf$`).FindStringSubmatch(answer)
	if m == nil {
		t.Fatalf("/get answer %q, want the page link", answer)
	}
	if got := checkPageLink(t, "/get link", html.UnescapeString(m[1]), secret, uid, lifetime); got.Get("sig") == "" || strings.Contains(m[1], "&sig") {
		t.Fatalf("/get link %q: query not escaped for HTML", m[1])
	}
}
