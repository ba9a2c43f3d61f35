package directory

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/history"
	"github.com/trellis-iam/trellis/store"
)

// SchemaHistory tells the schema version in force at a past time. The
// default reads the schema versions the store keeps (every node appends to
// the same table, ADR 0013); a store that holds none answers with the
// current schema (version "current").
type SchemaHistory interface {
	SchemaAt(ctx context.Context, at time.Time) (version, text string, err error)
}

// currentSchema is the fallback SchemaHistory: today's schema for every time.
type currentSchema struct{ s *Service }

// storedSchema is the default SchemaHistory: the newest stored version
// applied at or before the time asked (the first version for earlier times:
// nothing was stored before it), else the current schema.
type storedSchema struct{ s *Service }

func (h storedSchema) SchemaAt(ctx context.Context, at time.Time) (string, string, error) {
	var versions []store.SchemaVersion
	if err := h.s.read(ctx, func(tx store.Tx) error {
		var err error
		versions, err = tx.ListSchemaVersions(ctx)
		return err
	}); err != nil {
		return "", "", err
	}
	if len(versions) == 0 {
		return currentSchema(h).SchemaAt(ctx, at)
	}
	in := versions[0]
	for _, v := range versions[1:] {
		if v.AppliedAt.After(at) {
			break
		}
		in = v
	}
	return strconv.Itoa(in.Version), in.Text, nil
}

func (c currentSchema) SchemaAt(ctx context.Context, _ time.Time) (string, string, error) {
	text, err := c.s.schemaText(ctx)
	return "current", text, err
}

// AccessAtQuery is the body of POST /v1/access/at.
type AccessAtQuery struct {
	Resource   engine.ObjectRef
	Permission string
	Subject    *engine.SubjectRef
	At         time.Time
}

// AccessAtResult answers POST /v1/access/at: the answer as of At.
type AccessAtResult struct {
	At             time.Time `json:"at"`
	Resource       string    `json:"resource"`
	Permission     string    `json:"permission"`
	Subject        string    `json:"subject,omitempty"`
	Allowed        *bool     `json:"allowed,omitempty"`        // with a subject
	Permissionship string    `json:"permissionship,omitempty"` // with a subject
	Users          []string  `json:"users"`                    // who could access then, sorted
	Totals         struct {
		Users         int `json:"users"`
		Outside       int `json:"outside"`       // users outside the caller's organizations, not listed
		Changes       int `json:"changes"`       // changelog entries replayed (those of the objects reached)
		Relationships int `json:"relationships"` // relationships loaded into the scratch engine
	} `json:"totals"`
	SchemaVersion string `json:"schemaVersion"`
}

// AccessAt answers a check (with a subject) and who could access, as of a past
// time, from the relationship changelog (history): the changes recorded up to
// it are folded into the relationships stored then (expired ones left out),
// what the question depends on is loaded into a scratch engine, and asked
// under the schema in force then (SchemaHistory). Times before the changelog
// started, or past the configured retention, are a 422. Customer auditors ask
// about resources and subjects inside the organizations they audit today.
func (s *Service) AccessAt(ctx context.Context, p Principal, q AccessAtQuery) (AccessAtResult, error) {
	out := AccessAtResult{At: q.At, Resource: q.Resource.String(), Permission: q.Permission, Users: []string{}}
	now := s.cfg.Now()
	if q.At.After(now) {
		return out, trellis.Invalid("at", "is in the future; ask /v1/check or /v1/access/who-can about now")
	}
	if r := s.cfg.AccessHistoryRetention; r > 0 && q.At.Before(now.Add(-r)) {
		return out, trellis.RuleAt("at", "beyond_retention", "access history is kept for %s: %s is older", r, q.At.Format(time.RFC3339))
	}
	var sc *accessScope
	err := s.read(ctx, func(tx store.Tx) error {
		var err error
		if sc, err = s.accessScope(ctx, tx, p); err != nil {
			return err
		}
		if err := s.requireInside(ctx, tx, sc, "resource", q.Resource); err != nil {
			return err
		}
		if q.Subject != nil {
			if err := s.requireInside(ctx, tx, sc, "subject", q.Subject.Object); err != nil {
				return err
			}
		}
		start, err := tx.ChangelogStart(ctx)
		if err != nil {
			return err
		}
		if start.IsZero() || q.At.Before(start) {
			return trellis.RuleAt("at", "before_history", "the relationship changelog starts at %s (older changes are compacted into it); %s is earlier", start.Format(time.RFC3339Nano), q.At.Format(time.RFC3339Nano))
		}
		return nil
	})
	if err != nil {
		return out, err
	}
	version, text, err := s.schemaHistory.SchemaAt(ctx, q.At)
	if err != nil {
		return out, err
	}
	out.SchemaVersion = version
	bounded, cancel := context.WithTimeout(ctx, s.cfg.MovePreviewTimeout)
	defer cancel()
	// the changes of the objects the question reaches, read through the
	// changelog's index: never every tenant's
	past := &history.Indexed{Store: s.store, At: q.At}
	scratch, loaded, stop, err := history.Replay(bounded, past, text, engine.SubjectRef{Object: q.Resource, Relation: q.Permission}, s.cfg.MovePreviewMaxRelationships)
	switch {
	case errors.Is(err, engine.ErrTooManyRelationships):
		return out, trellis.Rule("access_at_too_large", "the answer depends on more than %d relationships, the most a replay loads", s.cfg.MovePreviewMaxRelationships)
	case err != nil && ctx.Err() == nil && errors.Is(bounded.Err(), context.DeadlineExceeded):
		return out, trellis.Unavailable("access_at_timeout", "the replay did not finish within %s; retry later", s.cfg.MovePreviewTimeout)
	case err != nil:
		return out, err
	}
	defer stop()
	out.Totals.Relationships, out.Totals.Changes = loaded, past.Changes()
	if q.Subject != nil {
		res, err := scratch.Check(bounded, engine.CheckRequest{Resource: q.Resource, Permission: q.Permission, Subject: *q.Subject, Consistency: engine.Consistency{Mode: engine.FullyConsistent}})
		if err != nil {
			return out, err
		}
		allowed := res.Allowed()
		out.Allowed, out.Permissionship, out.Subject = &allowed, string(res.Permissionship), q.Subject.String()
	}
	users, err := engine.UsersWith(bounded, scratch, q.Resource, q.Permission)
	if err != nil {
		return out, err
	}
	return out, s.read(ctx, func(tx store.Tx) error {
		for _, u := range users {
			in, err := sc.userInside(ctx, tx, u)
			if err != nil {
				return err
			}
			if !in {
				out.Totals.Outside++
				continue
			}
			out.Users = append(out.Users, "user:"+u)
		}
		out.Totals.Users = len(out.Users)
		return nil
	})
}
