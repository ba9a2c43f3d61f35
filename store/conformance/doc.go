// Package conformance is the one test suite every store.Store implementation
// must pass: store/memory runs it in its tests, store/postgres will too. It
// owns the observable behaviour of the contract in store.go (round trips,
// not-found and conflict errors, listing order, paging and filters, cascades,
// audit chains and cursors, the outbox, and transaction atomicity), so that
// callers can swap implementations without noticing.
//
// conformance imports store, audit, engine (value types only), trellis and
// testing. It must never import an implementation (store/memory,
// store/postgres) or directory, api, federation or scim.
package conformance
