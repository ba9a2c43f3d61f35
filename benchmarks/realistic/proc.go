package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/trellis-iam/trellis/benchmarks/proc"
)

// pinning is the CPU the servers (and PostgreSQL) run on: "1" when the
// machine has two CPUs or more and taskset is installed (the driver itself is
// pinned to CPU 0 by benchmarks/realistic.sh), else "" (unpinned).
func pinning(enabled bool) string {
	if !enabled {
		return ""
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return ""
	}
	if n := numCPU(); n < 2 {
		return ""
	}
	return "1"
}

func numCPU() int {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 1
	}
	return bytes.Count(raw, []byte("\nprocessor")) + 1
}

// pinTree pins pid and its current children to cpu (new children inherit it).
func pinTree(pid int, cpu string) error {
	if cpu == "" {
		return nil
	}
	for _, p := range append([]int{pid}, proc.Children(pid)...) {
		if out, err := exec.Command("taskset", "-a", "-p", "-c", cpu, strconv.Itoa(p)).CombinedOutput(); err != nil {
			return fmt.Errorf("taskset %d: %v: %s", p, err, out)
		}
	}
	return nil
}

// server is one arm's process.
type server struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// start runs argv (pinned to cpu when set) with its output in logPath; the
// process dies with the driver (Pdeathsig) even if the driver is killed.
func start(argv []string, cpu, logPath string) (*server, error) {
	if cpu != "" {
		argv = append([]string{"taskset", "-c", cpu}, argv...)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	s := &server{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	return s, nil
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop interrupts the process and kills it if it has not exited after 10 s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// awaitReady polls url until it answers 200 (or ok says the body is ready),
// the process exits, or timeout passes.
func (s *server) awaitReady(ctx context.Context, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("%s exited before it was ready; see %s", s.cmd.Path, s.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %v; see %s", url, timeout, s.log)
}
