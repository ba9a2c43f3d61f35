// Package audit owns the audit event and its per-organization hash chain:
// sealing an event onto a chain, verifying a chain (which edit, deletion or
// reordering broke it and where), keyed checkpoints of events and heads (Key:
// a rewrite with recomputed hashes is caught too, ADR 0011), and NDJSON
// export. Persistence is store's job; audit imports nothing of Trellis.
package audit
