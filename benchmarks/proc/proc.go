// Package proc reads what the benchmarks report of a process from Linux's
// /proc: CPU time (of one process, or of a server that forks a process per
// connection, as PostgreSQL does), children and peak resident set. Every
// figure is zero where /proc is absent or unreadable.
package proc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// stat is a process's fields from /proc/<pid>/stat after the command name
// (which is in parentheses and may hold spaces), nil when unreadable.
func stat(pid int) []string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	return strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
}

const ticksPerSecond = 100 // USER_HZ, 100 on Linux's mainstream architectures

func ticks(f []string, fields ...int) time.Duration {
	var sum int64
	for _, i := range fields {
		if i < len(f) {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			sum += n
		}
	}
	return time.Duration(sum) * time.Second / ticksPerSecond
}

// Fields of stat (stat(5)'s field number minus 3): ppid, utime, stime,
// cutime, cstime.
const (
	fPPID   = 1
	fUtime  = 11
	fStime  = 12
	fCutime = 13
	fCstime = 14
)

// CPUTime is the user+system CPU time process pid has used so far.
func CPUTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	return ticks(stat(pid), fUtime, fStime)
}

// TreeCPU is the CPU time of a server that forks a process per connection
// (PostgreSQL): the parent's own, its reaped children's (cutime, cstime) and
// its live children's.
func TreeCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	total := ticks(stat(pid), fUtime, fStime, fCutime, fCstime)
	for _, child := range Children(pid) {
		total += CPUTime(child)
	}
	return total
}

// Children lists the live processes whose parent is pid.
func Children(pid int) []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []int
	for _, d := range dirs {
		c, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if f := stat(c); len(f) > fPPID && f[fPPID] == strconv.Itoa(pid) {
			out = append(out, c)
		}
	}
	return out
}

// RSSPeak is a process's peak resident set (VmHWM) in MiB, 0 when unknown.
func RSSPeak(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
