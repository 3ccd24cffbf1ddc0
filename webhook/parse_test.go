package webhook

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/ferry-dev/ferry/jobs"
	"github.com/ferry-dev/ferry/telegramtest"
)

// channelUpdates are updates as Telegram sends them, channel files and
// the ones that must not be taken for one.
var channelUpdates = []string{
	// documents, videos, audio and animations in channels and groups
	`{"update_id":1,"channel_post":{"message_id":5,"date":1,"chat":{"id":-1001,"type":"channel","title":"C"},"caption":"a film","document":{"file_id":"BQACAgQAAxkBAAIB5WMM","file_unique_id":"AgADdoc","file_name":"a.mkv","mime_type":"video/x-matroska","file_size":1774606367}}}`,
	`{"update_id":2,"channel_post":{"message_id":6,"date":1,"chat":{"id":-1001,"type":"channel"},"video":{"file_id":"BAACAgIAAxkBAAIB","file_unique_id":"AgADvid","duration":61,"width":1280,"height":720,"mime_type":"video/mp4","file_size":5000000,"thumbnail":{"file_id":"x","file_unique_id":"y","width":1,"height":1}}}}`,
	`{"update_id":3,"channel_post":{"message_id":7,"date":1,"chat":{"id":-1001,"type":"channel"},"audio":{"file_id":"CQACAgIAAxkB","file_unique_id":"AgADaud","duration":200,"performer":"P","title":"T","mime_type":"audio/mpeg"}}}`,
	`{"update_id":4,"channel_post":{"message_id":8,"date":1,"chat":{"id":-1001,"type":"channel"},"animation":{"file_id":"CgACAgQAAxkB","file_unique_id":"AgADani","width":320,"height":240,"duration":3},"document":{"file_id":"CgACAgQAAxkB","file_unique_id":"AgADani"}}}`,
	`{"update_id":5,"message":{"message_id":9,"date":1,"chat":{"id":-1002,"type":"supergroup"},"from":{"id":7,"is_bot":false,"first_name":"A"},"document":{"file_id":"BQACAgQAAxkB","file_unique_id":"AgADgrp","file_name":"g.zip"}}}`,
	`{"update_id":6,"message":{"message_id":10,"date":1,"chat":{"id":-3,"type":"group"},"video":{"file_id":"BAACAgIAAxkB","file_unique_id":"AgADgv","duration":1,"width":2,"height":3}}}`,
	// not channel files
	`{"update_id":7,"message":{"message_id":11,"date":1,"chat":{"id":7,"type":"private"},"document":{"file_id":"BQACAgQAAxkB","file_unique_id":"AgADpriv"}}}`,
	`{"update_id":8,"message":{"message_id":12,"date":1,"chat":{"id":-1002,"type":"supergroup"},"text":"/find x","document":{"file_id":"BQACAgQAAxkB","file_unique_id":"AgADcmd"}}}`,
	`{"update_id":9,"channel_post":{"message_id":13,"date":1,"chat":{"id":-1001,"type":"channel"},"text":"hello"}}`,
	`{"update_id":10,"callback_query":{"id":"1","from":{"id":7,"is_bot":false,"first_name":"A"},"chat_instance":"c","data":"x"},"channel_post":{"message_id":14,"date":1,"chat":{"id":-1001,"type":"channel"},"document":{"file_id":"BQACAgQAAxkB","file_unique_id":"AgADcb"}}}`,
	`{"update_id":11,"callback_query":null,"my_chat_member":null,"channel_post":{"message_id":15,"date":1,"chat":{"id":-1001,"type":"channel"},"document":{"file_id":"BQACAgQAAxkB","file_unique_id":"AgADnull"}}}`,
	`{"update_id":12,"channel_post":{"message_id":16,"date":1,"chat":{"id":-1001,"type":"channel"},"document":{"file_id":"","file_unique_id":"AgADnoid"}}}`,
	`{"update_id":13,"channel_post":{"message_id":17,"date":1,"chat":{"id":-1001,"type":"channel"},"document":{"file_id":"BQACAgQAAxkB","file_unique_id":"AgAD\u0000nul","file_name":"n\u0000.txt"}}}`,
	`{"update_id":0,"Channel_Post":{"message_id":18,"date":1,"chat":{"id":-1001,"type":"channel"},"document":{"file_id":"BQACAgQAAxkB","file_unique_id":"AgADcase"}}}`,
	// refused
	`{"channel_post":{"message_id":19,"date":1,"chat":{"id":-1001,"type":"channel"},"document":{"file_id":"BQACAgQAAxkB","file_unique_id":"AgADnouid"}}}`,
	`{"update_id":-1,"channel_post":{"message_id":20,"date":1,"chat":{"id":-1001,"type":"channel"},"document":{"file_id":"BQACAgQAAxkB","file_unique_id":"AgADneg"}}}`,
	`{"update_id":21,"channel_post":{"message_id":"21","date":1,"chat":{"id":-1001,"type":"channel"},"document":{"file_id":"BQACAgQAAxkB","file_unique_id":"AgADbad"}}}`,
	`{"update_id":22,"channel_post":{"message_id":22,"date":1,"chat":{"id":-1001,"type":"channel"},"document":{"file_id":"BQACAgQAAxkB","file_unique_id":"AgADtrunc"}}`,
}

