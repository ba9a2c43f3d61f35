//go:build linux

package pgtest

import "syscall"

// setParentDeathSignal has the kernel kill the server when the test binary dies.
func setParentDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
