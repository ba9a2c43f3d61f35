// Package conformance is the one test suite every store.Store implementation
// must pass: store/memory and store/postgres run it in their tests. Run owns
// the observable behaviour of the contract in store.go (round trips,
// not-found and conflict errors, listing order, paging and filters, cascades,
// audit chains and cursors, the outbox, and transaction atomicity), so that
// callers can swap implementations without noticing.
//
// Beside Run are the tests every store shares outside it: RunTxLifecycle
// (panics, runtime.Goexit and ended contexts roll back; a Tx kept past its
// closure writes nothing), RunConcurrent, RunSeqsFromOne, and RunTamper for the
// audit test hooks of Tamperer; and fixtures (At, Org, MustTx, MustRead, Head)
// for each store's own tests.
//
// conformance imports store, audit, engine (value types only), trellis and
// testing. It must never import an implementation (store/memory,
// store/postgres) or directory, api, federation or scim.
package conformance
