package audit

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.FixedZone("CET", 3600))

// sealed returns a sealed three-event chain of organization "acme" and its head.
func sealed() ([]Event, Head) {
	events := []Event{
		{At: t0, Actor: "user:alice", Action: "org.create", Target: "org:acme", Organization: "acme"},
		{At: t0.Add(time.Second), Actor: "user:alice", Action: "member.add", Target: "user:bob", Organization: "acme",
			Details: map[string]any{"role": "admin", "count": 3}},
		{At: t0.Add(2 * time.Second), Actor: "user:root", Impersonator: "user:support", Action: "member.remove",
			Target: "user:bob", Organization: "acme", Details: map[string]any{"reason": "left", "nested": map[string]any{"n": 1.5}}},
	}
	var head Head
	for i := range events {
		Seal(head, &events[i])
		head = Head{Seq: events[i].Seq, Hash: events[i].Hash}
	}
	return events, head
}

// clone deep-copies events so a test can tamper with them.
func clone(events []Event) []Event {
	out := make([]Event, len(events))
	for i, ev := range events {
		if ev.Details != nil {
			d := make(map[string]any, len(ev.Details))
			for k, v := range ev.Details {
				d[k] = v
			}
			ev.Details = d
		}
		out[i] = ev
	}
	return out
}

func TestSealBuildsValidChain(t *testing.T) {
	events, head := sealed()
	var prevHash string
	for i, ev := range events {
		if ev.Seq != int64(i)+1 {
			t.Errorf("event %d: Seq = %d", i, ev.Seq)
		}
		if ev.PrevHash != prevHash {
			t.Errorf("event %d: PrevHash = %q, want %q", i, ev.PrevHash, prevHash)
		}
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(ev.Hash) {
			t.Errorf("event %d: Hash = %q, want 64 lowercase hex digits", i, ev.Hash)
		}
		if ev.At.Location() != time.UTC || ev.At.Nanosecond()%1000 != 0 {
			t.Errorf("event %d: At = %v, want UTC truncated to microseconds", i, ev.At)
		}
		prevHash = ev.Hash
	}
	if got := events[0].At; !got.Equal(t0.Truncate(time.Microsecond)) {
		t.Errorf("At = %v, want %v", got, t0.Truncate(time.Microsecond))
	}
	if got := Verify(events, head); !got.Valid || got.Events != 3 || got.BrokenAt != nil || got.Reason != "" {
		t.Errorf("Verify = %+v, want valid with 3 events", got)
	}
}

func TestVerifyEmptyChain(t *testing.T) {
	if got := Verify(nil, Head{}); !got.Valid || got.Events != 0 {
		t.Errorf("Verify(nil, zero head) = %+v, want valid", got)
	}
	for _, head := range []Head{{Seq: 2, Hash: "x"}, {Hash: "x"}} {
		got := Verify(nil, head)
		if got.Valid || got.BrokenAt == nil || *got.BrokenAt != 1 {
			t.Errorf("Verify(nil, %+v) = %+v, want broken at 1", head, got)
		}
	}
}

func TestVerifyDetectsFieldEdits(t *testing.T) {
	edits := map[string]func(*Event){
		"seq":           func(ev *Event) { ev.Seq += 10 },
		"at":            func(ev *Event) { ev.At = ev.At.Add(time.Microsecond) },
		"actor":         func(ev *Event) { ev.Actor = "user:mallory" },
		"impersonator":  func(ev *Event) { ev.Impersonator += "x" },
		"action":        func(ev *Event) { ev.Action = "noop" },
		"target":        func(ev *Event) { ev.Target = "user:carol" },
		"organization":  func(ev *Event) { ev.Organization = "evil" },
		"details value": func(ev *Event) { ev.Details = map[string]any{"count": 4} },
		"details added": func(ev *Event) { ev.Details = map[string]any{"role": "admin", "count": 3, "extra": true} },
		"hash":          func(ev *Event) { ev.Hash = strings.Repeat("0", 64) },
	}
	for name, edit := range edits {
		for seq := int64(1); seq <= 3; seq++ {
			t.Run(fmt.Sprintf("%s/%d", name, seq), func(t *testing.T) {
				events, head := sealed()
				events = clone(events)
				before := HashOf(events[seq-1])
				edit(&events[seq-1])
				if name != "hash" && HashOf(events[seq-1]) == before {
					t.Fatalf("edit did not change the hash; test is vacuous")
				}
				if seq == 3 && name == "hash" {
					// The last event's own hash is compared against the head instead.
					head.Hash = events[2].Hash
				}
				got := Verify(events, head)
				if got.Valid || got.BrokenAt == nil || *got.BrokenAt != seq {
					t.Fatalf("Verify = %+v, want broken at %d", got, seq)
				}
				if !strings.Contains(got.Reason, fmt.Sprint(seq)) {
					t.Errorf("Reason %q does not name seq %d", got.Reason, seq)
				}
			})
		}
	}
}

