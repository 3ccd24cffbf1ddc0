package jobs_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ferry-dev/ferry/jobs"
)

func TestResolveUploadPath(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "content")
	outside := filepath.Join(base, "secret")
	for _, d := range []string{root, outside, filepath.Join(root, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "video.mp4"))
	write(filepath.Join(root, "sub", "a.bin"))
	write(filepath.Join(outside, "passwd"))
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(filepath.Join(outside, "passwd"), filepath.Join(root, "escape")))
	must(os.Symlink(outside, filepath.Join(root, "escdir")))
	must(os.Symlink(filepath.Join(root, "video.mp4"), filepath.Join(root, "alias.mp4")))
	roots := []string{root}

	cases := []struct {
		path string
		want error
	}{
		{filepath.Join(root, "video.mp4"), nil},
		{filepath.Join(root, "sub", "a.bin"), nil},
		{filepath.Join(root, "alias.mp4"), nil},
		{filepath.Join(root, "missing.mp4"), jobs.ErrFileNotFound},
		{filepath.Join(root, "..", "secret", "passwd"), jobs.ErrOutsideRoots},
		{filepath.Join(root, "sub") + "/../video.mp4", jobs.ErrOutsideRoots},
		{filepath.Join(outside, "passwd"), jobs.ErrOutsideRoots},
		{filepath.Join(root, "escape"), jobs.ErrOutsideRoots},
		{filepath.Join(root, "escdir", "passwd"), jobs.ErrOutsideRoots},
		{root + "x/video.mp4", jobs.ErrOutsideRoots},
		{"video.mp4", jobs.ErrOutsideRoots},
		{filepath.Join(root, "sub"), jobs.ErrNotRegular},
	}
	for _, tc := range cases {
		got, info, err := jobs.ResolveUploadPath(roots, tc.path)
		if tc.want == nil {
			if err != nil || info.Size() != 1 || filepath.Dir(got) == outside {
				t.Errorf("%s: %v %v", tc.path, got, err)
			}
			continue
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.path, err, tc.want)
		}
	}
	if _, _, err := jobs.ResolveUploadPath(nil, filepath.Join(root, "video.mp4")); !errors.Is(err, jobs.ErrNoRoots) {
		t.Errorf("no roots: %v", err)
	}
}
