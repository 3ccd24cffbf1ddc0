package r2

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Record is the JSON object stored per file at {folder}/{unique_id}.json. Its
// field names and order are the seed prototype's, so every reader that
// already parses the shared bucket (other deployments, the old Python bots,
// public lookup pages) keeps working. Duration, Width and Height are the
// only additions and are omitted when zero, so an audio/document record is
// byte-for-byte the seed's shape.
type Record struct {
	UniqueID          string     `json:"unique_id"`
	BotFileIDs        BotFileIDs `json:"bot_file_ids"`
	Caption           string     `json:"caption"`
	FileSizeBytes     int64      `json:"file_size_bytes"`
	FileType          string     `json:"file_type"`
	OriginalMessageID int64      `json:"original_message_id"`
	SourceChannelID   int64      `json:"source_channel_id"`
	FileName          string     `json:"file_name"`
	MimeType          string     `json:"mime_type"`
	Duration          int        `json:"duration,omitempty"`
	Width             int        `json:"width,omitempty"`
	Height            int        `json:"height,omitempty"`
}

// BotFileIDs maps "b_N_file_id" to bot N's own file_id for the file. It is a
// named type so it marshals in slot order (b_1, b_2, …, b_10, b_11) rather
// than encoding/json's byte order (b_1, b_10, b_11, b_2), which is what a
// person reading the object expects.
type BotFileIDs map[string]string

// SlotKey is the bot_file_ids key for a bot slot (1-based): SlotKey(3) is
// "b_3_file_id".
func SlotKey(slot int) string { return "b_" + strconv.Itoa(slot) + "_file_id" }

// ParseSlotKey is SlotKey's inverse; ok is false for a key not of that form.
func ParseSlotKey(key string) (slot int, ok bool) {
	s, found := strings.CutPrefix(key, "b_")
	if !found {
		return 0, false
	}
	s, found = strings.CutSuffix(s, "_file_id")
	if !found {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}

// MarshalJSON writes the keys in slot order; keys that are not slot keys
// (written by some other tool) follow in byte order, so nothing is dropped.
func (b BotFileIDs) MarshalJSON() ([]byte, error) {
	if b == nil {
		return []byte("{}"), nil
	}
	keys := make([]string, 0, len(b))
	for k := range b {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		si, oki := ParseSlotKey(keys[i])
		sj, okj := ParseSlotKey(keys[j])
		switch {
		case oki && okj:
			return si < sj
		case oki != okj:
			return oki
		default:
			return keys[i] < keys[j]
		}
	})
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		if err := writeJSONString(&buf, k); err != nil {
			return nil, err
		}
		buf.WriteByte(':')
		if err := writeJSONString(&buf, b[k]); err != nil {
			return nil, err
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func writeJSONString(buf *bytes.Buffer, s string) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("encode %q: %w", s, err)
	}
	buf.Truncate(buf.Len() - 1) // Encode appends a newline
	return nil
}

// Marshal encodes r exactly as it is stored: compact, field order as the
// seed, '<', '>' and '&' left as they are (the seed's Python writer does not
// escape them either).
func (r Record) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if r.BotFileIDs == nil {
		r.BotFileIDs = BotFileIDs{}
	}
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encode record %s: %w", r.UniqueID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// UnmarshalRecord decodes a stored object. Unknown fields are ignored so a
// newer writer's additions do not break an older reader.
func UnmarshalRecord(b []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("decode record: %w", err)
	}
	if r.BotFileIDs == nil {
		r.BotFileIDs = BotFileIDs{}
	}
	return r, nil
}

// mergeInto adds src's bot file ids that dst does not have yet and fills
// dst's empty metadata from src. It never replaces a value already stored:
// the first writer of a key wins, so two deployments whose slot b_1 is a
// different bot cannot keep overwriting each other. It reports whether dst
// changed (no change means no write is needed).
func mergeInto(dst *Record, src Record) bool {
	changed := false
	if dst.BotFileIDs == nil {
		dst.BotFileIDs = BotFileIDs{}
		changed = true
	}
	for k, v := range src.BotFileIDs {
		if v == "" {
			continue
		}
		if _, ok := dst.BotFileIDs[k]; !ok {
			dst.BotFileIDs[k] = v
			changed = true
		}
	}
	fillS := func(d *string, s string) {
		if *d == "" && s != "" {
			*d = s
			changed = true
		}
	}
	fillI := func(d *int64, s int64) {
		if *d == 0 && s != 0 {
			*d = s
			changed = true
		}
	}
	fillN := func(d *int, s int) {
		if *d == 0 && s != 0 {
			*d = s
			changed = true
		}
	}
	fillS(&dst.UniqueID, src.UniqueID)
	fillS(&dst.Caption, src.Caption)
	fillI(&dst.FileSizeBytes, src.FileSizeBytes)
	fillS(&dst.FileType, src.FileType)
	fillI(&dst.OriginalMessageID, src.OriginalMessageID)
	fillI(&dst.SourceChannelID, src.SourceChannelID)
	fillS(&dst.FileName, src.FileName)
	fillS(&dst.MimeType, src.MimeType)
	fillN(&dst.Duration, src.Duration)
	fillN(&dst.Width, src.Width)
	fillN(&dst.Height, src.Height)
	return changed
}
