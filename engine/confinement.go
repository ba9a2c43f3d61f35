package engine

import (
	"context"
	"slices"
	"strconv"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Stamper is implemented by engines that can say what an answer about an
// object depends on (the check cache: schema version, tenant epoch, global
// epoch and, for objects it cannot confine, the write counter). Two equal
// stamps of an object mean nothing an answer about it reads has changed.
type Stamper interface {
	Stamp(obj ObjectRef) string
}

// Stamp implements Stamper with the same stamp the check cache keys carry.
func (c *Cached) Stamp(obj ObjectRef) string {
	st := c.ten.stampOf(obj)
	b := make([]byte, 0, 48+len(st.tenant))
	b = strconv.AppendUint(b, c.schemaVersion.Load(), 36)
	b = append(b, '|')
	b = strconv.AppendUint(b, st.global, 36)
	b = append(b, '|')
	b = append(b, st.tenant...)
	b = append(b, '|')
	b = strconv.AppendUint(b, st.epoch, 36)
	b = append(b, '|')
	b = strconv.AppendUint(b, st.writes, 36)
	return string(b)
}

var _ Stamper = (*Cached)(nil)

// Confinement decides whether an object lies inside an organization's
// subtree, for API keys bound to one organization (ADR 0014). It places
// objects as impersonation confinement does (ADR 0009): an organization by
// its parent chain; a user by the organizations whose relationships name it
// (it lies inside when any of them does); any other object by the
// organizations it hangs from, all of which must lie inside. Whatever it
// cannot place (the platform, wildcards, orphans, walks past their bounds) is
// outside: it fails closed. Over an engine that is a Stamper it remembers its
// answers under the stamps of the object and of the organization, so a
// repeated question costs a map lookup until a write touches either.
type Confinement struct {
	gate    ImpersonationGate
	stamps  Stamper
	answers *lru.Cache[string, bool]
}

// NewConfinement places objects through e.
func NewConfinement(e Engine) *Confinement {
	c := &Confinement{gate: ImpersonationGate{Engine: e}}
	if st, ok := e.(Stamper); ok {
		c.stamps = st
		c.answers, _ = lru.New[string, bool](65536)
	}
	return c
}

// Inside reports whether obj lies inside org's subtree.
func (c *Confinement) Inside(ctx context.Context, org string, obj ObjectRef) (bool, error) {
	if obj.ID == "*" || obj.Type == platformType {
		return false, nil
	}
	var key string
	if c.stamps != nil {
		orgStamp := c.stamps.Stamp(ObjectRef{Type: orgType, ID: org})
		objStamp := orgStamp // a user's place changes only with its organizations' relationships
		if obj.Type != "user" {
			objStamp = c.stamps.Stamp(obj)
		}
		key = org + "|" + orgStamp + "|" + obj.Type + ":" + obj.ID + "|" + objStamp
		if v, ok := c.answers.Get(key); ok {
			return v, nil
		}
	}
	in, err := c.place(ctx, org, obj)
	if err != nil {
		return false, err
	}
	if c.stamps != nil {
		c.answers.Add(key, in)
	}
	return in, nil
}

func (c *Confinement) place(ctx context.Context, org string, obj ObjectRef) (bool, error) {
	if obj.Type == "user" {
		return c.userInside(ctx, org, obj.ID)
	}
	anchors, ok, err := c.gate.anchors(ctx, obj)
	if err != nil || !ok || len(anchors) == 0 {
		return false, err
	}
	for _, a := range anchors {
		path, ok, err := c.gate.orgPath(ctx, a)
		if err != nil || !ok || !slices.Contains(path, org) {
			return false, err
		}
	}
	return true, nil
}

// userInside reports whether some organization inside org's subtree names
// the user in one of its relationships (member, admin, a role…).
func (c *Confinement) userInside(ctx context.Context, org, user string) (bool, error) {
	cursor, read := "", 0
	for {
		page, err := c.gate.Engine.ReadRelationships(ctx, ReadRequest{
			Filter:      RelationshipFilter{ResourceType: orgType, Subject: &SubjectFilter{Type: "user", ID: user}},
			Consistency: Consistency{Mode: FullyConsistent}, PageSize: 1000, Cursor: cursor,
		})
		if err != nil {
			return false, err
		}
		for _, r := range page.Relationships {
			path, ok, err := c.gate.orgPath(ctx, r.Resource.ID)
			if err != nil {
				return false, err
			}
			if ok && slices.Contains(path, org) {
				return true, nil
			}
		}
		if read += len(page.Relationships); page.NextCursor == "" || read >= maxConfinementRelationships {
			return false, nil
		}
		cursor = page.NextCursor
	}
}
