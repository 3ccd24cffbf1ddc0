package telegramtest

import (
	"strings"
	"testing"

	"github.com/go-telegram/bot/models"
)

func TestParseHTML(t *testing.T) {
	tests := []struct {
		name, in, text string
		ents           []models.MessageEntity
	}{
		{"plain", "hello", "hello", nil},
		{"bold", "<b>bold</b> x", "bold x", []models.MessageEntity{{Type: "bold", Offset: 0, Length: 4}}},
		{"aliases", "<strong>a</strong><em>b</em><ins>c</ins><strike>d</strike><del>e</del>", "abcde", []models.MessageEntity{
			{Type: "bold", Offset: 0, Length: 1}, {Type: "italic", Offset: 1, Length: 1}, {Type: "underline", Offset: 2, Length: 1},
			{Type: "strikethrough", Offset: 3, Length: 1}, {Type: "strikethrough", Offset: 4, Length: 1}}},
		{"nested", "<b>a<i>b</i></b>", "ab", []models.MessageEntity{{Type: "bold", Offset: 0, Length: 2}, {Type: "italic", Offset: 1, Length: 1}}},
		{"entities", "&lt;a&gt; &amp; &quot;q&quot; &#65;&#x42;", "<a> & \"q\" AB", nil},
		{"raw gt allowed", "a > b", "a > b", nil},
		{"link", `<a href="https://t.me/x?a=1&amp;b=2">go</a>`, "go", []models.MessageEntity{{Type: "text_link", Offset: 0, Length: 2, URL: "https://t.me/x?a=1&b=2"}}},
		{"spoiler", `<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>`, "st", []models.MessageEntity{
			{Type: "spoiler", Offset: 0, Length: 1}, {Type: "spoiler", Offset: 1, Length: 1}}},
		{"pre code", `<pre><code class="language-go">x := 1</code></pre>`, "x := 1", []models.MessageEntity{{Type: "pre", Offset: 0, Length: 6, Language: "go"}}},
		{"code", "<code>c</code>", "c", []models.MessageEntity{{Type: "code", Offset: 0, Length: 1}}},
		{"blockquote", "<blockquote>q</blockquote><blockquote expandable>e</blockquote>", "qe", []models.MessageEntity{
			{Type: "blockquote", Offset: 0, Length: 1}, {Type: "expandable_blockquote", Offset: 1, Length: 1}}},
		{"emoji utf16", "😀<b>x</b>", "😀x", []models.MessageEntity{{Type: "bold", Offset: 2, Length: 1}}},
		{"tg-emoji", `<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>`, "👍", []models.MessageEntity{{Type: "custom_emoji", Offset: 0, Length: 2, CustomEmojiID: "5368324170671202286"}}},
		{"trim", "  <b> x </b>\n", "x", []models.MessageEntity{{Type: "bold", Offset: 0, Length: 1}}},
		{"upper tags", "<B>x</B>", "x", []models.MessageEntity{{Type: "bold", Offset: 0, Length: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseFormatted(tc.in, "HTML")
			if err != nil {
				t.Fatalf("parse %q: %v", tc.in, err)
			}
			if f.Text != tc.text {
				t.Fatalf("text = %q, want %q", f.Text, tc.text)
			}
			if !entitiesEqual(f.Entities, tc.ents) {
				t.Fatalf("entities = %+v, want %+v", f.Entities, tc.ents)
			}
		})
	}
}

func TestParseHTMLErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"<foo>x</foo>", `Unsupported start tag "foo" at byte offset 0`},
		{"a <br> b", `Unsupported start tag "br" at byte offset 2`},
		{"1 < 2", `Unsupported start tag "" at byte offset 2`},
		{"<b>x", `Can't find end tag corresponding to start tag "b"`},
		{"<b>x</i>", `Unmatched end tag at byte offset 4, expected "</b>", found "</i>"`},
		{"x</b>", `Unexpected end tag at byte offset 1`},
		{"<b", `Unclosed start tag at byte offset 0`},
		{"<b>x</b", `Unclosed end tag at byte offset 4`},
		{`<span class="x">s</span>`, `Tag "span" must have class "tg-spoiler" at byte offset 0`},
		{"Tom & Jerry", `Unescaped "&" at byte offset 4: use &amp; (only &lt; &gt; &amp; &quot; and numeric entities are supported)`},
		{"a&ltb", `Unescaped "&" at byte offset 1: use &amp; (only &lt; &gt; &amp; &quot; and numeric entities are supported)`},
		{"&nbsp;", `Unescaped "&" at byte offset 0: use &amp; (only &lt; &gt; &amp; &quot; and numeric entities are supported)`},
		{`<a href=x"y">x</a>`, `Unexpected end of name token at byte offset 8`},
	}
	for _, tc := range tests {
		_, err := parseFormatted(tc.in, "HTML")
		if err == nil || err.Error() != tc.want {
			t.Errorf("parse %q: err = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestParseMarkdownV2(t *testing.T) {
	tests := []struct {
		name, in, text string
		ents           []models.MessageEntity
	}{
		{"escaped", `Done\. 50\% \(1/2\) a\-b\!`, "Done. 50% (1/2) a-b!", nil},
		{"bold italic", "*b* _i_ __u__ ~s~ ||p||", "b i u s p", []models.MessageEntity{
			{Type: "bold", Offset: 0, Length: 1}, {Type: "italic", Offset: 2, Length: 1}, {Type: "underline", Offset: 4, Length: 1},
			{Type: "strikethrough", Offset: 6, Length: 1}, {Type: "spoiler", Offset: 8, Length: 1}}},
		{"code keeps reserved", "`a.b-c`", "a.b-c", []models.MessageEntity{{Type: "code", Offset: 0, Length: 5}}},
		{"pre lang", "```go\nx.y()\n```", "x.y()", []models.MessageEntity{{Type: "pre", Offset: 0, Length: 5, Language: "go"}}},
		{"link", `[site](https://e.com/a\)b)`, "site", []models.MessageEntity{{Type: "text_link", Offset: 0, Length: 4, URL: "https://e.com/a)b"}}},
		{"quote", ">quoted\nplain", "quoted\nplain", []models.MessageEntity{{Type: "blockquote", Offset: 0, Length: 6}}},
		{"quote two lines", ">a\n>b", "a\nb", []models.MessageEntity{{Type: "blockquote", Offset: 0, Length: 3}}},
		{"expandable quote", "**>a\n>b||\nc", "a\nb\nc", []models.MessageEntity{{Type: "expandable_blockquote", Offset: 0, Length: 3}}},
		{"emoji", "😀*x*", "😀x", []models.MessageEntity{{Type: "bold", Offset: 2, Length: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parseFormatted(tc.in, "MarkdownV2")
			if err != nil {
				t.Fatalf("parse %q: %v", tc.in, err)
			}
			if f.Text != tc.text {
				t.Fatalf("text = %q, want %q", f.Text, tc.text)
			}
			if !entitiesEqual(f.Entities, tc.ents) {
				t.Fatalf("entities = %+v, want %+v", f.Entities, tc.ents)
			}
		})
	}
}

func TestParseMarkdownV2Errors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Done.", `Character '.' is reserved and must be escaped with the preceding '\'`},
		{"50% (1/2)", `Character '(' is reserved and must be escaped with the preceding '\'`},
		{"a-b", `Character '-' is reserved and must be escaped with the preceding '\'`},
		{"x = 1", `Character '=' is reserved and must be escaped with the preceding '\'`},
		{"#tag", `Character '#' is reserved and must be escaped with the preceding '\'`},
		{"hi!", `Character '!' is reserved and must be escaped with the preceding '\'`},
		{"*bold", `Can't find end of Bold entity at byte offset 0`},
		{"x _it", `Can't find end of Italic entity at byte offset 2`},
		{"`code", `Can't find end of Code entity at byte offset 0`},
		{"[a](http://x", `Can't find end of a URL at byte offset 4`},
		{"*a.b*", `Character '.' is reserved and must be escaped with the preceding '\'`},
	}
	for _, tc := range tests {
		_, err := parseFormatted(tc.in, "MarkdownV2")
		if err == nil || err.Error() != tc.want {
			t.Errorf("parse %q: err = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestParseMarkdownV1(t *testing.T) {
	f, err := parseFormatted("*b* _i_ `c` [l](http://x.y) 1.5-2!", "Markdown")
	if err != nil {
		t.Fatal(err)
	}
	if f.Text != "b i c l 1.5-2!" {
		t.Fatalf("text = %q", f.Text)
	}
	want := []models.MessageEntity{{Type: "bold", Offset: 0, Length: 1}, {Type: "italic", Offset: 2, Length: 1},
		{Type: "code", Offset: 4, Length: 1}, {Type: "text_link", Offset: 6, Length: 1, URL: "http://x.y"}}
	if !entitiesEqual(f.Entities, want) {
		t.Fatalf("entities = %+v", f.Entities)
	}
	if _, err := parseFormatted("*open", "Markdown"); err == nil || err.Error() != "Can't find end of the entity starting at byte offset 0" {
		t.Fatalf("err = %v", err)
	}
}

func TestLengthIsUTF16AfterParsing(t *testing.T) {
	// 4096 characters of text inside tags are fine; markup does not count.
	f, err := parseFormatted("<b>"+strings.Repeat("a", 4096)+"</b>", "HTML")
	if err != nil || utf16Length(f.Text) != 4096 {
		t.Fatalf("len = %d, err = %v", utf16Length(f.Text), err)
	}
	if got := utf16Length("😀a"); got != 3 {
		t.Fatalf("utf16Length = %d, want 3", got)
	}
	if got := utf16Slice("😀ab", 2, 1); got != "a" {
		t.Fatalf("utf16Slice = %q", got)
	}
}

func TestFileIDFormat(t *testing.T) {
	id := EncodeFileID(KindDocument, 4, 0x0102030405060708, -5, []byte{1, 0, 0, 2, 3})
	// Real bot document file_ids with a file reference on DC 4 begin "BQACAgQAA".
	if !strings.HasPrefix(id, "BQACAgQAA") {
		t.Fatalf("file_id %q does not look like a Telegram document id", id)
	}
	d, err := DecodeFileID(id)
	if err != nil {
		t.Fatal(err)
	}
	if d.TypeID != 5 || d.DC != 4 || d.MediaID != 0x0102030405060708 || d.AccessHash != -5 {
		t.Fatalf("decoded %+v", d)
	}
	uid := EncodeFileUniqueID(KindDocument, 0x0102030405060708)
	if !strings.HasPrefix(uid, "AgAD") {
		t.Fatalf("file_unique_id %q does not start like Telegram's (AgAD...)", uid)
	}
	for _, ref := range [][]byte{nil, make([]byte, 3), make([]byte, 4), make([]byte, 300)} {
		d, err := DecodeFileID(EncodeFileID(KindVideo, 2, 77, 88, ref))
		if err != nil || d.TypeID != 4 || d.DC != 2 || d.MediaID != 77 || d.AccessHash != 88 {
			t.Fatalf("ref len %d: %+v %v", len(ref), d, err)
		}
	}
}
