// Package directory owns organizations, users, memberships, groups, custom
// roles, invitations, domains, service accounts and API keys, delegation and
// impersonation, and the rules around them. Every operation authorizes its
// caller through the graph (a customer admin manages its org and sub-orgs,
// never its parent or siblings; another org's objects are not found), then
// commits its rows, its audit event and an outbox of tuple updates in one
// store transaction, and waits for the outbox relay to apply them.
//
// Before the transaction commits, run weighs the operation's net tuple
// changes (effects.go) and enforces these invariants, whatever the endpoint:
//
//   - Grant bound: every (subject, organization, permission) any subject
//     gains — directly, through a group, a nested group, a role or its edit, a
//     service account, an invitation, a delegation, a move — the acting
//     principal held on that organization (access: manage_members), or it
//     governs it. Permissions that inherit down the tree are needed on the
//     whole subtree. The provider key is exempt.
//   - Revoke bound: a principal takes from a subject only what it holds there.
//   - No self-grant: a principal widens its own access, or that of a set it
//     belongs to, only where it governs; otherwise another administrator must.
//   - Impersonations act inside their organization's subtree, within their
//     scope, grant nothing beyond plain access and mint no lasting authority
//     (delegations, keys, tokens, roles, invitations, policy, SSO connections,
//     SCIM mappings); their tokens
//     name them and die with them; platform staff are impersonated only by
//     platform admins.
//   - Delegations name every delegation they draw on, expire no later than
//     the earliest, never widen a local grant to a subtree, and are revoked
//     with any of them; an invitation is weighed against its inviter's
//     authority when accepted, limited as the API key it was sent with is
//     then (storedAuthority), and an SSO sign-in against whoever last
//     configured its connection, with their key.
//   - Consent: users join an organization only when its admin can already see
//     them, their email domain is verified by it or an ancestor, or they
//     accept an invitation; others answer as unknown users.
//   - An organization's approval policies change only by its own admins.
//   - Relationships the directory cannot weigh are refused (fail closed).
//
// It imports store, audit, engine and schema; never api, federation or scim.
package directory
