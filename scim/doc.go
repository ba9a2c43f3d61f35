// Package scim serves SCIM 2.0 (RFC 7643, RFC 7644) per organization at
// /scim/v2/{org}: Users, Groups, PATCH (with the Entra ID and Okta dialects),
// filters (parsed by github.com/scim2/filter-parser), paging, sorting,
// attribute projection, ETags and Bulk, plus the discovery endpoints.
//
// It speaks the protocol only. Every write goes through directory.Service
// (its SCIM methods run like every directory operation: authorized by
// effect, audited, applied through the outbox), so provisioning changes the
// graph under the same invariants as any other administrator. It imports
// directory and store types; never engine, api or SpiceDB.
package scim
