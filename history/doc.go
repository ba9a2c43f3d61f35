// Package history keeps the relationship changelog and answers from it what
// the graph held at a past time (ADR 0017). A Recorder follows the engine's
// watch stream — every change whatever wrote it: the directory's outbox, raw
// writes, SCIM, SSO, another node — and appends each committed transaction,
// as the tuples it touched and deleted with their expiries and caveats, to
// the store with the watch cursor it runs through. State folds the changelog
// up to a time; Replay loads what a question depends on into a scratch engine.
//
// It imports engine and store; never api or directory.
package history
