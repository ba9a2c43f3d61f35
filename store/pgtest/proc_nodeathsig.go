//go:build unix && !linux

package pgtest

import "syscall"

// setParentDeathSignal: no parent-death signal outside Linux; Stop (and the
// process group) cleans up.
func setParentDeathSignal(*syscall.SysProcAttr) {}
