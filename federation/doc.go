// Package federation is Trellis's side of identity federation: per-organization
// SSO connections to customer IdPs (OIDC and SAML, domain discovery, JIT
// membership — later) and Trellis as a token issuer. Today it holds the Signer:
// it issues short-lived user access tokens (ES256 JWTs, RFC 9068 "at+jwt"),
// verifies them, rotates its signing keys and publishes the public keys for
// /.well-known/jwks.json (ADR 0005). With a store, the keys are rows shared by
// every node, sealed under a key-encryption key (keystore.go, ADR 0013); it
// imports store for that alone.
//
// federation must not import api, and never touches SpiceDB (engine) directly:
// memberships and grants that SSO creates go through directory.
package federation
