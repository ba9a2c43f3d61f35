// Package federation is sign-in: per-organization SSO connections to customer
// IdPs (OIDC with go-oidc, SAML with crewjam/saml), domain discovery, the
// organization picker and hosted pages, and Trellis as an OpenID provider to
// applications (zitadel/oidc op: authorization code + PKCE, refresh rotation,
// userinfo, introspection, revocation, logout). It also holds the Signer: it
// issues short-lived user access tokens (ES256 JWTs, RFC 9068 "at+jwt"),
// verifies them, rotates its signing keys and publishes the public keys for
// /.well-known/jwks.json (ADR 0005). With a store, the keys are rows shared by
// every node, sealed under a key-encryption key (keystore.go, ADR 0013). The
// provider signs with the same keys through KeySource, and keeps its state —
// authorization requests and codes, grants, access and refresh tokens, IdP
// round trips in flight — in the store, so every node serves any step of a
// sign-in (grants.go, ADR 0016).
//
// federation must not import api, and never touches SpiceDB (engine)
// directly: users, memberships and roles that sign-in creates are written by
// directory.SignInSSO, and its own rows (connections, applications, policies)
// inside the directory's audited operations.
package federation
