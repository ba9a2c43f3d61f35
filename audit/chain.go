package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// atLayout is RFC 3339 with exactly six fractional digits: the precision
// PostgreSQL keeps, so the hashed form of At survives a round trip.
const atLayout = "2006-01-02T15:04:05.000000Z07:00"

// Seal appends ev to the chain whose newest event is prev (the zero Head for an
// empty chain): it sets Seq and PrevHash, normalizes At to UTC truncated to
// microseconds, and sets Hash. Seal does not set At or Organization; the caller
// does, before sealing.
func Seal(prev Head, ev *Event) {
	ev.Seq = prev.Seq + 1
	ev.PrevHash = prev.Hash
	ev.At = ev.At.UTC().Truncate(time.Microsecond)
	ev.Hash = HashOf(*ev)
}

// HashOf returns the lowercase hex SHA-256 of ev's canonical encoding: the JSON
// array
//
//	[seq, at, actor, impersonator, action, target, organization, details, prevHash]
//
// ev.Hash itself is not covered. JSON array encoding keeps field boundaries
// unambiguous. The encoding is chosen so that an event hashes the same after a
// round trip through JSON (NDJSON export, a jsonb column):
//
//   - at is RFC 3339 in UTC with exactly six fractional digits
//     ("2006-01-02T15:04:05.000000Z"), so sub-microsecond digits and the time
//     zone do not count;
//   - strings are hashed as encoding/json would store them: each invalid UTF-8
//     byte becomes U+FFFD;
//   - details is marshalled, unmarshalled into any without UseNumber, and
//     marshalled again, because decoding stored JSON yields float64 numbers:
//     int 3 and float64 3 hash the same, and so do integers beyond 2^53 that
//     round to the same float64 (store such values as strings if every digit
//     matters). Object keys come out sorted. Nil and empty details hash the same.
//
// Details that encoding/json cannot encode (NaN, channels, ...) cannot be stored
// or exported either; they hash as the string "unencodable details: " followed
// by the error, which no encodable details can equal.
func HashOf(ev Event) string {
	b, err := json.Marshal([]any{
		ev.Seq,
		ev.At.UTC().Format(atLayout),
		validUTF8(ev.Actor),
		validUTF8(ev.Impersonator),
		validUTF8(ev.Action),
		validUTF8(ev.Target),
		validUTF8(ev.Organization),
		canonicalDetails(ev.Details),
		validUTF8(ev.PrevHash),
	})
	if err != nil {
		// Every element is an int64, a string or a value decoded from JSON.
		panic("audit: encoding canonical event: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// canonicalDetails returns details as a JSON decode would see them; see HashOf.
func canonicalDetails(details map[string]any) any {
	if len(details) == 0 {
		return map[string]any{}
	}
	b, err := json.Marshal(details)
	if err != nil {
		return "unencodable details: " + err.Error()
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return "unencodable details: " + err.Error()
	}
	return v
}

// validUTF8 replaces each invalid UTF-8 byte of s with U+FFFD, as encoding/json
// does when it marshals s.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s { // ranging yields U+FFFD for each invalid byte
		b.WriteRune(r)
	}
	return b.String()
}

// Verification is the result of Verify.
type Verification struct {
	// Valid reports whether the chain and its head are intact.
	Valid bool `json:"valid"`
	// Events is how many events Verify examined, including the one where the
	// chain broke; len(events) when Valid.
	Events int `json:"events"`
	// BrokenAt is the seq where the chain first breaks; nil when Valid.
	BrokenAt *int64 `json:"brokenAt,omitempty"`
	// Reason says, naming the seq, what is wrong; empty when Valid.
	Reason string `json:"reason,omitempty"`
}

// Verify checks one organization's chain, events in stored order, against its
// head. It reports the first break: an event missing, out of order, from another
// organization, not linked to its predecessor or modified, or a head that
// disagrees with the last event (the tail was deleted). An empty chain with a
// zero head is valid.
func Verify(events []Event, head Head) Verification {
	var prevHash string
	for i, ev := range events {
		want := int64(i) + 1
		examined := i + 1
		switch {
		case ev.Seq != want:
			return broken(want, examined, "event %d missing or out of order (found seq %d)", want, ev.Seq)
		case ev.Organization != events[0].Organization:
			return broken(want, examined, "event %d belongs to organization %q, not %q", want, ev.Organization, events[0].Organization)
		case ev.PrevHash != prevHash && i == 0:
			return broken(want, examined, "event 1 has a prevHash but starts the chain")
		case ev.PrevHash != prevHash:
			return broken(want, examined, "prevHash of event %d does not match event %d", want, want-1)
		case HashOf(ev) != ev.Hash:
			return broken(want, examined, "event %d was modified", want)
		}
		prevHash = ev.Hash
	}

	last := int64(len(events))
	n := len(events)
	switch {
	case head.Seq > last && last == 0:
		return broken(1, n, "chain is empty but head is at seq %d: events were deleted", head.Seq)
	case head.Seq > last:
		return broken(last+1, n, "events after %d were deleted (head is at seq %d)", last, head.Seq)
	case head.Seq < last:
		return broken(max(head.Seq, 0)+1, n, "head is at seq %d but the chain runs to event %d", head.Seq, last)
	case head.Hash != prevHash && last == 0:
		return broken(1, n, "chain is empty but head has a hash")
	case head.Hash != prevHash:
		return broken(last, n, "head hash does not match event %d", last)
	}
	return Verification{Valid: true, Events: n}
}

func broken(at int64, examined int, format string, args ...any) Verification {
	return Verification{Events: examined, BrokenAt: &at, Reason: fmt.Sprintf(format, args...)}
}
