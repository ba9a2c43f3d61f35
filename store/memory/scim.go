package memory

import (
	"bytes"
	"context"
	"slices"
	"strings"

	"github.com/trellis-iam/trellis/store"
)

type scimKey struct{ org, kind, id string }

type scimSyncKey struct{ org, resource string }

// scimTables are the SCIM rows; byName indexes (org, kind, lower(name)) onto an id.
type scimTables struct {
	tokens    map[string]store.SCIMToken
	mappings  map[string][]store.SCIMMapping
	resources map[scimKey]store.SCIMResource
	byName    map[scimKey]string
	sync      map[scimSyncKey]store.SCIMSync
	errors    map[string][]store.SCIMRequest // newest last
}

func newSCIMTables() scimTables {
	return scimTables{
		tokens:    map[string]store.SCIMToken{},
		mappings:  map[string][]store.SCIMMapping{},
		resources: map[scimKey]store.SCIMResource{},
		byName:    map[scimKey]string{},
		sync:      map[scimSyncKey]store.SCIMSync{},
		errors:    map[string][]store.SCIMRequest{},
	}
}

func cloneSCIMToken(k store.SCIMToken) store.SCIMToken {
	k.Hash = bytes.Clone(k.Hash)
	k.Permissions = slices.Clone(k.Permissions)
	k.LastUsedAt = clonePtr(k.LastUsedAt)
	k.RevokedAt = clonePtr(k.RevokedAt)
	return k
}

func cloneSCIMResource(r store.SCIMResource) store.SCIMResource {
	r.Doc = bytes.Clone(r.Doc)
	r.Roles = slices.Clone(r.Roles)
	r.Members = slices.Clone(r.Members)
	return r
}

func cloneMappings(ms []store.SCIMMapping) []store.SCIMMapping {
	if ms == nil {
		return nil
	}
	out := make([]store.SCIMMapping, len(ms))
	for i, m := range ms {
		out[i] = store.SCIMMapping{Group: m.Group, Roles: slices.Clone(m.Roles)}
	}
	return out
}

func (t *tx) GetSCIMToken(_ context.Context, id string) (store.SCIMToken, error) {
	return getRow(t.scim.tokens, id, cloneSCIMToken, "SCIM token")
}

func (t *tx) ListSCIMTokens(_ context.Context, org string) ([]store.SCIMToken, error) {
	keep := func(k store.SCIMToken) bool { return k.Org == org }
	return list(t.scim.tokens, keep, func(k store.SCIMToken) string { return k.ID }, store.Page{}, cloneSCIMToken), nil
}

func (t *tx) InsertSCIMToken(_ context.Context, k store.SCIMToken) error {
	return insertRow(t, t.scim.tokens, k.ID, cloneSCIMToken(k), "SCIM token")
}

func (t *tx) UpdateSCIMToken(_ context.Context, k store.SCIMToken) error {
	return updateRow(t, t.scim.tokens, k.ID, cloneSCIMToken(k), "SCIM token")
}

func (t *tx) SCIMMappings(_ context.Context, org string) ([]store.SCIMMapping, error) {
	return cloneMappings(t.scim.mappings[org]), nil
}

func (t *tx) PutSCIMMappings(_ context.Context, org string, m []store.SCIMMapping) error {
	if err := t.writable(); err != nil {
		return err
	}
	if len(m) == 0 {
		unset(t, t.scim.mappings, org)
		return nil
	}
	set(t, t.scim.mappings, org, cloneMappings(m))
	return nil
}

func (t *tx) GetSCIMResource(_ context.Context, org, kind, id string) (store.SCIMResource, error) {
	r, ok := t.scim.resources[scimKey{org, kind, id}]
	if !ok {
		return store.SCIMResource{}, notFound("SCIM "+kind, id)
	}
	return cloneSCIMResource(r), nil
}

func (t *tx) SCIMResourceByName(ctx context.Context, org, kind, name string) (store.SCIMResource, error) {
	id, ok := t.scim.byName[scimKey{org, kind, strings.ToLower(name)}]
	if !ok {
		return store.SCIMResource{}, notFound("SCIM "+kind+" name", name)
	}
	return t.GetSCIMResource(ctx, org, kind, id)
}

