package audit

import "time"

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
	Details      map[string]any `json:"details,omitempty"`
	PrevHash     string         `json:"prevHash"`
	Hash         string         `json:"hash"`
}

// Head is the newest (seq, hash) of one organization's chain, stored beside the
// events so that truncating the tail of the log is detected too.
type Head struct {
	Seq  int64
	Hash string
}
