// Package audit owns the audit event and its per-organization hash chain:
// sealing an event onto a chain, verifying a chain (which edit, deletion or
// reordering broke it and where), and NDJSON export. Persistence is store's job;
// audit imports nothing of Trellis.
package audit