func (t *tx) ListSCIMResources(_ context.Context, org, kind string, p store.Page) ([]store.SCIMResource, error) {
	var out []store.SCIMResource
	for k, r := range t.scim.resources {
		if k.org == org && k.kind == kind && (p.After == "" || k.id > p.After) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b store.SCIMResource) int { return strings.Compare(a.ID, b.ID) })
	if p.Limit > 0 && len(out) > p.Limit {
		out = out[:p.Limit]
	}
	for i := range out {
		out[i] = cloneSCIMResource(out[i])
	}
	return out, nil
}

func (t *tx) PutSCIMResource(_ context.Context, r store.SCIMResource) error {
	if err := t.writable(); err != nil {
		return err
	}
	key := scimKey{r.Org, r.Kind, r.ID}
	name := scimKey{r.Org, r.Kind, strings.ToLower(r.Name)}
	if id, ok := t.scim.byName[name]; ok && id != r.ID {
		return conflict("SCIM %s name %q is taken", r.Kind, r.Name)
	}
	if old, ok := t.scim.resources[key]; ok {
		unset(t, t.scim.byName, scimKey{old.Org, old.Kind, strings.ToLower(old.Name)})
	}
	set(t, t.scim.byName, name, r.ID)
	set(t, t.scim.resources, key, cloneSCIMResource(r))
	return nil
}

func (t *tx) DeleteSCIMResource(_ context.Context, org, kind, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	key := scimKey{org, kind, id}
	old, ok := t.scim.resources[key]
	if !ok {
		return notFound("SCIM "+kind, id)
	}
	unset(t, t.scim.byName, scimKey{org, kind, strings.ToLower(old.Name)})
	unset(t, t.scim.resources, key)
	return nil
}

func (t *tx) RecordSCIMRequest(_ context.Context, r store.SCIMRequest) error {
	if err := t.writable(); err != nil {
		return err
	}
	key := scimSyncKey{r.Org, r.Resource}
	st := t.scim.sync[key]
	st.Last = r
	st.Requests++
	if r.Status >= 400 {
		st.Errors++
		errs := append(slices.Clone(t.scim.errors[r.Org]), r)
		if len(errs) > store.SCIMErrorsKept {
			errs = errs[len(errs)-store.SCIMErrorsKept:]
		}
		set(t, t.scim.errors, r.Org, errs)
	}
	set(t, t.scim.sync, key, st)
	return nil
}

func (t *tx) SCIMSyncStatus(_ context.Context, org string) ([]store.SCIMSync, []store.SCIMRequest, error) {
	var out []store.SCIMSync
	for k, st := range t.scim.sync {
		if k.org == org {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b store.SCIMSync) int { return strings.Compare(a.Last.Resource, b.Last.Resource) })
	errs := slices.Clone(t.scim.errors[org])
	slices.Reverse(errs)
	return out, errs, nil
}

func (t *tx) LookupSCIM(ctx context.Context, q store.SCIMLookup) (store.SCIMFound, error) {
	var out store.SCIMFound
	seen := map[scimKey]bool{}
	for kind, names := range map[string][]string{store.SCIMUser: q.UserNames, store.SCIMGroup: q.GroupNames} {
		for _, n := range names {
			k := scimKey{q.Org, kind, strings.ToLower(n)}
			id, ok := t.scim.byName[k]
			if !ok || seen[k] {
				continue
			}
			seen[k] = true
			out.Resources = append(out.Resources, cloneSCIMResource(t.scim.resources[scimKey{q.Org, kind, id}]))
		}
	}
	for _, e := range slices.Compact(slices.Sorted(slices.Values(q.Emails))) {
		if u, err := t.GetUserByEmail(ctx, e); err == nil {
			out.Users = append(out.Users, u)
		}
	}
	for _, u := range slices.Compact(slices.Sorted(slices.Values(q.Members))) {
		if m, err := t.GetMembership(ctx, q.Org, u); err == nil {
			out.Memberships = append(out.Memberships, m)
		}
	}
	return out, nil
}
