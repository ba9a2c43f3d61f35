package audit

import (
	"encoding/json"
	"time"
)

// Event is one entry of an organization's append-only, hash-chained audit log.
// Hash covers every other field, PrevHash links it to the event before it in the
// same organization's chain, so editing, deleting or reordering events breaks
// the chain at a point Verify reports.
type Event struct {
	Seq          int64          `json:"seq"`
	At           time.Time      `json:"at"`
	Actor        string         `json:"actor"`
	Impersonator string         `json:"impersonator,omitempty"`
	Action       string         `json:"action"`
	Target       string         `json:"target"`
	Organization string         `json:"organization"`
	Details      map[string]any `json:"details"` // {} when the action has none
	PrevHash     string         `json:"prevHash"`
	Hash         string         `json:"hash"`
	// Checkpoint is a keyed signature of (organization, seq, hash) (see Key):
	// whoever rewrites the event, even recomputing every hash after it,
	// cannot make a matching one without the key. Hash does not cover it.
	Checkpoint string `json:"checkpoint,omitempty"`
	// HeadCheckpoint is the checkpoint of the chain's head once this event is
	// appended, set by Key.Seal for the store to keep with the head. Stores
	// never keep it with the event: a row that held it would let whoever
	// deletes the tail move the head back with a valid checkpoint.
	HeadCheckpoint string `json:"-"`
}

// MarshalJSON writes the event with details always an object ({} when the
// action records none), as clients read it.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event // without this method
	p := plain(e)
	if p.Details == nil {
		p.Details = map[string]any{}
	}
	return json.Marshal(p)
}

// Head is the newest (seq, hash) of one organization's chain, stored beside the
// events so that truncating the tail of the log is detected too. Checkpoint is
// its keyed signature (see Key), distinct from any event's: an older event's
// checkpoint cannot stand in for the head's after the tail is deleted.
type Head struct {
	Seq        int64
	Hash       string
	Checkpoint string
}
