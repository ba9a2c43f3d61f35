package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// WriteNDJSON writes events as NDJSON: each event's JSON object on its own
// newline-terminated line. ReadNDJSON reads it back, and Verify can check the
// result offline.
func WriteNDJSON(w io.Writer, events []Event) error {
	enc := json.NewEncoder(w) // Encode appends the newline
	for _, ev := range events {
		if err := enc.Encode(ev); err != nil {
			return fmt.Errorf("audit: writing event %d: %w", ev.Seq, err)
		}
	}
	return nil
}

// ReadNDJSON reads events written by WriteNDJSON, one JSON object per line.
// Blank lines are skipped; the last line need not end in a newline. Numbers in
// details decode as float64, which HashOf is built for.
func ReadNDJSON(r io.Reader) ([]Event, error) {
	br := bufio.NewReader(r)
	var events []Event
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			var ev *Event
			if err := json.Unmarshal(b, &ev); err != nil {
				return nil, fmt.Errorf("audit: NDJSON line %d: %w", line, err)
			}
			if ev == nil {
				return nil, fmt.Errorf("audit: NDJSON line %d: null, want an event object", line)
			}
			events = append(events, *ev)
		}
		if errors.Is(err, io.EOF) {
			return events, nil
		}
		if err != nil {
			return nil, fmt.Errorf("audit: reading NDJSON line %d: %w", line, err)
		}
	}
}
