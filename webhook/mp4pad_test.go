package webhook_test

import (
	"encoding/binary"
	"errors"
	"io"
	"sort"
)

// padMP4 makes a big valid MP4 out of a small faststart one, so a browser
// must ask for a range to seek: the media data is split at the chunk
// nearest its middle into two mdat boxes with a free box of pad bytes
// between them (zeros, never stored), and every chunk offset after the
// split (stco) moves by the bytes inserted. Layout:
// [ftyp][moov'][mdat: first half][free: pad][mdat: second half].
func padMP4(orig []byte, pad int64) (io.ReaderAt, int64, error) {
	type box struct {
		typ        string
		start, end int64
	}
	children := func(from, to int64) []box {
		var out []box
		for off := from; off+8 <= to; {
			size := int64(binary.BigEndian.Uint32(orig[off:]))
			if size < 8 || off+size > to {
				break
			}
			out = append(out, box{string(orig[off+4 : off+8]), off, off + size})
			off += size
		}
		return out
	}
	var moov, mdat *box
	top := children(0, int64(len(orig)))
	for i := range top {
		switch top[i].typ {
		case "moov":
			moov = &top[i]
		case "mdat":
			mdat = &top[i]
		}
	}
	if moov == nil || mdat == nil || moov.start > mdat.start {
		return nil, 0, errors.New("padMP4: want a faststart MP4 (moov before mdat)")
	}
	out := append([]byte(nil), orig...)
	var stcos []int64 // offsets of stco entry fields
	var walk func(from, to int64)
	walk = func(from, to int64) {
		for _, b := range children(from, to) {
			switch b.typ {
			case "trak", "mdia", "minf", "stbl":
				walk(b.start+8, b.end)
			case "stco":
				n := int64(binary.BigEndian.Uint32(orig[b.start+12:]))
				for i := range n {
					stcos = append(stcos, b.start+16+4*i)
				}
			}
		}
	}
	walk(moov.start+8, moov.end)
	if len(stcos) == 0 {
		return nil, 0, errors.New("padMP4: no stco chunk offsets")
	}
	offs := make([]int64, len(stcos))
	for i, p := range stcos {
		offs[i] = int64(binary.BigEndian.Uint32(orig[p:]))
	}
	sorted := append([]int64(nil), offs...)
	sort.Slice(sorted, func(a, b int) bool { return sorted[a] < sorted[b] })
	split := sorted[len(sorted)/2]
	insert := make([]byte, 8) // free box header; the zeros follow; then the second mdat header
	delta := 8 + pad + 8
	binary.BigEndian.PutUint32(insert, uint32(8+pad))
	copy(insert[4:], "free")
	mdat2 := make([]byte, 8)
	binary.BigEndian.PutUint32(mdat2, uint32(8+mdat.end-split))
	copy(mdat2[4:], "mdat")
	for i, p := range stcos {
		if offs[i] >= split {
			binary.BigEndian.PutUint32(out[p:], uint32(offs[i]+delta))
		}
	}
	binary.BigEndian.PutUint32(out[mdat.start:], uint32(split-mdat.start))
	segs := []segment{
		{data: out[:split]}, {data: insert}, {zeros: pad}, {data: mdat2}, {data: out[split:]},
	}
	var size int64
	for i := range segs {
		segs[i].at = size
		size += segs[i].len()
	}
	return segmented(segs), size, nil
}

type segment struct {
	at    int64
	data  []byte
	zeros int64
}

func (s segment) len() int64 {
	if s.data != nil {
		return int64(len(s.data))
	}
	return s.zeros
}

type segmented []segment

func (ss segmented) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for _, s := range ss {
		if n == len(p) {
			break
		}
		end := s.at + s.len()
		pos := off + int64(n)
		if pos >= end || pos < s.at {
			continue
		}
		k := int(min(int64(len(p)-n), end-pos))
		if s.data != nil {
			copy(p[n:n+k], s.data[pos-s.at:])
		} else {
			clear(p[n : n+k])
		}
		n += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