func TestVerifyDetectsChainTampering(t *testing.T) {
	tests := []struct {
		name     string
		tamper   func([]Event, Head) ([]Event, Head)
		brokenAt int64
		reason   string
	}{
		{"delete first", func(e []Event, h Head) ([]Event, Head) { return e[1:], h }, 1, "event 1 missing"},
		{"delete middle", func(e []Event, h Head) ([]Event, Head) { return append(e[:1], e[2:]...), h }, 2, "event 2 missing"},
		{"delete last", func(e []Event, h Head) ([]Event, Head) { return e[:2], h }, 3, "events after 2 were deleted"},
		{"delete all", func(e []Event, h Head) ([]Event, Head) { return nil, h }, 1, "chain is empty"},
		{"swap 2 and 3", func(e []Event, h Head) ([]Event, Head) { e[1], e[2] = e[2], e[1]; return e, h }, 2, "out of order"},
		{"change prevHash", func(e []Event, h Head) ([]Event, Head) { e[2].PrevHash = e[0].Hash; return e, h }, 3, "prevHash of event 3 does not match event 2"},
		{"prevHash on first", func(e []Event, h Head) ([]Event, Head) { e[0].PrevHash = "x"; return e, h }, 1, "event 1 has a prevHash"},
		{"rehash tampered event", func(e []Event, h Head) ([]Event, Head) {
			e[1].Actor = "user:mallory"
			e[1].Hash = HashOf(e[1])
			return e, h
		}, 3, "prevHash of event 3 does not match event 2"},
		{"rehash tampered last event", func(e []Event, h Head) ([]Event, Head) {
			e[2].Action = "noop"
			e[2].Hash = HashOf(e[2])
			return e, h
		}, 3, "head hash does not match event 3"},
		{"event of another organization", func(e []Event, h Head) ([]Event, Head) {
			other := Event{At: t0, Actor: "user:eve", Action: "x", Organization: "other"}
			Seal(Head{Seq: 1, Hash: e[0].Hash}, &other)
			e[1] = other
			return e, h
		}, 2, `organization "other"`},
		{"head behind", func(e []Event, h Head) ([]Event, Head) { return e, Head{Seq: 1, Hash: e[0].Hash} }, 2, "head is at seq 1"},
		{"zero head", func(e []Event, h Head) ([]Event, Head) { return e, Head{} }, 1, "head is at seq 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, head := sealed()
			events, head = tt.tamper(clone(events), head)
			got := Verify(events, head)
			if got.Valid || got.BrokenAt == nil || *got.BrokenAt != tt.brokenAt {
				t.Fatalf("Verify = %+v, want broken at %d", got, tt.brokenAt)
			}
			if !strings.Contains(got.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", got.Reason, tt.reason)
			}
		})
	}
}

func TestVerifyEventsCount(t *testing.T) {
	events, head := sealed()
	events = clone(events)
	events[1].Target = "x"
	if got := Verify(events, head); got.Events != 2 {
		t.Errorf("Events = %d, want 2 (examined up to the break)", got.Events)
	}
	if got := Verify(events[:1], head); got.Events != 1 {
		t.Errorf("Events = %d, want 1 (truncated chain)", got.Events)
	}
}

func TestHashOfFieldBoundaries(t *testing.T) {
	base := Event{Seq: 1, At: t0}
	tests := []struct {
		name string
		a, b func(*Event)
	}{
		{"actor|action",
			func(e *Event) { e.Actor, e.Action = "a|b", "c" },
			func(e *Event) { e.Actor, e.Action = "a", "b|c" }},
		{"actor/impersonator shift",
			func(e *Event) { e.Actor, e.Impersonator = "ab", "" },
			func(e *Event) { e.Actor, e.Impersonator = "a", "b" }},
		{"quote injection",
			func(e *Event) { e.Actor, e.Action = `a","b`, "" },
			func(e *Event) { e.Actor, e.Action = "a", "b" }},
		{"target vs organization",
			func(e *Event) { e.Target = "acme" },
			func(e *Event) { e.Organization = "acme" }},
		{"details key vs value",
			func(e *Event) { e.Details = map[string]any{"a": "b"} },
			func(e *Event) { e.Details = map[string]any{"a\":\"b": ""} }},
		{"details string vs number",
			func(e *Event) { e.Details = map[string]any{"n": "3"} },
			func(e *Event) { e.Details = map[string]any{"n": 3} }},
		{"empty details vs unencodable",
			func(e *Event) {},
			func(e *Event) { e.Details = map[string]any{"n": math.NaN()} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := base, base
			tt.a(&a)
			tt.b(&b)
			if HashOf(a) == HashOf(b) {
				t.Errorf("%+v and %+v hash the same", a, b)
			}
		})
	}
}

