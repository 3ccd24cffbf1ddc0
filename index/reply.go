package index

import (
	"fmt"
	"html"
	"strings"
)

// Reply headlines, as the seed and SPEC name them (tests and admins look
// for these exact words).
const (
	HeadlineStored  = "File Stored Successfully"
	HeadlineExists  = "File Already Exists"
	ViewButtonLabel = "View File"
)

// ReplyParseMode is the Bot API parse_mode FormatReply's text is written
// for. Names and captions are escaped for it.
const ReplyParseMode = "HTML"

// Button is an inline URL button.
type Button struct {
	Text string
	URL  string
}

// FormatReply renders the answer to an indexed post in Telegram HTML:
//
//	✅ File Stored Successfully
//
//	Name: movie.mkv
//	Size: 1.65 GB
//	Type: video/x-matroska
//	Location: DC 4
//
// with a "View File" button to viewURL (no button when viewURL is empty).
// Type is the MIME type, or the file kind when Telegram gave none.
func FormatReply(o Outcome, viewURL string) (text string, button Button) {
	head := HeadlineStored
	if o.Existing {
		head = HeadlineExists
	}
	f := o.File
	typ := f.MimeType
	if typ == "" {
		typ = f.Type
	}
	loc := "DC unknown"
	if f.DC > 0 {
		loc = fmt.Sprintf("DC %d", f.DC)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "✅ <b>%s</b>\n\n", head)
	fmt.Fprintf(&b, "<b>Name:</b> %s\n", html.EscapeString(f.Name))
	fmt.Fprintf(&b, "<b>Size:</b> %s\n", HumanSize(f.Size))
	fmt.Fprintf(&b, "<b>Type:</b> %s\n", html.EscapeString(typ))
	fmt.Fprintf(&b, "<b>Location:</b> %s", loc)
	if viewURL != "" {
		fmt.Fprintf(&b, "\n\n<b>View at:</b> <a href=\"%s\">%s</a>", html.EscapeString(viewURL), html.EscapeString(viewURL))
		button = Button{Text: ViewButtonLabel, URL: viewURL}
	}
	return b.String(), button
}

// ViewURL is where a file's View button leads: a freshly signed file page
// link when links are on (PageURL), else the R2 object's public URL when
// R2_PUBLIC_URL is set, else ferry's file page PUBLIC_URL/f/{id}, else ""
// (no button).
func (ix *Indexer) ViewURL(uniqueID string) string {
	if ix.pageURL != nil {
		if u := ix.pageURL(uniqueID); u != "" {
			return u
		}
	}
	if ix.r2PublicURL != nil {
		if u := ix.r2PublicURL(uniqueID); u != "" {
			return u
		}
	}
	if ix.publicURL == "" {
		return ""
	}
	return ix.publicURL + "/f/" + uniqueID
}

// SignedPageURL is a freshly signed link to the file's page, or "" when
// links are off (no LINK_SECRET or no PUBLIC_URL).
func (ix *Indexer) SignedPageURL(uniqueID string) string {
	if ix.pageURL == nil {
		return ""
	}
	return ix.pageURL(uniqueID)
}

// HumanSize formats a byte count the way the seed's replies do, in binary
// units with two decimals: 1774606367 is "1.65 GB", 512 is "512 B".
func HumanSize(n int64) string {
	if n < 1024 {
		if n < 0 {
			n = 0
		}
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KB", "MB", "GB", "TB", "PB"}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.2f %s", v, units[i])
}
