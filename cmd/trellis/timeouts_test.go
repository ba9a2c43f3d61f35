package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFinding9SlowBodyIsCutOff is issue 13's finding 9 as the attacker ran it:
// an unauthenticated POST /v1/check declares a 100-byte body and trickles it a
// byte at a time, far slower than the read timeout. Before serve set
// ReadTimeout, net/http waited for the whole body before it answered the 401
// (it drains a small unread body to keep the connection), so the connection
// and its goroutine were held for as long as the client liked. Now the server
// answers and closes the connection about --read-timeout after the request began.
func TestFinding9SlowBodyIsCutOff(t *testing.T) {
	cfg := defaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.ReadHeaderTimeout, cfg.ReadTimeout = time.Second, time.Second
	base, _, _, _ := startServe(t, cfg)

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "POST /v1/check HTTP/1.1\r\nHost: trellis\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// one byte every 250 ms: the whole body would take 25 s
	const every, size = 250 * time.Millisecond, 100
	sent, stop := make(chan int, 1), make(chan struct{})
	go func() {
		n := 0
		defer func() { sent <- n }()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n < size {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{' '}); err != nil {
				return // the server closed the connection
			}
			n++
		}
	}()

	// the bound: the read timeout plus slack for a loaded -race machine, still
	// far below the 25 s the trickle needs
	bound := cfg.ReadTimeout + 8*time.Second
	_ = conn.SetReadDeadline(start.Add(bound))
	rd := bufio.NewReader(conn)
	resp, respErr := http.ReadResponse(rd, nil)
	if respErr == nil {
		_, respErr = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if respErr == nil { // the server must close the connection after answering
			_, respErr = rd.ReadByte()
		}
	}
	elapsed := time.Since(start)
	close(stop)
	n := <-sent

	var ne net.Error
	if errors.As(respErr, &ne) && ne.Timeout() {
		t.Fatalf("the server still held the connection %v after the request began (%d of %d body bytes sent)", elapsed.Round(time.Millisecond), n, size)
	}
	if resp != nil && resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("answer to the slow unauthenticated body: %d, want 401, 408 or 400", resp.StatusCode)
	}
	if n >= size {
		t.Fatalf("the whole body was sent (%d bytes in %v): the timeout never cut it off", n, elapsed)
	}
	if elapsed < cfg.ReadTimeout-100*time.Millisecond {
		t.Errorf("cut off after %v, before the %v read timeout: is the test measuring something else?", elapsed, cfg.ReadTimeout)
	}
	status := "closed without an answer"
	if resp != nil {
		status = resp.Status
	}
	t.Logf("cut off after %v (%s), %d of %d body bytes sent", elapsed.Round(time.Millisecond), status, n, size)
}
