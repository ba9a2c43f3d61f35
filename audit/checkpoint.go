package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Key signs the checkpoints of audit chains (HMAC-SHA256). It is configuration
// (derived from a secret given to the server), never stored beside the log: a
// database writer who rewrites events and recomputes their unkeyed hashes and
// the head cannot sign the result, and Key.Verify reports where it broke.
type Key []byte

// Seal appends ev to the chain whose newest event is prev, as Seal does, and
// signs the event's checkpoint and its HeadCheckpoint; it returns the chain's
// new head. ev's Organization names the chain ("" = the platform chain).
func (k Key) Seal(prev Head, ev *Event) Head {
	Seal(prev, ev)
	ev.Checkpoint = k.sign("trellis.audit.event", ev.Organization, ev.Seq, ev.Hash)
	ev.HeadCheckpoint = k.sign("trellis.audit.head", ev.Organization, ev.Seq, ev.Hash)
	return Head{Seq: ev.Seq, Hash: ev.Hash, Checkpoint: ev.HeadCheckpoint}
}

// sign is the hex HMAC of a JSON array of what it covers: the domain keeps an
// event's checkpoint from serving as a head's and the array keeps fields apart.
func (k Key) sign(domain, org string, seq int64, hash string) string {
	b, _ := json.Marshal([]any{domain, validUTF8(org), seq, validUTF8(hash)}) // strings and an int64
	m := hmac.New(sha256.New, k)
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

func (k Key) signed(got, domain, org string, seq int64, hash string) bool {
	return got != "" && hmac.Equal([]byte(got), []byte(k.sign(domain, org, seq, hash)))
}

// Verify checks org's chain as Verify does and, with the key, every event's
// checkpoint and the head's. It reports the first break, whichever check finds
// it: an event rewritten with its hashes (and those after it, and the head)
// recomputed breaks at that event; a deleted tail with the head moved back to
// the last event kept breaks at the head; an event or head without a
// checkpoint (written before checkpoints, or stripped) breaks there too. An
// empty chain with a zero head is valid.
func (k Key) Verify(org string, events []Event, head Head) Verification {
	v := Verify(events, head)
	for i, ev := range events {
		seq := int64(i) + 1
		if !v.Valid && *v.BrokenAt <= seq {
			break // the unkeyed break comes first
		}
		if !k.signed(ev.Checkpoint, "trellis.audit.event", org, ev.Seq, ev.Hash) {
			if ev.Checkpoint == "" {
				return broken(seq, i+1, "event %d carries no checkpoint", seq)
			}
			return broken(seq, i+1, "event %d's checkpoint does not match: it was rewritten (hashes recomputed) or moved from another chain", seq)
		}
	}
	if !v.Valid || head == (Head{}) {
		return v
	}
	if !k.signed(head.Checkpoint, "trellis.audit.head", org, head.Seq, head.Hash) {
		if head.Checkpoint == "" {
			return broken(head.Seq, len(events), "the head (seq %d) carries no checkpoint", head.Seq)
		}
		return broken(head.Seq, len(events), "the head's checkpoint does not match seq %d: the chain was rewritten or its tail deleted", head.Seq)
	}
	return v
}
