package telegramtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/go-telegram/bot/models"
)

// FileKind is the kind of a Telegram file, as the Bot API types it.
type FileKind string

// File kinds the server knows.
const (
	KindDocument  FileKind = "document"
	KindVideo     FileKind = "video"
	KindAudio     FileKind = "audio"
	KindAnimation FileKind = "animation"
	KindPhoto     FileKind = "photo"
	KindVoice     FileKind = "voice"
	KindVideoNote FileKind = "video_note"
	KindSticker   FileKind = "sticker"
)

// tdlib's FileType numbers, used inside file_ids.
var fileTypeIDs = map[FileKind]int32{
	KindPhoto: 2, KindVoice: 3, KindVideo: 4, KindDocument: 5, KindSticker: 8,
	KindAudio: 9, KindAnimation: 10, KindVideoNote: 13,
}

var fileTypeNames = map[FileKind]string{
	KindPhoto: "Photo", KindVoice: "VoiceNote", KindVideo: "Video", KindDocument: "Document",
	KindSticker: "Sticker", KindAudio: "Audio", KindAnimation: "Animation", KindVideoNote: "VideoNote",
}

const (
	fileReferenceFlag = 1 << 25
	fileIDMajor       = 4
	fileIDMinor       = 54
)

// FileSpec describes a file to make known to the server with AddFile.
type FileSpec struct {
	Kind     FileKind // default KindDocument
	Name     string
	MimeType string
	Size     int64 // default len(Content)
	// Content, when set, is served by GET /file/bot<token>/<file_path>.
	Content []byte
	// UniqueKey identifies the underlying file: AddFile calls with the same
	// key (for other bots) get the same file_unique_id. Default: the
	// sha256 of Content, or Name when there is no content.
	UniqueKey string
	// Duration, Width, Height are for videos, animations and audio.
	Duration, Width, Height int
	// DC overrides the data centre encoded in the file_id.
	DC int
}

// FileRef is what AddFile made: the bot's file_id and the file's
// file_unique_id (the same for every bot).
type FileRef struct {
	FileID       string
	FileUniqueID string
	Kind         FileKind
	Size         int64
	Name         string
	MimeType     string
	DC           int
}

type fileRecord struct {
	FileRef
	owner                   int64 // bot id the file_id belongs to (0 = any)
	mediaID                 int64
	path                    string
	name                    string
	data                    []byte
	duration, width, height int
}

// AddFile makes a file known to the server as one the bot with token can
// send by file_id (Telegram file_ids are per bot). The same file for two
// bots gets two file_ids and one file_unique_id, as in Telegram.
func (s *Server) AddFile(token string, spec FileSpec) FileRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bots[token]
	if !ok {
		s.tb.Errorf("telegramtest: AddFile: unknown bot token")
		return FileRef{}
	}
	return s.addFileLocked(b.info.ID, spec).FileRef
}

func (s *Server) addFileLocked(owner int64, spec FileSpec) *fileRecord {
	if spec.Kind == "" {
		spec.Kind = KindDocument
	}
	if spec.Size == 0 {
		spec.Size = int64(len(spec.Content))
	}
	key := spec.UniqueKey
	if key == "" {
		if spec.Content != nil {
			sum := sha256.Sum256(spec.Content)
			key = hex.EncodeToString(sum[:])
		} else {
			key = "name:" + spec.Name + fmt.Sprint(spec.Size)
		}
	}
	dc := spec.DC
	if dc == 0 {
		dc = s.cfg.dc
	}
	sum := sha256.Sum256([]byte(key))
	mediaID := int64(binary.LittleEndian.Uint64(sum[:8]) &^ (1 << 63))
	s.fileSerial++
	accessHash := int64(binary.LittleEndian.Uint64(sha256Bytes(fmt.Sprintf("%s/%d", key, owner))[:8]))
	ref := FileRef{
		FileID:       EncodeFileID(spec.Kind, dc, mediaID, accessHash, sha256Bytes(fmt.Sprintf("ref/%s/%d", key, owner))[:20]),
		FileUniqueID: EncodeFileUniqueID(spec.Kind, mediaID),
		Kind:         spec.Kind,
		Size:         spec.Size,
		Name:         spec.Name,
		MimeType:     spec.MimeType,
		DC:           dc,
	}
	ext := path.Ext(spec.Name)
	rec := &fileRecord{
		FileRef:  ref,
		owner:    owner,
		mediaID:  mediaID,
		path:     fmt.Sprintf("%ss/file_%d%s", spec.Kind, s.fileSerial, ext),
		name:     spec.Name,
		data:     spec.Content,
		duration: spec.Duration, width: spec.Width, height: spec.Height,
	}
	if existing, ok := s.files[ref.FileID]; ok {
		return existing
	}
	s.files[ref.FileID] = rec
	return rec
}

