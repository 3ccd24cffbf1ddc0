package telegramtest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"

	"github.com/go-telegram/bot/models"
)

// textBuilder accumulates the plain text of a formatted message and tracks
// its length in UTF-16 code units, the unit Telegram measures entity
// offsets and message lengths in.
type textBuilder struct {
	sb     strings.Builder
	utf16n int
}

func (b *textBuilder) writeRune(r rune) {
	b.sb.WriteRune(r)
	b.utf16n += utf16Len(r)
}

func (b *textBuilder) writeByte(c byte) {
	b.sb.WriteByte(c)
	// Count a code point once, at its first byte; 4-byte sequences are
	// surrogate pairs in UTF-16.
	if c < 0x80 || c >= 0xC0 {
		b.utf16n++
		if c >= 0xF0 {
			b.utf16n++
		}
	}
}

func utf16Len(r rune) int {
	if r >= 0x10000 {
		return 2
	}
	return 1
}

// utf16Length returns the length of s in UTF-16 code units.
func utf16Length(s string) int {
	n := 0
	for _, r := range s {
		n += utf16Len(r)
	}
	return n
}

// entityError is the text Telegram puts after "Bad Request: can't parse
// entities: ".
type entityError struct{ msg string }

func (e *entityError) Error() string { return e.msg }

func entErr(format string, args ...any) error {
	return &entityError{msg: fmt.Sprintf(format, args...)}
}

// formatted is a message text after parse_mode processing.
type formatted struct {
	Text     string
	Entities []models.MessageEntity
}

// parseFormatted applies parse_mode to text like the Bot API does: it
// returns the plain text and entities, or an error whose message is the
// part after "can't parse entities: ". Leading and trailing white space
// is removed afterwards, as Telegram does.
func parseFormatted(text, parseMode string) (formatted, error) {
	var (
		out formatted
		err error
	)
	switch parseMode {
	case "":
		out = formatted{Text: text}
	case "HTML", "html":
		out, err = parseHTML(text)
	case "MarkdownV2", "markdownv2":
		out, err = parseMarkdownV2(text)
	case "Markdown", "markdown":
		out, err = parseMarkdownV1(text)
	default:
		return formatted{}, errUnsupportedParseMode
	}
	if err != nil {
		return formatted{}, err
	}
	sortEntities(out.Entities)
	return trimFormatted(out), nil
}

var errUnsupportedParseMode = fmt.Errorf("unsupported parse_mode")

func sortEntities(es []models.MessageEntity) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Offset != es[j].Offset {
			return es[i].Offset < es[j].Offset
		}
		return es[i].Length > es[j].Length
	})
}

// trimFormatted strips leading and trailing white space and clips the
// entities to what is left, dropping empty ones.
func trimFormatted(f formatted) formatted {
	lead := len(f.Text) - len(strings.TrimLeftFunc(f.Text, unicode.IsSpace))
	trimmed := strings.TrimSpace(f.Text)
	shift := utf16Length(f.Text[:lead])
	n := utf16Length(trimmed)
	var es []models.MessageEntity
	for _, e := range f.Entities {
		start := e.Offset - shift
		end := start + e.Length
		if start < 0 {
			start = 0
		}
		if end > n {
			end = n
		}
		if end <= start {
			continue
		}
		e.Offset, e.Length = start, end-start
		es = append(es, e)
	}
	return formatted{Text: trimmed, Entities: es}
}

// decodeHTMLEntity decodes the entity at s[i] (which is '&'): &lt; &gt;
// &amp; &quot; and numeric ones. Unlike Telegram it requires the closing
// ';'. It returns the rune and the index after the entity, or ok=false.
func decodeHTMLEntity(s string, i int) (r rune, next int, ok bool) {
	j := i + 1
	if j < len(s) && s[j] == '#' {
		j++
		base := 10
		if j < len(s) && (s[j] == 'x' || s[j] == 'X') {
			base = 16
			j++
		}
		start := j
		for j < len(s) && isDigitBase(s[j], base) {
			j++
		}
		if j == start || j >= len(s) || s[j] != ';' || j-start > 8 {
			return 0, 0, false
		}
		v, err := strconv.ParseUint(s[start:j], base, 32)
		if err != nil || v == 0 || v >= 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) {
			return 0, 0, false
		}
		return rune(v), j + 1, true
	}
	start := j
	for j < len(s) && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z')) {
		j++
	}
	if j >= len(s) || s[j] != ';' {
		return 0, 0, false
	}
	switch s[start:j] {
	case "lt":
		r = '<'
	case "gt":
		r = '>'
	case "amp":
		r = '&'
	case "quot":
		r = '"'
	default:
		return 0, 0, false
	}
	return r, j + 1, true
}

