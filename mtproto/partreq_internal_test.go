package mtproto

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/gotd/td/bin"
	"github.com/gotd/td/tg"
)

// TestPartRequestEncodesLikeGotd: the encoder that reads a part straight
// into gotd's buffer must put on the wire exactly what the generated
// request types do, for every length class of TL bytes, into a reused
// buffer that holds old bytes (the padding must still be zeros).
func TestPartRequestEncodesLikeGotd(t *testing.T) {
	file := make([]byte, 3*PartSize)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range file {
		file[i] = byte(rng.Uint32())
	}
	src := bytes.NewReader(file)
	dirty := &bin.Buffer{Buf: bytes.Repeat([]byte{0xAA}, 2*PartSize)}
	for _, n := range []int{1, 3, 253, 254, 255, 256, 1000, 1023, PartSize - 1, PartSize - 3, PartSize} {
		for _, big := range []bool{true, false} {
			off := int64(PartSize + 7)
			data := file[off : off+int64(n)]
			var want bin.Buffer
			if big {
				_ = (&tg.UploadSaveBigFilePartRequest{FileID: 42, FilePart: 5, FileTotalParts: 9, Bytes: data}).Encode(&want)
			} else {
				_ = (&tg.UploadSaveFilePartRequest{FileID: 42, FilePart: 5, Bytes: data}).Encode(&want)
			}
			for _, held := range []bool{false, true} {
				p := &partRequest{big: big, fileID: 42, part: 5, totalParts: 9, n: n, src: src, off: off}
				if held {
					p.data = data
				}
				dirty.Buf = dirty.Buf[:0]
				if err := p.Encode(dirty); err != nil {
					t.Fatalf("n=%d big=%v held=%v: %v", n, big, held, err)
				}
				if !bytes.Equal(dirty.Buf, want.Buf) {
					t.Fatalf("n=%d big=%v held=%v: encoding differs from gotd's (%d vs %d bytes)", n, big, held, len(dirty.Buf), len(want.Buf))
				}
				if id, _ := (&bin.Buffer{Buf: want.Buf}).PeekID(); p.TypeID() != id {
					t.Fatalf("TypeID %x, gotd's %x", p.TypeID(), id)
				}
				if spare := cap(dirty.Buf) - len(dirty.Buf); !held && n > 253 && spare < encodeSlack {
					t.Fatalf("n=%d: %d bytes spare after the part, want >= %d", n, spare, encodeSlack)
				}
			}
		}
	}
}

// TestPartRequestShortReadIsAnError: a file that shrank under the upload
// fails the part (as a read error, not a network one) instead of sending
// stale bytes from the reused buffer.
func TestPartRequestShortReadIsAnError(t *testing.T) {
	file := bytes.NewReader(make([]byte, PartSize+100))
	p := &partRequest{big: true, fileID: 1, part: 1, totalParts: 2, n: PartSize, src: file, off: PartSize}
	var b bin.Buffer
	err := p.Encode(&b)
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Encode of a short part: err = %v, want EOF", err)
	}
	if p.readError() == nil {
		t.Fatal("read error not recorded for sendPart")
	}
}