func sha256Bytes(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// registerMediaLocked makes the media of a message known as file_ids of
// bot owner (0 = usable by any bot, when the owner is not known).
func (s *Server) registerMediaLocked(owner int64, m *models.Message) {
	add := func(kind FileKind, fileID, uniqueID, name, mimeType string, size int64, dur, w, h int) {
		if fileID == "" {
			return
		}
		if _, ok := s.files[fileID]; ok {
			return
		}
		s.fileSerial++
		s.files[fileID] = &fileRecord{
			FileRef:  FileRef{FileID: fileID, FileUniqueID: uniqueID, Kind: kind, Size: size, Name: name, MimeType: mimeType},
			owner:    owner,
			path:     fmt.Sprintf("%ss/file_%d%s", kind, s.fileSerial, path.Ext(name)),
			name:     name,
			duration: dur, width: w, height: h,
		}
	}
	if d := m.Document; d != nil {
		add(KindDocument, d.FileID, d.FileUniqueID, d.FileName, d.MimeType, d.FileSize, 0, 0, 0)
	}
	if v := m.Video; v != nil {
		add(KindVideo, v.FileID, v.FileUniqueID, v.FileName, v.MimeType, v.FileSize, v.Duration, v.Width, v.Height)
	}
	if a := m.Audio; a != nil {
		add(KindAudio, a.FileID, a.FileUniqueID, a.FileName, a.MimeType, a.FileSize, a.Duration, 0, 0)
	}
	if a := m.Animation; a != nil {
		add(KindAnimation, a.FileID, a.FileUniqueID, a.FileName, a.MimeType, a.FileSize, a.Duration, a.Width, a.Height)
	}
	if v := m.Voice; v != nil {
		add(KindVoice, v.FileID, v.FileUniqueID, "", v.MimeType, v.FileSize, v.Duration, 0, 0)
	}
	for _, p := range m.Photo {
		add(KindPhoto, p.FileID, p.FileUniqueID, "", "image/jpeg", int64(p.FileSize), 0, p.Width, p.Height)
	}
}

// EncodeFileID builds a file_id in Telegram's format (tdlib's
// serialisation, as decoded by Pyrogram and Telethon): file type with the
// file-reference flag, DC id, file reference, media id and access hash,
// zero-run-length encoded and base64url without padding. Code that reads
// the DC out of a file_id works on these ids as on real ones.
func EncodeFileID(kind FileKind, dc int, mediaID, accessHash int64, fileReference []byte) string {
	var buf bytes.Buffer
	typeID := fileTypeIDs[kind]
	if len(fileReference) > 0 {
		typeID |= fileReferenceFlag
	}
	_ = binary.Write(&buf, binary.LittleEndian, typeID)
	_ = binary.Write(&buf, binary.LittleEndian, int32(dc))
	if len(fileReference) > 0 {
		writeTLBytes(&buf, fileReference)
	}
	if kind == KindPhoto {
		// Photos carry a thumbnail source after the ids; a fixed "full
		// size, type y" source keeps the id decodable.
		_ = binary.Write(&buf, binary.LittleEndian, mediaID)
		_ = binary.Write(&buf, binary.LittleEndian, accessHash)
		_ = binary.Write(&buf, binary.LittleEndian, int32(1)) // thumbnail source: THUMBNAIL
		_ = binary.Write(&buf, binary.LittleEndian, int32(2)) // thumbnail file type: photo
		_ = binary.Write(&buf, binary.LittleEndian, int32('y'))
	} else {
		_ = binary.Write(&buf, binary.LittleEndian, mediaID)
		_ = binary.Write(&buf, binary.LittleEndian, accessHash)
	}
	buf.WriteByte(fileIDMinor)
	buf.WriteByte(fileIDMajor)
	return base64.RawURLEncoding.EncodeToString(rleEncode(buf.Bytes()))
}

// EncodeFileUniqueID builds a file_unique_id in Telegram's format: unique
// type (2 for documents, videos, audio and animations; 1 for photos)
// followed by the media id.
func EncodeFileUniqueID(kind FileKind, mediaID int64) string {
	var buf bytes.Buffer
	uniqueType := int32(2)
	if kind == KindPhoto {
		uniqueType = 1
	}
	_ = binary.Write(&buf, binary.LittleEndian, uniqueType)
	_ = binary.Write(&buf, binary.LittleEndian, mediaID)
	return base64.RawURLEncoding.EncodeToString(rleEncode(buf.Bytes()))
}

// DecodedFileID is what DecodeFileID reads from a file_id.
type DecodedFileID struct {
	TypeID     int32 // tdlib file type without flags (5 = document, 4 = video, …)
	DC         int
	MediaID    int64
	AccessHash int64
}

// DecodeFileID reads the type, DC, media id and access hash of a file_id
// made by EncodeFileID or by Telegram (documents, videos, audio,
// animations; version 4 ids).
func DecodeFileID(fileID string) (DecodedFileID, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(fileID, "="))
	if err != nil {
		return DecodedFileID{}, fmt.Errorf("decode file_id base64: %w", err)
	}
	data := rleDecode(raw)
	if len(data) < 2 || data[len(data)-1] != fileIDMajor {
		return DecodedFileID{}, errors.New("decode file_id: unsupported version")
	}
	data = data[:len(data)-2]
	r := bytes.NewReader(data)
	var typeID, dc int32
	if err := binary.Read(r, binary.LittleEndian, &typeID); err != nil {
		return DecodedFileID{}, fmt.Errorf("decode file_id type: %w", err)
	}
	if err := binary.Read(r, binary.LittleEndian, &dc); err != nil {
		return DecodedFileID{}, fmt.Errorf("decode file_id dc: %w", err)
	}
	out := DecodedFileID{TypeID: typeID &^ (fileReferenceFlag | 1<<24), DC: int(dc)}
	if typeID&fileReferenceFlag != 0 {
		if err := skipTLBytes(r); err != nil {
			return DecodedFileID{}, fmt.Errorf("decode file_id file reference: %w", err)
		}
	}
	if err := binary.Read(r, binary.LittleEndian, &out.MediaID); err != nil {
		return DecodedFileID{}, fmt.Errorf("decode file_id media id: %w", err)
	}
	if err := binary.Read(r, binary.LittleEndian, &out.AccessHash); err != nil {
		return DecodedFileID{}, fmt.Errorf("decode file_id access hash: %w", err)
	}
	return out, nil
}