func isDigitBase(c byte, base int) bool {
	if c >= '0' && c <= '9' {
		return true
	}
	if base == 16 {
		return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
	}
	return false
}

func isHTMLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

var htmlTags = map[string]bool{
	"a": true, "b": true, "strong": true, "i": true, "em": true, "u": true, "ins": true,
	"s": true, "strike": true, "del": true, "span": true, "tg-spoiler": true,
	"tg-emoji": true, "code": true, "pre": true, "blockquote": true,
}

type htmlOpen struct {
	tag        string
	arg        string
	expandable bool
	offset     int // UTF-16 offset in the result
	textStart  int // byte offset in the result
}

// parseHTML follows the Bot API's HTML parser (tdlib's parse_html): the
// same tags, attribute rules and error texts. It is stricter in one place:
// a '&' that does not start a supported entity ending in ';' is an error
// (the Bot API documentation requires escaping it; Telegram itself keeps
// such a '&' literally, or decodes "&lt" without ';').
func parseHTML(s string) (formatted, error) {
	var b textBuilder
	var stack []htmlOpen
	var ents []models.MessageEntity
	n := len(s)
	for i := 0; i < n; {
		c := s[i]
		if c == '&' {
			r, next, ok := decodeHTMLEntity(s, i)
			if !ok {
				return formatted{}, entErr("Unescaped \"&\" at byte offset %d: use &amp; (only &lt; &gt; &amp; &quot; and numeric entities are supported)", i)
			}
			b.writeRune(r)
			i = next
			continue
		}
		if c != '<' {
			b.writeByte(c)
			i++
			continue
		}
		begin := i
		if i+1 < n && s[i+1] == '/' {
			// End tag.
			if len(stack) == 0 {
				return formatted{}, entErr("Unexpected end tag at byte offset %d", begin)
			}
			i += 2
			for i < n && !isHTMLSpace(s[i]) && s[i] != '>' {
				i++
			}
			endName := strings.ToLower(s[begin+2 : i])
			for i < n && isHTMLSpace(s[i]) {
				i++
			}
			if i >= n || s[i] != '>' {
				return formatted{}, entErr("Unclosed end tag at byte offset %d", begin)
			}
			i++
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if endName != "" && endName != top.tag {
				return formatted{}, entErr("Unmatched end tag at byte offset %d, expected \"</%s>\", found \"</%s>\"", begin, top.tag, endName)
			}
			length := b.utf16n - top.offset
			if length == 0 {
				continue
			}
			e, ok := htmlEntity(top, b.sb.String()[top.textStart:])
			if !ok {
				continue
			}
			e.Offset, e.Length = top.offset, length
			ents = append(ents, e)
			continue
		}
		// Start tag.
		i++
		for i < n && !isHTMLSpace(s[i]) && s[i] != '>' {
			i++
		}
		if i >= n {
			return formatted{}, entErr("Unclosed start tag at byte offset %d", begin)
		}
		tag := strings.ToLower(s[begin+1 : i])
		if !htmlTags[tag] {
			return formatted{}, entErr("Unsupported start tag \"%s\" at byte offset %d", tag, begin)
		}
		open := htmlOpen{tag: tag}
		for i < n && s[i] != '>' {
			for i < n && isHTMLSpace(s[i]) {
				i++
			}
			if i < n && s[i] == '>' {
				break
			}
			attrBegin := i
			for i < n && !isHTMLSpace(s[i]) && s[i] != '=' && s[i] != '>' {
				i++
			}
			attr := strings.ToLower(s[attrBegin:i])
			if attr == "" {
				return formatted{}, entErr("Empty attribute name in the tag \"%s\" at byte offset %d", tag, begin)
			}
			for i < n && isHTMLSpace(s[i]) {
				i++
			}
			if i >= n || s[i] != '=' {
				if attr == "expandable" && tag == "blockquote" && i < n {
					open.expandable = true
					continue
				}
				return formatted{}, entErr("Expected equal sign in declaration of an attribute of the tag \"%s\" at byte offset %d", tag, begin)
			}
			i++
			for i < n && isHTMLSpace(s[i]) {
				i++
			}
			if i >= n {
				return formatted{}, entErr("Unclosed start tag \"%s\" at byte offset %d", tag, begin)
			}
			var val strings.Builder
			if s[i] != '\'' && s[i] != '"' {
				tokBegin := i
				for i < n && (isAlnum(s[i]) || s[i] == '.' || s[i] == '-') {
					i++
				}
				val.WriteString(strings.ToLower(s[tokBegin:i]))
				if i >= n || (!isHTMLSpace(s[i]) && s[i] != '>') {
					return formatted{}, entErr("Unexpected end of name token at byte offset %d", tokBegin)
				}
			} else {
				quote := s[i]
				i++
				for i < n && s[i] != quote {
					if s[i] == '&' {
						if r, next, ok := decodeHTMLEntity(s, i); ok {
							val.WriteRune(r)
							i = next
							continue
						}
					}
					val.WriteByte(s[i])
					i++
				}
				if i < n {
					i++
				}
			}
			if i >= n {
				return formatted{}, entErr("Unclosed start tag at byte offset %d", begin)
			}
			v := val.String()
			switch {
			case tag == "a" && attr == "href":
				open.arg = v
			case tag == "code" && attr == "class" && strings.HasPrefix(v, "language-"):
				open.arg = v[len("language-"):]
			case tag == "span" && attr == "class" && strings.HasPrefix(v, "tg-"):
				open.arg = v[len("tg-"):]
			case tag == "tg-emoji" && attr == "emoji-id":
				open.arg = v
			case tag == "blockquote" && attr == "expandable":
				open.expandable = true
			}
		}
		i++ // '>'
		if tag == "span" && open.arg != "spoiler" {
			return formatted{}, entErr("Tag \"span\" must have class \"tg-spoiler\" at byte offset %d", begin)
		}
		if tag == "tg-emoji" {
			if _, err := strconv.ParseInt(open.arg, 10, 64); err != nil {
				return formatted{}, entErr("Custom emoji entity must contain a valid emoji-id at byte offset %d", begin)
			}
		}
		open.offset = b.utf16n
		open.textStart = b.sb.Len()
		stack = append(stack, open)
	}
	if len(stack) > 0 {
		return formatted{}, entErr("Can't find end tag corresponding to start tag \"%s\"", stack[len(stack)-1].tag)
	}
	return formatted{Text: b.sb.String(), Entities: mergeCodeIntoPre(ents)}, nil
}

func isAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func htmlEntity(o htmlOpen, inner string) (models.MessageEntity, bool) {
	switch o.tag {
	case "b", "strong":
		return models.MessageEntity{Type: models.MessageEntityTypeBold}, true
	case "i", "em":
		return models.MessageEntity{Type: models.MessageEntityTypeItalic}, true
	case "u", "ins":
		return models.MessageEntity{Type: models.MessageEntityTypeUnderline}, true
	case "s", "strike", "del":
		return models.MessageEntity{Type: models.MessageEntityTypeStrikethrough}, true
	case "span", "tg-spoiler":
		return models.MessageEntity{Type: models.MessageEntityTypeSpoiler}, true
	case "tg-emoji":
		return models.MessageEntity{Type: models.MessageEntityTypeCustomEmoji, CustomEmojiID: o.arg}, true
	case "code":
		return models.MessageEntity{Type: models.MessageEntityTypeCode, Language: o.arg}, true
	case "pre":
		return models.MessageEntity{Type: models.MessageEntityTypePre, Language: o.arg}, true
	case "blockquote":
		if o.expandable {
			return models.MessageEntity{Type: models.MessageEntityTypeExpandableBlockquote}, true
		}
		return models.MessageEntity{Type: models.MessageEntityTypeBlockquote}, true
	case "a":
		url := o.arg
		if url == "" {
			url = inner
		}
		if url == "" {
			return models.MessageEntity{}, false
		}
		return models.MessageEntity{Type: models.MessageEntityTypeTextLink, URL: url}, true
	}
	return models.MessageEntity{}, false
}

