// Package engine is the relationship graph as Trellis sees it: one Engine
// interface (check, bulk check, lookups, explain, relationship reads and
// writes, schema) implemented over SpiceDB's v1 API. SpiceDB runs embedded in
// the process (StartEmbedded, memdb or postgres datastore) or remotely; the
// same gRPC-backed implementation serves both.
//
// engine must not import api, directory, scim, federation or schema.
package engine