func writeTLBytes(buf *bytes.Buffer, b []byte) {
	n := len(b)
	if n <= 253 {
		buf.WriteByte(byte(n))
		buf.Write(b)
		for pad := (n + 1) % 4; pad != 0 && pad < 4; pad++ {
			buf.WriteByte(0)
		}
		return
	}
	buf.Write([]byte{254, byte(n), byte(n >> 8), byte(n >> 16)})
	buf.Write(b)
	for pad := n % 4; pad != 0 && pad < 4; pad++ {
		buf.WriteByte(0)
	}
}

func skipTLBytes(r *bytes.Reader) error {
	first, err := r.ReadByte()
	if err != nil {
		return err
	}
	n, header := int(first), 1
	if first == 254 {
		var l [3]byte
		if _, err := r.Read(l[:]); err != nil {
			return err
		}
		n, header = int(l[0])|int(l[1])<<8|int(l[2])<<16, 4
	}
	total := header + n
	if pad := total % 4; pad != 0 {
		total += 4 - pad
	}
	_, err = r.Seek(int64(total-header), 1)
	return err
}

func rleEncode(b []byte) []byte {
	var out []byte
	zeros := 0
	flush := func() {
		for zeros > 0 {
			n := min(zeros, 255)
			out = append(out, 0, byte(n))
			zeros -= n
		}
	}
	for _, c := range b {
		if c == 0 {
			zeros++
			continue
		}
		flush()
		out = append(out, c)
	}
	flush()
	return out
}

func rleDecode(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		if b[i] == 0 && i+1 < len(b) {
			out = append(out, make([]byte, b[i+1])...)
			i++
			continue
		}
		out = append(out, b[i])
	}
	return out
}