// mergeCodeIntoPre turns <pre><code class="language-x">…</code></pre> into
// one pre entity with a language, as Telegram does.
func mergeCodeIntoPre(es []models.MessageEntity) []models.MessageEntity {
	out := es[:0:0]
	for _, e := range es {
		if e.Type == models.MessageEntityTypePre {
			merged := false
			for j := range out {
				c := out[j]
				if c.Type == models.MessageEntityTypeCode && c.Offset == e.Offset && c.Length == e.Length {
					out[j] = models.MessageEntity{Type: models.MessageEntityTypePre, Offset: e.Offset, Length: e.Length, Language: c.Language}
					merged = true
					break
				}
			}
			if merged {
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

const mdv2Reserved = "_*[]()~`>#+-=|{}.!"

type mdOpen struct {
	typ        models.MessageEntityType
	name       string // tdlib's type name, for error texts
	arg        string
	offset     int
	byteOffset int
	textStart  int
}

// parseMarkdownV2 follows the Bot API's MarkdownV2 parser (tdlib's
// parse_markdown_v2): reserved characters outside entities must be escaped
// with '\', inside code and pre only '`' and '\' are special, and the
// error texts are Telegram's. Block quotes are recognised at the start of
// a line ('>' and the expandable "**>" … "||" form).
func parseMarkdownV2(s string) (formatted, error) {
	var b textBuilder
	var stack []mdOpen
	var ents []models.MessageEntity
	n := len(s)
	at := func(i int) byte {
		if i < n {
			return s[i]
		}
		return 0
	}
	// Block quote state: quoteStart is the UTF-16 offset where the current
	// quote began, or -1.
	quoteStart := -1
	quoteExpandable := false
	closeQuote := func() {
		end := b.utf16n
		if strings.HasSuffix(b.sb.String(), "\n") {
			end-- // the quote ends before its line break
		}
		if quoteStart >= 0 && end > quoteStart {
			typ := models.MessageEntityTypeBlockquote
			if quoteExpandable {
				typ = models.MessageEntityTypeExpandableBlockquote
			}
			ents = append(ents, models.MessageEntity{Type: typ, Offset: quoteStart, Length: end - quoteStart})
		}
		quoteStart = -1
		quoteExpandable = false
	}
	for i := 0; i < n; i++ {
		c := s[i]
		lineStart := i == 0 || s[i-1] == '\n'
		inCode := len(stack) > 0 && (stack[len(stack)-1].typ == models.MessageEntityTypeCode || stack[len(stack)-1].typ == models.MessageEntityTypePre)
		if lineStart && !inCode {
			switch {
			case c == '>':
				if quoteStart < 0 {
					quoteStart = b.utf16n
				}
				continue
			case c == '*' && at(i+1) == '*' && at(i+2) == '>':
				closeQuote()
				quoteStart = b.utf16n
				quoteExpandable = true
				i += 2
				continue
			default:
				if quoteStart >= 0 && !quoteExpandable {
					// The quote ended with the previous line (without its newline).
					closeQuote()
				}
			}
		}
		if c == '\\' && at(i+1) > 0 && at(i+1) <= 126 {
			i++
			b.writeByte(s[i])
			continue
		}
		reserved := mdv2Reserved
		if inCode {
			reserved = "`"
		}
		if strings.IndexByte(reserved, c) < 0 {
			if c == '\n' && quoteStart >= 0 && quoteExpandable {
				// An expandable quote continues while lines start with '>'.
				if at(i+1) != '>' {
					// Without the closing "||" the quote is not expandable.
					quoteExpandable = false
					closeQuote()
				}
			}
			b.writeByte(c)
			continue
		}
		if c == '|' && at(i+1) == '|' && quoteStart >= 0 && quoteExpandable && (at(i+2) == '\n' || at(i+2) == 0) &&
			(len(stack) == 0 || stack[len(stack)-1].typ != models.MessageEntityTypeSpoiler) {
			i++
			closeQuote()
			continue
		}
		isEnd := false
		if len(stack) > 0 {
			switch stack[len(stack)-1].typ {
			case models.MessageEntityTypeBold:
				isEnd = c == '*'
			case models.MessageEntityTypeItalic:
				isEnd = c == '_' && at(i+1) != '_'
			case models.MessageEntityTypeCode:
				isEnd = c == '`'
			case models.MessageEntityTypePre:
				isEnd = c == '`' && at(i+1) == '`' && at(i+2) == '`'
			case models.MessageEntityTypeTextLink, models.MessageEntityTypeCustomEmoji:
				isEnd = c == ']'
			case models.MessageEntityTypeUnderline:
				isEnd = c == '_' && at(i+1) == '_'
			case models.MessageEntityTypeStrikethrough:
				isEnd = c == '~'
			case models.MessageEntityTypeSpoiler:
				isEnd = c == '|' && at(i+1) == '|'
			}
		}
		if !isEnd {
			o := mdOpen{byteOffset: i}
			switch c {
			case '_':
				if at(i+1) == '_' {
					o.typ, o.name = models.MessageEntityTypeUnderline, "Underline"
					i++
				} else {
					o.typ, o.name = models.MessageEntityTypeItalic, "Italic"
				}
			case '*':
				o.typ, o.name = models.MessageEntityTypeBold, "Bold"
			case '~':
				o.typ, o.name = models.MessageEntityTypeStrikethrough, "Strikethrough"
			case '|':
				if at(i+1) != '|' {
					return formatted{}, reservedErr(c)
				}
				o.typ, o.name = models.MessageEntityTypeSpoiler, "Spoiler"
				i++
			case '[':
				o.typ, o.name = models.MessageEntityTypeTextLink, "TextUrl"
			case '!':
				if at(i+1) != '[' {
					return formatted{}, reservedErr(c)
				}
				o.typ, o.name = models.MessageEntityTypeCustomEmoji, "CustomEmoji"
				i++
			case '`':
				if at(i+1) == '`' && at(i+2) == '`' {
					o.typ, o.name = models.MessageEntityTypePre, "Pre"
					i += 3
					langEnd := i
					for langEnd < n && !isHTMLSpace(s[langEnd]) && s[langEnd] != '`' {
						langEnd++
					}
					if i != langEnd && langEnd < n && s[langEnd] != '`' {
						o.arg = s[i:langEnd]
						i = langEnd
					}
					if at(i) == '\n' || at(i) == '\r' {
						if (at(i+1) == '\n' || at(i+1) == '\r') && at(i) != at(i+1) {
							i += 2
						} else {
							i++
						}
					}
					i--
				} else {
					o.typ, o.name = models.MessageEntityTypeCode, "Code"
				}
			default:
				return formatted{}, reservedErr(c)
			}
			o.offset = b.utf16n
			o.textStart = b.sb.Len()
			stack = append(stack, o)
			continue
		}
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		e := models.MessageEntity{Type: top.typ, Offset: top.offset, Length: b.utf16n - top.offset}
		switch top.typ {
		case models.MessageEntityTypeUnderline, models.MessageEntityTypeSpoiler:
			i++
		case models.MessageEntityTypePre:
			i += 2
			e.Language = top.arg
		case models.MessageEntityTypeTextLink, models.MessageEntityTypeCustomEmoji:
			var url strings.Builder
			if at(i+1) != '(' {
				url.WriteString(b.sb.String()[top.textStart:])
			} else {
				i += 2
				urlBegin := i
				for i < n && s[i] != ')' {
					if s[i] == '\\' && at(i+1) > 0 && at(i+1) <= 126 {
						url.WriteByte(s[i+1])
						i += 2
						continue
					}
					url.WriteByte(s[i])
					i++
				}
				if i >= n {
					return formatted{}, entErr("Can't find end of a URL at byte offset %d", urlBegin)
				}
			}
			if top.typ == models.MessageEntityTypeCustomEmoji {
				id, ok := strings.CutPrefix(url.String(), "tg://emoji?id=")
				if _, err := strconv.ParseInt(id, 10, 64); !ok || err != nil {
					return formatted{}, entErr("Custom emoji entity must contain a tg://emoji URL")
				}
				e.CustomEmojiID = id
			} else {
				e.URL = url.String()
			}
		}
		if e.Length > 0 {
			ents = append(ents, e)
		}
	}
	if len(stack) > 0 {
		top := stack[len(stack)-1]
		return formatted{}, entErr("Can't find end of %s entity at byte offset %d", top.name, top.byteOffset)
	}
	if quoteStart >= 0 {
		quoteExpandable = false
		closeQuote()
	}
	return formatted{Text: b.sb.String(), Entities: ents}, nil
}

func reservedErr(c byte) error {
	return entErr("Character '%c' is reserved and must be escaped with the preceding '\\'", c)
}

// parseMarkdownV1 follows the legacy Markdown parser (tdlib's
// parse_markdown): *bold*, _italic_, `code`, ```pre``` and [text](url).
func parseMarkdownV1(s string) (formatted, error) {
	var b textBuilder
	var ents []models.MessageEntity
	n := len(s)
	for i := 0; i < n; i++ {
		c := s[i]
		if c == '\\' && i+1 < n && strings.IndexByte("_*`[", s[i+1]) >= 0 {
			i++
			b.writeByte(s[i])
			continue
		}
		if strings.IndexByte("_*`[", c) < 0 {
			b.writeByte(c)
			continue
		}
		begin := i
		end := c
		if c == '[' {
			end = ']'
		}
		i++
		isPre := false
		lang := ""
		if c == '`' && i+1 < n && s[i] == '`' && s[i+1] == '`' {
			i += 2
			isPre = true
			langEnd := i
			for langEnd < n && !isHTMLSpace(s[langEnd]) && s[langEnd] != '`' {
				langEnd++
			}
			if i != langEnd && langEnd < n && s[langEnd] != '`' {
				lang = s[i:langEnd]
				i = langEnd
			}
			if i < n && (s[i] == '\n' || s[i] == '\r') {
				i++
			}
		}
		offset := b.utf16n
		textStart := b.sb.Len()
		for i < n && (s[i] != end || (isPre && !(i+2 < n && s[i+1] == '`' && s[i+2] == '`'))) {
			b.writeByte(s[i])
			i++
		}
		if i >= n {
			return formatted{}, entErr("Can't find end of the entity starting at byte offset %d", begin)
		}
		e := models.MessageEntity{Offset: offset, Length: b.utf16n - offset}
		switch c {
		case '_':
			e.Type = models.MessageEntityTypeItalic
		case '*':
			e.Type = models.MessageEntityTypeBold
		case '`':
			if isPre {
				i += 2
				e.Type, e.Language = models.MessageEntityTypePre, lang
			} else {
				e.Type = models.MessageEntityTypeCode
			}
		case '[':
			url := b.sb.String()[textStart:]
			if i+1 < n && s[i+1] == '(' {
				i += 2
				urlStart := i
				for i < n && s[i] != ')' {
					i++
				}
				if i >= n {
					return formatted{}, entErr("Can't find end of a URL at byte offset %d", urlStart)
				}
				url = s[urlStart:i]
			}
			e.Type, e.URL = models.MessageEntityTypeTextLink, url
		}
		if e.Length > 0 {
			ents = append(ents, e)
		}
	}
	return formatted{Text: b.sb.String(), Entities: ents}, nil
}

// validateEntities checks an explicit entities array (sent instead of
// parse_mode) against the text, in UTF-16 units.
func validateEntities(text string, raw string) ([]models.MessageEntity, error) {
	var es []models.MessageEntity
	if err := jsonUnmarshalStrict([]byte(raw), &es); err != nil {
		return nil, fmt.Errorf("can't parse entities JSON object")
	}
	n := utf16Length(text)
	for _, e := range es {
		if e.Type == "" {
			return nil, fmt.Errorf("can't parse MessageEntity: Field \"type\" must be non-empty")
		}
		if e.Offset < 0 || e.Length < 0 || e.Offset+e.Length > n {
			return nil, fmt.Errorf("entity beginning at UTF-16 offset %d ends after the end of the text at UTF-16 offset %d", e.Offset, n)
		}
		if e.Type == models.MessageEntityTypeTextLink && e.URL == "" {
			return nil, fmt.Errorf("can't parse MessageEntity: Field \"url\" must be non-empty for text_link")
		}
	}
	sortEntities(es)
	return es, nil
}

// utf16Slice is used by tests to read entity text back.
func utf16Slice(s string, off, length int) string {
	u := utf16.Encode([]rune(s))
	if off < 0 || off+length > len(u) {
		return ""
	}
	return string(utf16.Decode(u[off : off+length]))
}
