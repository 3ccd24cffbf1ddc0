package jobs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Path errors shown to admins. They name the path the admin typed, never
// anything the server resolved it to.
var (
	ErrFileNotFound = errors.New("File not found")
	ErrOutsideRoots = errors.New("path is outside the upload roots")
	ErrNoRoots      = errors.New("no upload roots configured (set UPLOAD_ROOTS)")
	ErrNotRegular   = errors.New("not a regular file")
)

// ResolveUploadPath confines an /upload path to the configured roots: ".."
// is refused outright, and the path is resolved through symlinks before the
// check, so a link inside a root cannot lead outside it. It returns the
// resolved path and the file's info.
func ResolveUploadPath(roots []string, p string) (string, fs.FileInfo, error) {
	if len(roots) == 0 {
		return "", nil, ErrNoRoots
	}
	if p == "" || !filepath.IsAbs(p) {
		return "", nil, fmt.Errorf("%w: give an absolute path", ErrOutsideRoots)
	}
	for _, part := range strings.Split(filepath.ToSlash(p), "/") {
		if part == ".." {
			return "", nil, fmt.Errorf("%w: \"..\" is not allowed", ErrOutsideRoots)
		}
	}
	clean := filepath.Clean(p)
	if !insideAny(roots, clean) {
		return "", nil, ErrOutsideRoots
	}
	// Where the path leads is decided before whether it exists: a link to
	// outside the roots gets the same answer whether or not its target is
	// there, so /upload cannot probe for files outside them.
	real, exists, err := resolveLinks(clean)
	if err != nil {
		return "", nil, fmt.Errorf("resolve path: %w", err)
	}
	var realRoots []string
	for _, r := range roots {
		if rr, err := filepath.EvalSymlinks(r); err == nil {
			realRoots = append(realRoots, rr)
		}
	}
	if !insideAny(realRoots, real) {
		return "", nil, fmt.Errorf("%w (through a symlink)", ErrOutsideRoots)
	}
	if !exists {
		return "", nil, ErrFileNotFound
	}
	info, err := os.Stat(real)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil, ErrFileNotFound
	}
	if err != nil {
		return "", nil, fmt.Errorf("stat: %w", err)
	}
	if !info.Mode().IsRegular() {
		return "", nil, ErrNotRegular
	}
	return real, info, nil
}

func insideAny(roots []string, p string) bool {
	for _, r := range roots {
		r = filepath.Clean(r)
		rel, err := filepath.Rel(r, p)
		if err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel) {
			return true
		}
	}
	return false
}

// resolveLinks resolves every symlink in the absolute path p, as the
// kernel would, and says whether it exists. Past the first missing
// component the rest is joined as written (it cannot hold a link).
func resolveLinks(p string) (string, bool, error) {
	pending := strings.Split(p, "/")
	cur := "/"
	for links := 0; len(pending) > 0; {
		name := pending[0]
		pending = pending[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return filepath.Join(append([]string{next}, pending...)...), false, nil
		}
		if err != nil {
			return "", false, err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > 255 {
			return "", false, errors.New("too many levels of symbolic links")
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", false, err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		pending = append(strings.Split(target, "/"), pending...)
	}
	return cur, true, nil
}
