package mtproto

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/abema/go-mp4"
)

// ErrNotVideo is returned by ProbeVideo for a file with no video track.
var ErrNotVideo = errors.New("no video track")

// ErrNoFFmpeg is returned when a step needs ffmpeg/ffprobe and it is not
// installed; callers go on without (no thumbnail, sent as a document).
var ErrNoFFmpeg = errors.New("ffmpeg/ffprobe not installed")

// MimeByExt guesses a MIME type from a file name; Telegram uses it to pick
// the player.
func MimeByExt(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".mp4", ".m4v":
		return "video/mp4"
	case ".mov":
		return "video/quicktime"
	case ".mkv":
		return "video/x-matroska"
	case ".webm":
		return "video/webm"
	case ".avi":
		return "video/x-msvideo"
	case ".mp3":
		return "audio/mpeg"
	case ".zip":
		return "application/zip"
	case ".pdf":
		return "application/pdf"
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".png":
		return "image/png"
	}
	return "application/octet-stream"
}

// ProbeMP4 reads duration and the video track's size from an MP4/MOV
// (ISO BMFF) stream in Go, without ffprobe: mvhd for the duration, the
// first track whose handler is "vide" for width/height (tkhd, 16.16).
func ProbeMP4(r io.ReadSeeker) (*VideoMeta, error) {
	boxes, err := mp4.ExtractBoxesWithPayload(r, nil, []mp4.BoxPath{
		{mp4.BoxTypeMoov(), mp4.BoxTypeMvhd()},
		{mp4.BoxTypeMoov(), mp4.BoxTypeTrak(), mp4.BoxTypeTkhd()},
		{mp4.BoxTypeMoov(), mp4.BoxTypeTrak(), mp4.BoxTypeMdia(), mp4.BoxTypeHdlr()},
		{mp4.BoxTypeMoov(), mp4.BoxTypeTrak(), mp4.BoxTypeMdia(), mp4.BoxTypeMdhd()},
	})
	if err != nil {
		return nil, fmt.Errorf("probe mp4: %w", err)
	}
	meta := &VideoMeta{}
	var haveMvhd, found bool
	var curW, curH int
	var curDur float64
	for _, b := range boxes {
		switch p := b.Payload.(type) {
		case *mp4.Mvhd:
			if p.Timescale > 0 {
				meta.Duration = float64(p.GetDuration()) / float64(p.Timescale)
				haveMvhd = true
			}
		case *mp4.Tkhd:
			curW, curH, curDur = int(p.Width>>16), int(p.Height>>16), 0
		case *mp4.Mdhd:
			if p.Timescale > 0 {
				curDur = float64(p.GetDuration()) / float64(p.Timescale)
			}
		case *mp4.Hdlr:
			if !found && string(p.HandlerType[:]) == "vide" && curW > 0 && curH > 0 {
				meta.Width, meta.Height, found = curW, curH, true
				if !haveMvhd {
					meta.Duration = curDur
				}
			}
		}
	}
	if !found {
		return nil, ErrNotVideo
	}
	return meta, nil
}

// ProbeVideo returns the video metadata of the file at path: MP4/MOV in Go,
// other containers through ffprobe when it is installed (ErrNoFFmpeg
// otherwise).
func ProbeVideo(ctx context.Context, path string) (*VideoMeta, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".mp4", ".m4v", ".mov":
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("probe video: %w", err)
		}
		defer f.Close()
		return ProbeMP4(f)
	}
	return ffprobe(ctx, path)
}

