// Package store defines how the directory and the audit log are persisted: the
// row types, one transaction interface (Store.InTx) made of narrow role
// interfaces, and the outbox that carries each operation's tuple updates to the
// engine; schema versions, signing keys and the OpenID provider's state
// (providergrants.go); and the outbox claim and tenant
// confinement that let several nodes share one store (ADR 0013).
// store/memory and store/postgres implement it; store/conformance is the
// one test suite both must pass. store imports engine and audit for their value
// types only; it never imports directory, api, federation or scim.
package store
