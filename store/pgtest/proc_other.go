//go:build !unix

package pgtest

import (
	"fmt"
	"os"
	"syscall"
)

func platformSupported() error {
	return fmt.Errorf("%w: pgtest runs PostgreSQL on Unix systems only", ErrNotInstalled)
}

func sysProcAttr(*runAs) *syscall.SysProcAttr { return nil }

func killGroup(p *os.Process) { _ = p.Kill() }

func fileOwner(os.FileInfo) (int, bool) { return 0, false }