// The lean read of a channel file gives exactly the sighting a full decode
// gives, and is taken for every channel file a full decode accepts.
func TestLeanParseMatchesFull(t *testing.T) {
	lean := 0
	for _, body := range channelUpdates {
		if checkLeanAgrees(t, []byte(body)) {
			lean++
		}
	}
	if lean != 9 {
		t.Fatalf("%d updates took the lean path, want the 9 channel files", lean)
	}
}

// checkLeanAgrees fails t unless parseChannelFile and parseFull agree on
// body; it reports whether the lean path was taken.
func checkLeanAgrees(t *testing.T, body []byte) bool {
	t.Helper()
	fullID, u, fullErr := parseFull(body)
	var want *jobs.Sighting
	if fullErr == nil {
		want = jobs.SightingOf(u)
	}
	id, got, ok := parseChannelFile(body)
	switch {
	case fullErr == nil && want != nil && !ok:
		t.Errorf("%s: a channel file the full decode accepts missed the lean path", body)
	case fullErr == nil && ok && (id != fullID || !reflect.DeepEqual(got, want)):
		t.Errorf("%s: lean %d %+v, full %d %+v", body, id, got, fullID, want)
	case ok && got == nil:
		t.Errorf("%s: lean path without a sighting", body)
	}
	// Through ParseUpdate, the answer is the full decode's whenever that
	// accepts (the lean path may accept a channel file whose other fields
	// the full decode refuses: nothing decodes those).
	pid, ps, perr := ParseUpdate(body)
	if fullErr == nil && (perr != nil || pid != fullID || !reflect.DeepEqual(ps, want)) {
		t.Errorf("%s: ParseUpdate %d %+v %v, full %d %+v", body, pid, ps, perr, fullID, want)
	}
	if fullErr != nil && !ok && (perr == nil || perr.Error() != fullErr.Error()) {
		t.Errorf("%s: ParseUpdate error %v, full %v", body, perr, fullErr)
	}
	return ok
}

func FuzzLeanParseAgrees(f *testing.F) {
	for _, b := range channelUpdates {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkLeanAgrees(t, body) })
}

// BenchmarkParseUpdate: the lean read of a channel file against the full
// decode it replaces, on the body the index bench posts.
func BenchmarkParseUpdate(b *testing.B) {
	fid := telegramtest.EncodeFileID(telegramtest.KindDocument, 4, 1, 1, nil)
	body := fmt.Appendf(nil, `{"update_id":1,"channel_post":{"message_id":1,"date":1700000000,"chat":{"id":-1001111111111,"type":"channel","title":"C"},"document":{"file_id":%q,"file_unique_id":"AgADbench000001","file_name":"file-1.mkv","mime_type":"video/x-matroska","file_size":1073741825}}}`, fid)
	b.Run("lean", func(b *testing.B) {
		for b.Loop() {
			if _, _, ok := parseChannelFile(body); !ok {
				b.Fatal("not lean")
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			if _, u, err := parseFull(body); err != nil || jobs.SightingOf(u) == nil {
				b.Fatal(err)
			}
		}
	})
}
