package memory

import (
	"bytes"
	"context"
	"slices"

	"github.com/trellis-iam/trellis/store"
)

type identityKey struct{ connection, subject string }

// federationTables are the sign-in tables (store.FederationRows).
type federationTables struct {
	connections map[string]store.Connection
	apps        map[string]store.Application
	appByClient map[string]string
	identities  map[identityKey]store.SSOIdentity
	policies    map[string]store.SSOPolicy
}

func newFederationTables() federationTables {
	return federationTables{
		connections: map[string]store.Connection{},
		apps:        map[string]store.Application{},
		appByClient: map[string]string{},
		identities:  map[identityKey]store.SSOIdentity{},
		policies:    map[string]store.SSOPolicy{},
	}
}

func cloneConnection(c store.Connection) store.Connection {
	c.SealedSecret = bytes.Clone(c.SealedSecret)
	if c.MetadataFetchedAt != nil {
		at := *c.MetadataFetchedAt
		c.MetadataFetchedAt = &at
	}
	c.RoleMapping = slices.Clone(c.RoleMapping)
	for i := range c.RoleMapping {
		c.RoleMapping[i].Roles = slices.Clone(c.RoleMapping[i].Roles)
	}
	return c
}

func cloneApplication(a store.Application) store.Application {
	a.SecretHash = bytes.Clone(a.SecretHash)
	a.RedirectURIs = slices.Clone(a.RedirectURIs)
	a.PostLogout = slices.Clone(a.PostLogout)
	return a
}

func (t *tx) GetConnection(_ context.Context, id string) (store.Connection, error) {
	return getRow(t.connections, id, cloneConnection, "connection")
}

func (t *tx) ListConnections(_ context.Context, org string) ([]store.Connection, error) {
	keep := func(c store.Connection) bool { return c.Org == org }
	return list(t.connections, keep, func(c store.Connection) string { return c.ID }, store.Page{}, cloneConnection), nil
}

func (t *tx) InsertConnection(_ context.Context, c store.Connection) error {
	return insertRow(t, t.connections, c.ID, cloneConnection(c), "connection")
}

func (t *tx) UpdateConnection(_ context.Context, c store.Connection) error {
	return updateRow(t, t.connections, c.ID, cloneConnection(c), "connection")
}

func (t *tx) DeleteConnection(_ context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	if _, ok := t.connections[id]; !ok {
		return notFound("connection", id)
	}
	unset(t, t.connections, id)
	for k := range t.identities {
		if k.connection == id {
			unset(t, t.identities, k)
		}
	}
	return nil
}

func (t *tx) GetApplication(_ context.Context, id string) (store.Application, error) {
	return getRow(t.apps, id, cloneApplication, "application")
}

func (t *tx) GetApplicationByClientID(_ context.Context, clientID string) (store.Application, error) {
	id, ok := t.appByClient[clientID]
	if !ok {
		return store.Application{}, notFound("application", clientID)
	}
	return getRow(t.apps, id, cloneApplication, "application")
}

func (t *tx) ListApplications(_ context.Context) ([]store.Application, error) {
	keep := func(store.Application) bool { return true }
	return list(t.apps, keep, func(a store.Application) string { return a.ID }, store.Page{}, cloneApplication), nil
}

func (t *tx) InsertApplication(_ context.Context, a store.Application) error {
	if err := t.writable(); err != nil {
		return err
	}
	if _, ok := t.appByClient[a.ClientID]; ok {
		return conflict("client id %q is taken", a.ClientID)
	}
	if err := insertRow(t, t.apps, a.ID, cloneApplication(a), "application"); err != nil {
		return err
	}
	set(t, t.appByClient, a.ClientID, a.ID)
	return nil
}

func (t *tx) UpdateApplication(_ context.Context, a store.Application) error {
	if err := t.writable(); err != nil {
		return err
	}
	old, ok := t.apps[a.ID]
	if !ok {
		return notFound("application", a.ID)
	}
	if old.ClientID != a.ClientID {
		if _, taken := t.appByClient[a.ClientID]; taken {
			return conflict("client id %q is taken", a.ClientID)
		}
		unset(t, t.appByClient, old.ClientID)
		set(t, t.appByClient, a.ClientID, a.ID)
	}
	set(t, t.apps, a.ID, cloneApplication(a))
	return nil
}

func (t *tx) DeleteApplication(_ context.Context, id string) error {
	if err := t.writable(); err != nil {
		return err
	}
	a, ok := t.apps[id]
	if !ok {
		return notFound("application", id)
	}
	unset(t, t.apps, id)
	unset(t, t.appByClient, a.ClientID)
	return nil
}

func (t *tx) GetSSOIdentity(_ context.Context, connection, subject string) (store.SSOIdentity, error) {
	id, ok := t.identities[identityKey{connection, subject}]
	if !ok {
		return store.SSOIdentity{}, notFound("identity", connection+"/"+subject)
	}
	id.Roles = slices.Clone(id.Roles)
	return id, nil
}

func (t *tx) PutSSOIdentity(_ context.Context, id store.SSOIdentity) error {
	if err := t.writable(); err != nil {
		return err
	}
	id.Roles = slices.Clone(id.Roles)
	set(t, t.identities, identityKey{id.Connection, id.Subject}, id)
	return nil
}

func cloneSSOPolicy(p store.SSOPolicy) store.SSOPolicy {
	p.AllowedMethods = slices.Clone(p.AllowedMethods)
	p.RequiredACR = slices.Clone(p.RequiredACR)
	return p
}

func (t *tx) GetSSOPolicy(_ context.Context, org string) (store.SSOPolicy, error) {
	return getRow(t.policies, org, cloneSSOPolicy, "sign-in policy")
}

func (t *tx) PutSSOPolicy(_ context.Context, p store.SSOPolicy) error {
	if err := t.writable(); err != nil {
		return err
	}
	set(t, t.policies, p.Org, cloneSSOPolicy(p))
	return nil
}
