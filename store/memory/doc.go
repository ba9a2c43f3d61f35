// Package memory is the in-process implementation of store.Store: plain maps
// behind one sync.RWMutex, an undo log that makes InTx all-or-nothing, and
// copies of every row on the way in and out so callers never share stored
// state. Nothing survives the process; it serves tests, development and the
// single-process demo, and it must pass store/conformance exactly as
// store/postgres does.
//
// memory imports store, audit, engine (value types only) and trellis (the
// sentinel errors). It must never import directory, api, federation or scim.
package memory
