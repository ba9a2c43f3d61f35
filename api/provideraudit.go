package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/directory"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/schema"
)

// auditedUpdates is how many updates of a raw write the audit event lists
// one by one; a larger write is recorded as its count, a digest of every
// update and a sample of the first ones.
const (
	auditedUpdates  = 100
	auditSampleSize = 10
	auditedChanges  = 100
)

// updateLine is one update as the audit event shows it: "touch
// document:d1#viewer@user:ann", with its caveat and expiry when set.
func updateLine(u engine.RelationshipUpdate) string {
	s := string(u.Operation) + " " + u.Relationship.String()
	if c := u.Relationship.Caveat; c != nil {
		s += "[" + c.Name + "]"
	}
	if at := u.Relationship.ExpiresAt; at != nil {
		s += "[expires " + at.UTC().Format("2006-01-02T15:04:05Z") + "]"
	}
	return s
}

// writeDetails describes a raw write for the provider audit chain.
func writeDetails(updates []engine.RelationshipUpdate, token string) map[string]any {
	lines := make([]string, len(updates))
	h := sha256.New()
	for i, u := range updates {
		lines[i] = updateLine(u)
		h.Write([]byte(lines[i]))
		h.Write([]byte{'\n'})
	}
	d := map[string]any{"count": len(updates), "writtenAt": token}
	if len(lines) <= auditedUpdates {
		d["updates"] = lines
	} else {
		d["digest"] = "sha256:" + hex.EncodeToString(h.Sum(nil))
		d["sample"] = lines[:auditSampleSize]
	}
	return d
}

// schemaDetails describes a schema change: its version, the one it replaced,
// a digest of its app text and the changes (kinds and names).
func schemaDetails(v schema.Version, previous int, changes []schema.Change) map[string]any {
	sum := sha256.Sum256([]byte(v.AppText))
	d := map[string]any{"version": v.Version, "previousVersion": previous, "appTextDigest": "sha256:" + hex.EncodeToString(sum[:]),
		"changeCount": len(changes)}
	lines := []string{}
	for i, c := range changes {
		if i == auditedChanges {
			break
		}
		l := c.Kind + " " + c.Definition
		if c.Name != "" {
			l += "#" + c.Name
		}
		lines = append(lines, l)
	}
	d["changes"] = lines
	return d
}

// recordProvider appends a change the engine already committed to the
// provider audit chain (when the server has a directory). A failure is
// reported as 503 saying the change was applied, and logged.
func (s *Server) recordProvider(ctx context.Context, p directory.Principal, action, target string, details map[string]any) error {
	if s.dir == nil {
		return nil
	}
	if err := s.dir.RecordProviderEvent(context.WithoutCancel(ctx), p, action, target, details); err != nil {
		s.log.Error("provider audit: a committed change has no audit event", "action", action, "target", target, "details", details, "err", err)
		return fmt.Errorf("%w: the change was applied but its audit event could not be stored", trellis.ErrUnavailable)
	}
	return nil
}
