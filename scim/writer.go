package scim

import "github.com/trellis-iam/trellis/directory"

// writer is where a request's writes go: straight to the directory, one
// operation each (a single request), or into the steps of one batch (/Bulk).
type writer interface {
	get(k kind, id string) (directory.SCIMRecord, error)
	putUser(id string, in directory.SCIMUserState, version int64) (directory.SCIMRecord, error)
	putGroup(id string, in directory.SCIMGroupState, version int64) (directory.SCIMRecord, error)
	remove(k kind, id string, version int64) error
}

// direct writes each call as its own directory operation.
type direct struct {
	s *Server
	r *request
}

func (d direct) get(k kind, id string) (directory.SCIMRecord, error) {
	return d.s.dir.SCIMGet(d.r.ctx, d.r.p, d.r.org, k.name, id)
}

func (d direct) putUser(id string, in directory.SCIMUserState, version int64) (directory.SCIMRecord, error) {
	rec, _, err := d.s.dir.SCIMPutUser(d.r.ctx, d.r.p, d.r.org, id, in, version)
	return rec, err
}

func (d direct) putGroup(id string, in directory.SCIMGroupState, version int64) (directory.SCIMRecord, error) {
	rec, _, err := d.s.dir.SCIMPutGroup(d.r.ctx, d.r.p, d.r.org, id, in, version)
	return rec, err
}

func (d direct) remove(k kind, id string, version int64) error {
	if k.name == "User" {
		return d.s.dir.SCIMDeleteUser(d.r.ctx, d.r.p, d.r.org, id, version)
	}
	return d.s.dir.SCIMDeleteGroup(d.r.ctx, d.r.p, d.r.org, id, version)
}

// batched writes into a step of a directory batch.
type batched struct{ b *directory.SCIMBatch }

func (w batched) get(k kind, id string) (directory.SCIMRecord, error) { return w.b.Get(k.name, id) }

func (w batched) putUser(id string, in directory.SCIMUserState, version int64) (directory.SCIMRecord, error) {
	rec, _, err := w.b.PutUser(id, in, version)
	return rec, err
}

func (w batched) putGroup(id string, in directory.SCIMGroupState, version int64) (directory.SCIMRecord, error) {
	rec, _, err := w.b.PutGroup(id, in, version)
	return rec, err
}

func (w batched) remove(k kind, id string, version int64) error {
	if k.name == "User" {
		return w.b.DeleteUser(id, version)
	}
	return w.b.DeleteGroup(id, version)
}
