package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// The profiling listener answers Go's pprof index on its own address and
// stops with the server; an empty address starts nothing.
func TestPprofListener(t *testing.T) {
	if bound, stop, err := startPprof("", slog.New(slog.DiscardHandler)); err != nil || bound != "" {
		t.Fatalf("empty address: bound %q, err %v; want nothing started", bound, err)
	} else {
		stop()
	}
	bound, stop, err := startPprof("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + bound + "/debug/pprof/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine") {
		t.Fatalf("GET /debug/pprof/: %d %.200s", resp.StatusCode, body)
	}
	stop()
	if resp, err := http.Get("http://" + bound + "/debug/pprof/"); err == nil {
		resp.Body.Close()
		t.Fatalf("after stop the listener still answers (%d)", resp.StatusCode)
	}
}
