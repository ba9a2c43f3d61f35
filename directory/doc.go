// Package directory owns organizations, users, memberships, groups, custom
// roles, invitations, domains, service accounts and API keys, and the rules
// around them: every operation authorizes its caller through the graph (a
// customer admin manages its org and sub-orgs, never its parent or siblings;
// another org's objects are not found; nobody grants what they do not hold),
// then commits its rows, its audit event and an outbox of tuple updates in one
// store transaction, and waits for the outbox relay to apply them to the engine.
// It imports store, audit, engine and schema; never api, federation or scim.
package directory
