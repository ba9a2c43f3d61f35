package directory

import (
	"context"
	"strings"

	"github.com/trellis-iam/trellis/store"
)

// A provisioning operation (one SCIM request, or a /Bulk's batch) looks rows
// up one by one — is this userName free, which user has this email, is this
// group member a member of the organization — and each lookup is a round trip
// to the store. A batch reads them all ahead, at once (SCIMBatch.Prefetch:
// store.LookupSCIM), into scimKnown, and its steps answer from there. What a
// step then writes makes the entries it could change unknown again (forget*),
// so that a later step reads the store (its own writes included); only
// forgetting, never storing, keeps this right when a step is undone. The
// operation holds the store's write lock, so no other writer moves the rows
// meanwhile. The organization's SCIM mappings and its path are read once per
// operation too.

// scimKnown is an operation's read-ahead; its org is the batch's.
type scimKnown struct {
	org string
	// names: kind + "\x00" + lower(name) → the resource (nil: none)
	names map[string]*store.SCIMResource
	// emails: email → the user (nil: none)
	emails map[string]*store.User
	// members: user id → its membership of org (nil: none)
	members map[string]*store.Membership
	// mappings: org's SCIM mappings, once read
	mappings       []store.SCIMMapping
	mappingsLoaded bool
	// path: org's path (s.path), once read
	path []string
}

func nameKey(kind, name string) string { return kind + "\x00" + strings.ToLower(name) }

// scimOp starts o's read-ahead state for provisioning in org.
func (o *op) scimOp(org string) *scimKnown {
	if o.known == nil || o.known.org != org {
		o.known = &scimKnown{org: org, names: map[string]*store.SCIMResource{},
			emails: map[string]*store.User{}, members: map[string]*store.Membership{}}
	}
	return o.known
}

// prefetch reads ahead what the given states will look up in org.
func (o *op) prefetch(ctx context.Context, tx store.Tx, org string, users []SCIMUserState, groups []SCIMGroupState) error {
	k := o.scimOp(org)
	q := store.SCIMLookup{Org: org}
	for _, u := range users {
		if u.validate() != nil { // its step fails before any lookup
			continue
		}
		q.UserNames = append(q.UserNames, u.UserName)
		q.Emails = append(q.Emails, u.Email)
	}
	for _, g := range groups {
		if g.validate() != nil {
			continue
		}
		q.GroupNames = append(q.GroupNames, g.DisplayName)
		q.Members = append(q.Members, g.Members...)
	}
	if len(q.UserNames)+len(q.GroupNames)+len(q.Members) == 0 {
		return nil
	}
	found, err := tx.LookupSCIM(ctx, q)
	if err != nil {
		return err
	}
	for _, n := range q.UserNames {
		k.names[nameKey(store.SCIMUser, n)] = nil
	}
	for _, n := range q.GroupNames {
		k.names[nameKey(store.SCIMGroup, n)] = nil
	}
	for _, e := range q.Emails {
		k.emails[e] = nil
	}
	for _, m := range q.Members {
		k.members[m] = nil
	}
	for i := range found.Resources {
		r := &found.Resources[i]
		k.names[nameKey(r.Kind, r.Name)] = r
	}
	for i := range found.Users {
		u := &found.Users[i]
		k.emails[u.Email] = u
	}
	for i := range found.Memberships {
		m := &found.Memberships[i]
		k.members[m.User] = m
	}
	return nil
}

// scimByName is tx.SCIMResourceByName, answered from the read-ahead when it knows.
func (o *op) scimByName(ctx context.Context, tx store.Tx, org, kind, name string) (store.SCIMResource, error) {
	if o.known != nil && o.known.org == org {
		if r, ok := o.known.names[nameKey(kind, name)]; ok {
			if r == nil {
				return store.SCIMResource{}, notFound("SCIM "+kind+" name", name)
			}
			return *r, nil
		}
	}
	return tx.SCIMResourceByName(ctx, org, kind, name)
}

// userByEmail is tx.GetUserByEmail, answered from the read-ahead when it knows.
func (o *op) userByEmail(ctx context.Context, tx store.Tx, email string) (store.User, error) {
	if o.known != nil {
		if u, ok := o.known.emails[email]; ok {
			if u == nil {
				return store.User{}, notFound("user email", email)
			}
			return *u, nil
		}
	}
	return tx.GetUserByEmail(ctx, email)
}

// membership is tx.GetMembership, answered from the read-ahead when it knows
// (o may be nil: outside an operation).
func (o *op) membership(ctx context.Context, tx store.Tx, org, user string) (store.Membership, error) {
	if o != nil && o.known != nil && o.known.org == org {
		if m, ok := o.known.members[user]; ok {
			if m == nil {
				return store.Membership{}, notFound("membership", org+"/"+user)
			}
			c := *m
			c.Roles = append([]string(nil), m.Roles...)
			return c, nil
		}
	}
	return tx.GetMembership(ctx, org, user)
}

// scimMappings is tx.SCIMMappings, read once per provisioning operation.
func (o *op) scimMappings(ctx context.Context, tx store.Tx, org string) ([]store.SCIMMapping, error) {
	if o.known == nil || o.known.org != org {
		return tx.SCIMMappings(ctx, org)
	}
	if !o.known.mappingsLoaded {
		ms, err := tx.SCIMMappings(ctx, org)
		if err != nil {
			return nil, err
		}
		o.known.mappings, o.known.mappingsLoaded = ms, true
	}
	return o.known.mappings, nil
}

// pathOf is s.path, read once per provisioning operation.
func (s *Service) pathOf(ctx context.Context, tx store.Tx, o *op, org store.Org) ([]string, error) {
	if o.known == nil || o.known.org != org.ID {
		return s.path(ctx, tx, org)
	}
	if o.known.path == nil {
		p, err := s.path(ctx, tx, org)
		if err != nil {
			return nil, err
		}
		o.known.path = p
	}
	return o.known.path, nil
}

// forgetResource: resource id of kind is written (created: new) or deleted,
// and now has name ("" when deleted).
func (o *op) forgetResource(kind, id, name string, created bool) {
	if o.known == nil {
		return
	}
	delete(o.known.names, nameKey(kind, name))
	if created { // a new id: nothing known names it
		return
	}
	for key, r := range o.known.names {
		if r != nil && r.Kind == kind && r.ID == id {
			delete(o.known.names, key)
		}
	}
}

// forgetEmail: a user with email is written.
func (o *op) forgetEmail(emails ...string) {
	if o.known == nil {
		return
	}
	for _, e := range emails {
		delete(o.known.emails, e)
	}
}

// forgetMember: user's membership (of the read-ahead's org) is written or deleted.
func (o *op) forgetMember(user string) {
	if o.known != nil {
		delete(o.known.members, user)
	}
}
