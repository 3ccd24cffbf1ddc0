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
	// Links out of the root to a file that is not there: the same answer
	// as to one that is, or /upload would tell which files exist outside.
	must(os.Symlink(filepath.Join(outside, "nothing"), filepath.Join(root, "dangling")))
	must(os.Symlink("../secret/passwd", filepath.Join(root, "relative")))
	must(os.Symlink("../secret/nothing", filepath.Join(root, "relative-dangling")))
	must(os.Symlink("sub/../missing.bin", filepath.Join(root, "inside-dangling")))
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
		{filepath.Join(root, "escdir", "nothing"), jobs.ErrOutsideRoots},
		{filepath.Join(root, "dangling"), jobs.ErrOutsideRoots},
		{filepath.Join(root, "relative"), jobs.ErrOutsideRoots},
		{filepath.Join(root, "relative-dangling"), jobs.ErrOutsideRoots},
		{filepath.Join(root, "inside-dangling"), jobs.ErrFileNotFound},
		{filepath.Join(root, "video.mp4", "x"), jobs.ErrFileNotFound},
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
	// The admin sees the same reply for a link out whether its target
	// exists or not.
	_, _, errThere := jobs.ResolveUploadPath(roots, filepath.Join(root, "escape"))
	_, _, errMissing := jobs.ResolveUploadPath(roots, filepath.Join(root, "dangling"))
	if errThere.Error() != errMissing.Error() {
		t.Errorf("link out to an existing file: %q, to a missing one: %q", errThere, errMissing)
	}
	if _, _, err := jobs.ResolveUploadPath(nil, filepath.Join(root, "video.mp4")); !errors.Is(err, jobs.ErrNoRoots) {
		t.Errorf("no roots: %v", err)
	}
}
