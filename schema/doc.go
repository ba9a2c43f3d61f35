// Package schema owns Trellis's authorization schema: the fixed system part
// (system.zed, embedded), its composition with the provider's app part,
// validation with SpiceDB's own compiler, diffs, and the version history.
//
// It must not import api, directory, scim or federation; it reaches the graph
// only through the narrow Graph interface it declares, and keeps versions in a
// store.Store when given one (shared by every node, ADR 0013).
package schema