// ffprobe probes path (a file or a URL).
func ffprobe(ctx context.Context, path string) (*VideoMeta, error) {
	bin, err := exec.LookPath("ffprobe")
	if err != nil {
		return nil, ErrNoFFmpeg
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-v", "error", "-select_streams", "v:0",
		"-show_entries", "stream=width,height:format=duration", "-of", "json", path)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ffprobe %s: %w", filepath.Base(path), err)
	}
	var res struct {
		Streams []struct {
			Width  int `json:"width"`
			Height int `json:"height"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("ffprobe output: %w", err)
	}
	if len(res.Streams) == 0 || res.Streams[0].Width == 0 {
		return nil, ErrNotVideo
	}
	d, _ := strconv.ParseFloat(res.Format.Duration, 64)
	return &VideoMeta{Duration: d, Width: res.Streams[0].Width, Height: res.Streams[0].Height}, nil
}

// Thumbnail writes a JPEG thumbnail (≤320 px wide, the first second of the
// video) next to dir with ffmpeg; ErrNoFFmpeg when it is not installed.
func Thumbnail(ctx context.Context, path, dir string) (string, error) {
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		return "", ErrNoFFmpeg
	}
	out := filepath.Join(dir, filepath.Base(path)+".thumb.jpg")
	cmd := exec.CommandContext(ctx, bin, "-v", "error", "-y", "-ss", "1", "-i", path,
		"-frames:v", "1", "-vf", "scale='min(320,iw)':-2", "-q:v", "5", out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		// A video shorter than a second has no frame at 1s: take the first.
		cmd = exec.CommandContext(ctx, bin, "-v", "error", "-y", "-i", path,
			"-frames:v", "1", "-vf", "scale='min(320,iw)':-2", "-q:v", "5", out)
		if msg2, err2 := cmd.CombinedOutput(); err2 != nil {
			return "", fmt.Errorf("ffmpeg thumbnail: %w: %s %s", err2, bytes.TrimSpace(msg), bytes.TrimSpace(msg2))
		}
	}
	return out, nil
}

// isMP4 tells an ISO BMFF file (MP4, MOV, M4V) by name or MIME type.
func isMP4(name, mime string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".mp4", ".m4v", ".mov":
		return true
	}
	return mime == "video/mp4" || mime == "video/quicktime"
}

// ProbeVideoReader returns the video metadata of a file read at random
// (a RemoteFile: every read is a download): MP4/MOV in Go, which reads the
// boxes' headers and the moov wherever it is (for an MP4 indexed at its
// end, the last chunks), other containers through ffprobe over a loopback
// stream of r (ErrNoFFmpeg without it). Nothing is written to disk.
func ProbeVideoReader(ctx context.Context, r io.ReaderAt, size int64, name, mime string) (*VideoMeta, error) {
	if isMP4(name, mime) {
		return ProbeMP4(io.NewSectionReader(r, 0, size))
	}
	if _, err := exec.LookPath("ffprobe"); err != nil {
		return nil, ErrNoFFmpeg
	}
	var meta *VideoMeta
	err := serveLoopback(ctx, r, size, name, func(url string) error {
		var err error
		meta, err = ffprobe(ctx, url)
		return err
	})
	return meta, err
}

// ThumbnailFromReader makes a JPEG thumbnail (≤320 px wide, at 1 s or the
// first frame) of a video read at random, with no temporary file: ffmpeg
// reads the video from a loopback HTTP server that serves r with Range
// support (so it can seek to an index at the end), and writes the JPEG to
// its stdout. ErrNoFFmpeg when ffmpeg is not installed.
func ThumbnailFromReader(ctx context.Context, r io.ReaderAt, size int64, name string) ([]byte, error) {
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		return nil, ErrNoFFmpeg
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var jpeg []byte
	err = serveLoopback(ctx, r, size, name, func(url string) error {
		run := func(seek bool) ([]byte, error) {
			args := []string{"-v", "error", "-nostdin"}
			if seek {
				args = append(args, "-ss", "1")
			}
			args = append(args, "-i", url, "-frames:v", "1", "-vf", "scale='min(320,iw)':-2", "-q:v", "5",
				"-f", "image2pipe", "-vcodec", "mjpeg", "pipe:1")
			var out, msg bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Stdout, cmd.Stderr = &out, &msg
			if err := cmd.Run(); err != nil {
				return nil, fmt.Errorf("ffmpeg thumbnail: %w: %s", err, bytes.TrimSpace(msg.Bytes()))
			}
			if out.Len() < 2 || out.Bytes()[0] != 0xFF || out.Bytes()[1] != 0xD8 {
				return nil, fmt.Errorf("ffmpeg thumbnail: no JPEG (%d bytes): %s", out.Len(), bytes.TrimSpace(msg.Bytes()))
			}
			return out.Bytes(), nil
		}
		var err error
		if jpeg, err = run(true); err != nil && ctx.Err() == nil {
			// A video shorter than a second has no frame at 1 s.
			jpeg, err = run(false)
		}
		return err
	})
	return jpeg, err
}

// serveLoopback serves r at a secret path on 127.0.0.1 for as long as fn
// runs: how ffmpeg/ffprobe read a file that is not on disk, with seeks
// (Range requests) that a pipe cannot give.
func serveLoopback(ctx context.Context, r io.ReaderAt, size int64, name string, fn func(url string) error) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("loopback stream: %w", err)
	}
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		_ = l.Close()
		return fmt.Errorf("loopback stream: %w", err)
	}
	path := "/" + hex.EncodeToString(tok[:]) + strings.ToLower(filepath.Ext(name))
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.URL.Path != path {
				http.NotFound(w, req)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			http.ServeContent(w, req, "", time.Time{}, io.NewSectionReader(r, 0, size))
		})}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	err = fn("http://" + l.Addr().String() + path)
	_ = srv.Close()
	<-done
	return err
}
