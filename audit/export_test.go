package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestNDJSONRoundTrip(t *testing.T) {
	events, head := sealed()
	var buf bytes.Buffer
	if err := WriteNDJSON(&buf, events); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.SplitAfter(out, "\n")
	if len(lines) != 4 || lines[3] != "" {
		t.Fatalf("want 3 newline-terminated lines, got %q", out)
	}
	for _, line := range lines[:3] {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil || obj["hash"] == nil {
			t.Fatalf("line %q is not an event object: %v", line, err)
		}
	}

	got, err := ReadNDJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if v := Verify(got, head); !v.Valid || v.Events != 3 {
		t.Fatalf("Verify after round trip = %+v, want valid", v)
	}
	for i := range got {
		if !got[i].At.Equal(events[i].At) {
			t.Errorf("event %d: At = %v, want %v", i+1, got[i].At, events[i].At)
		}
	}
	if n, ok := got[1].Details["count"].(float64); !ok || n != 3 {
		t.Errorf(`details["count"] = %#v, want float64 3 (the case HashOf canonicalizes)`, got[1].Details["count"])
	}

	// The round trip must not make tampering invisible.
	got[1].Details["count"] = 4.0
	if v := Verify(got, head); v.Valid || *v.BrokenAt != 2 {
		t.Errorf("Verify after tampering = %+v, want broken at 2", v)
	}
}

func TestReadNDJSON(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int    // events read
		wantErr string // substring of the error; "" for none
	}{
		{"empty", "", 0, ""},
		{"blank lines and CRLF", "\n{\"seq\":1}\r\n\n{\"seq\":2}\n", 2, ""},
		{"no final newline", `{"seq":1}`, 1, ""},
		{"malformed", "{\"seq\":1}\n{\"seq\":\n", 0, "line 2"},
		{"two objects on a line", `{"seq":1} {"seq":2}`, 0, "line 1"},
		{"null", "{\"seq\":1}\nnull\n", 0, "line 2: null"},
		{"array", "[]\n", 0, "line 1"},
		{"bad time", `{"at":"yesterday"}`, 0, "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadNDJSON(strings.NewReader(tt.in))
			if tt.wantErr == "" {
				if err != nil || len(got) != tt.want {
					t.Fatalf("ReadNDJSON = %d events, %v; want %d events", len(got), err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ReadNDJSON error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestWriteNDJSONError(t *testing.T) {
	ev := Event{Seq: 7, Details: map[string]any{"f": func() {}}}
	if err := WriteNDJSON(&bytes.Buffer{}, []Event{ev}); err == nil || !strings.Contains(err.Error(), "event 7") {
		t.Errorf("WriteNDJSON error = %v, want one naming event 7", err)
	}
}

func FuzzReadNDJSON(f *testing.F) {
	events, _ := sealed()
	var buf bytes.Buffer
	if err := WriteNDJSON(&buf, events); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("null\n{}\n"))
	f.Add([]byte(`{"seq":1,"at":"2026-01-01T00:00:00.1234567+05:00","actor":"a\ud800","details":{"n":1e308,"m":[1,{"x":null}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		events, err := ReadNDJSON(bytes.NewReader(data))
		if err != nil {
			return
		}
		Verify(events, Head{}) // must not panic
		// Whatever was read must hash the same after another round trip.
		var out bytes.Buffer
		if err := WriteNDJSON(&out, events); err != nil {
			t.Fatalf("WriteNDJSON of events read from NDJSON: %v", err)
		}
		again, err := ReadNDJSON(&out)
		if err != nil || len(again) != len(events) {
			t.Fatalf("ReadNDJSON of %q = %d events, %v; want %d", out.String(), len(again), err, len(events))
		}
		for i := range events {
			if HashOf(events[i]) != HashOf(again[i]) {
				t.Fatalf("event %d hashes differently after a round trip: %+v vs %+v", i, events[i], again[i])
			}
		}
	})
}

func ExampleSeal() {
	var head Head // an organization's empty chain
	var events []Event
	for i, action := range []string{"org.create", "member.add"} {
		ev := Event{
			At:           time.Date(2026, 1, 2, 3, 4, 5, 6789, time.UTC).Add(time.Duration(i) * time.Minute),
			Actor:        "user:alice",
			Action:       action,
			Target:       "org:acme",
			Organization: "acme",
			Details:      map[string]any{"n": i},
		}
		Seal(head, &ev)
		head = Head{Seq: ev.Seq, Hash: ev.Hash}
		events = append(events, ev)
		fmt.Printf("%d %s prev=%.8q hash=%.8s\n", ev.Seq, ev.At.Format(time.RFC3339Nano), ev.PrevHash, ev.Hash)
	}
	v := Verify(events, head)
	fmt.Println(v.Valid, v.Events)

	events[0].Actor = "user:mallory"
	v = Verify(events, head)
	fmt.Println(v.Valid, *v.BrokenAt, v.Reason)
	// Output:
	// 1 2026-01-02T03:04:05.000006Z prev="" hash=d54f4dc1
	// 2 2026-01-02T03:05:05.000006Z prev="d54f4dc1" hash=a8294649
	// true 2
	// false 1 event 1 was modified
}
