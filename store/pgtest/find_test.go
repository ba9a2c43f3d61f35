package pgtest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fakeBinaries(t *testing.T, dir string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindBinaries(t *testing.T) {
	root := t.TempDir()
	fakeBinaries(t, filepath.Join(root, "9.6", "bin"), "postgres", "initdb")
	fakeBinaries(t, filepath.Join(root, "15", "bin"), "postgres", "initdb")
	fakeBinaries(t, filepath.Join(root, "16", "bin"), "postgres") // no initdb: unusable
	fakeBinaries(t, filepath.Join(root, "path"), "postgres", "initdb")

	old := debianBinGlob
	t.Cleanup(func() { debianBinGlob = old })
	debianBinGlob = filepath.Join(root, "*", "bin")

	t.Setenv("PATH", filepath.Join(root, "nothing-here"))
	if dir, err := findBinaries(); err != nil || dir != filepath.Join(root, "15", "bin") {
		t.Errorf("Debian layout: %q, %v; want the newest complete version, 15", dir, err)
	}
	t.Setenv("PATH", filepath.Join(root, "path"))
	if dir, err := findBinaries(); err != nil || dir != filepath.Join(root, "path") {
		t.Errorf("on PATH: %q, %v; want PATH first", dir, err)
	}
}

func TestNotInstalled(t *testing.T) {
	old := debianBinGlob
	t.Cleanup(func() { debianBinGlob = old })
	debianBinGlob = filepath.Join(t.TempDir(), "*", "bin")
	t.Setenv("PATH", t.TempDir())

	s, err := StartServer()
	if err == nil {
		_ = s.Stop()
		t.Fatal("StartServer found PostgreSQL where there is none")
	}
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("StartServer without PostgreSQL: %v; want ErrNotInstalled saying how to install it", err)
	}
}