func TestHashOfEquivalentEvents(t *testing.T) {
	base := Event{Seq: 2, At: t0, Actor: "user:alice", Action: "a", Organization: "acme", PrevHash: "p"}
	tests := []struct {
		name string
		a, b func(*Event)
	}{
		{"int vs float64", func(e *Event) { e.Details = map[string]any{"n": 3} }, func(e *Event) { e.Details = map[string]any{"n": 3.0} }},
		{"int64 vs uint8", func(e *Event) { e.Details = map[string]any{"n": int64(7)} }, func(e *Event) { e.Details = map[string]any{"n": uint8(7)} }},
		{"nested ints", func(e *Event) { e.Details = map[string]any{"l": []int{1, 2}} }, func(e *Event) { e.Details = map[string]any{"l": []any{1.0, 2.0}} }},
		{"int64 beyond 2^53 vs its float64", func(e *Event) { e.Details = map[string]any{"n": int64(1<<53 + 1)} }, func(e *Event) { e.Details = map[string]any{"n": float64(1<<53 + 1)} }},
		{"raw JSON vs decoded", func(e *Event) { e.Details = map[string]any{"o": json.RawMessage(`{ "b" : 1, "a" : 2.50 }`)} }, func(e *Event) { e.Details = map[string]any{"o": map[string]any{"a": 2.5, "b": 1}} }},
		{"invalid UTF-8 in details", func(e *Event) { e.Details = map[string]any{"s\xff": "a\xfe"} }, func(e *Event) { e.Details = map[string]any{"s\uFFFD": "a\uFFFD"} }},
		{"nil vs empty details", func(e *Event) { e.Details = nil }, func(e *Event) { e.Details = map[string]any{} }},
		{"time zone", func(e *Event) {}, func(e *Event) { e.At = e.At.In(time.FixedZone("X", -7*3600)) }},
		{"sub-microsecond", func(e *Event) {}, func(e *Event) { e.At = e.At.Truncate(time.Microsecond) }},
		{"hash not covered", func(e *Event) {}, func(e *Event) { e.Hash = "anything" }},
		{"invalid UTF-8 as stored", func(e *Event) { e.Actor = "a\xff" }, func(e *Event) { e.Actor = "a\uFFFD" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := base, base
			tt.a(&a)
			tt.b(&b)
			if HashOf(a) != HashOf(b) {
				t.Errorf("%+v and %+v hash differently", a, b)
			}
		})
	}
	// Guard against a HashOf that ignores details altogether.
	a, b := base, base
	a.Details, b.Details = map[string]any{"n": 3}, map[string]any{"n": 4}
	if HashOf(a) == HashOf(b) {
		t.Error("details 3 and 4 hash the same")
	}
}

func FuzzHashOf(f *testing.F) {
	f.Add(int64(1), int64(0), "user:alice", "", "org.create", "org:acme", "acme", "k", "v", 3.0, "")
	f.Add(int64(-1), int64(math.MaxInt64), "a\xff", "\x00", "<&>", `"`, "\u2028", "", "\xfe", math.Inf(1), "p")
	f.Fuzz(func(t *testing.T, seq, nanos int64, actor, imp, action, target, org, key, sval string, num float64, prev string) {
		ev := Event{Seq: seq, At: time.Unix(0, nanos), Actor: actor, Impersonator: imp, Action: action,
			Target: target, Organization: org, Details: map[string]any{key: sval, key + "n": num}, PrevHash: prev}
		h := HashOf(ev)
		if len(h) != 64 || h != HashOf(ev) {
			t.Fatalf("HashOf = %q, not a stable SHA-256 hex digest", h)
		}
		// A sealed event must verify after an NDJSON round trip, whenever it can be exported.
		Seal(Head{Hash: prev}, &ev)
		var buf strings.Builder
		if err := WriteNDJSON(&buf, []Event{ev}); err != nil {
			return // e.g. NaN in details: not exportable
		}
		got, err := ReadNDJSON(strings.NewReader(buf.String()))
		if err != nil {
			t.Fatalf("ReadNDJSON(%q): %v", buf.String(), err)
		}
		if len(got) != 1 || HashOf(got[0]) != ev.Hash {
			t.Fatalf("hash changed in NDJSON round trip of %q", buf.String())
		}
	})
}
