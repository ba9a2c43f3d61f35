package audit

import (
	"strings"
	"testing"
)

var testKey = Key("0123456789abcdef0123456789abcdef")

// keyed returns a three-event chain of "acme" sealed with testKey, and its head.
func keyed() ([]Event, Head) {
	events, _ := sealed()
	events = clone(events)
	var head Head
	for i := range events {
		events[i].Seq, events[i].PrevHash, events[i].Hash = 0, "", ""
		head = testKey.Seal(head, &events[i])
	}
	return events, head
}

// rehash recomputes every hash from event i on and the head's hash, as a
// database writer without the key can: the unkeyed chain verifies again.
func rehash(events []Event, head Head, from int) ([]Event, Head) {
	for j := from; j < len(events); j++ {
		if j > 0 {
			events[j].PrevHash = events[j-1].Hash
		}
		events[j].Hash = HashOf(events[j])
	}
	head.Hash = events[len(events)-1].Hash
	return events, head
}

func TestKeyedChainVerifies(t *testing.T) {
	events, head := keyed()
	for i, ev := range events {
		if len(ev.Checkpoint) != 64 || ev.Checkpoint == head.Checkpoint {
			t.Errorf("event %d: checkpoint %q (head's %q)", i+1, ev.Checkpoint, head.Checkpoint)
		}
	}
	if got := testKey.Verify("acme", events, head); !got.Valid || got.Events != 3 {
		t.Fatalf("Verify = %+v, want valid with 3 events", got)
	}
	if got := Verify(events, head); !got.Valid {
		t.Fatalf("the unkeyed Verify = %+v: a keyed chain is a chain", got)
	}
	if got := testKey.Verify("acme", nil, Head{}); !got.Valid {
		t.Errorf("an empty chain: %+v", got)
	}
	if got := Key("another key").Verify("acme", events, head); got.Valid || *got.BrokenAt != 1 {
		t.Errorf("another key: %+v, want broken at 1", got)
	}
	if got := testKey.Verify("other", events, head); got.Valid || *got.BrokenAt != 1 {
		t.Errorf("verified as another organization's chain: %+v, want broken at 1", got)
	}
}

func TestKeyedVerifyDetectsRewrites(t *testing.T) {
	tests := []struct {
		name     string
		tamper   func([]Event, Head) ([]Event, Head)
		brokenAt int64
		reason   string
	}{
		{"rewrite event 2, rehash the rest and the head", func(e []Event, h Head) ([]Event, Head) {
			e[1].Actor = "user:mallory"
			return rehash(e, h, 1)
		}, 2, "event 2's checkpoint does not match"},
		{"rewrite the last event and the head", func(e []Event, h Head) ([]Event, Head) {
			e[2].Action = "noop"
			return rehash(e, h, 2)
		}, 3, "event 3's checkpoint does not match"},
		{"delete the tail, head moved back with the event's checkpoint", func(e []Event, h Head) ([]Event, Head) {
			return e[:2], Head{Seq: 2, Hash: e[1].Hash, Checkpoint: e[1].Checkpoint}
		}, 2, "the head's checkpoint does not match seq 2"},
		{"strip every checkpoint", func(e []Event, h Head) ([]Event, Head) {
			for i := range e {
				e[i].Checkpoint = ""
			}
			h.Checkpoint = ""
			return e, h
		}, 1, "event 1 carries no checkpoint"},
		{"strip the head's checkpoint", func(e []Event, h Head) ([]Event, Head) {
			h.Checkpoint = ""
			return e, h
		}, 3, "the head (seq 3) carries no checkpoint"},
		{"an unkeyed break before a checkpoint break", func(e []Event, h Head) ([]Event, Head) {
			e[0].Target = "edited" // not rehashed
			e[2].Actor = "user:mallory"
			e, h = rehash(e, h, 2)
			return e, h
		}, 1, "event 1 was modified"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events, head := keyed()
			events, head = tt.tamper(clone(events), head)
			got := testKey.Verify("acme", events, head)
			if got.Valid || got.BrokenAt == nil || *got.BrokenAt != tt.brokenAt {
				t.Fatalf("Verify = %+v, want broken at %d", got, tt.brokenAt)
			}
			if !strings.Contains(got.Reason, tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", got.Reason, tt.reason)
			}
		})
	}
	// the rewrite a database writer can do is invisible to the unkeyed Verify
	events, head := keyed()
	events[1].Actor = "user:mallory"
	events, head = rehash(events, head, 1)
	if got := Verify(events, head); !got.Valid {
		t.Fatalf("rehashed chain: unkeyed Verify = %+v; the test is not playing the attack", got)
	}
}

func TestKeyedCheckpointSurvivesNDJSON(t *testing.T) {
	events, head := keyed()
	var b strings.Builder
	if err := WriteNDJSON(&b, events); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"checkpoint":"`) {
		t.Errorf("the export lacks checkpoints: %s", b.String())
	}
	got, err := ReadNDJSON(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if v := testKey.Verify("acme", got, head); !v.Valid {
		t.Errorf("the exported chain does not verify with the key: %+v", v)
	}
}
