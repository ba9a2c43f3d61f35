package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
)

// consistencyJSON is {"minimizeLatency": true} | {"atLeastAsFresh": "<token>"} | {"fullyConsistent": true}.
type consistencyJSON map[string]json.RawMessage

func (c consistencyJSON) parse(field string) (engine.Consistency, error) {
	if len(c) == 0 {
		return engine.Consistency{Mode: engine.MinimizeLatency}, nil
	}
	if len(c) > 1 {
		return engine.Consistency{}, trellis.Invalid(field, "choose exactly one of minimizeLatency, atLeastAsFresh, fullyConsistent")
	}
	for k, raw := range c {
		switch k {
		case "minimizeLatency", "fullyConsistent":
			var b bool
			if err := json.Unmarshal(raw, &b); err != nil || !b {
				return engine.Consistency{}, trellis.Invalid(field+"."+k, "must be true")
			}
			if k == "fullyConsistent" {
				return engine.Consistency{Mode: engine.FullyConsistent}, nil
			}
			return engine.Consistency{Mode: engine.MinimizeLatency}, nil
		case "atLeastAsFresh":
			var tok string
			if err := json.Unmarshal(raw, &tok); err != nil || strings.TrimSpace(tok) == "" {
				return engine.Consistency{}, trellis.Invalid(field+".atLeastAsFresh", "must be a token returned by a write or a check")
			}
			return engine.Consistency{Mode: engine.AtLeastAsFresh, Token: tok}, nil
		default:
			return engine.Consistency{}, trellis.Invalid(field, "unknown consistency mode %q (minimizeLatency, atLeastAsFresh, fullyConsistent)", k)
		}
	}
	panic("unreachable")
}

// jsonObject is a JSON object whose numbers are decoded as json.Number, so
// that contextMap can keep integers exact (int64) and floats as float64.
type jsonObject map[string]any

func (o *jsonObject) UnmarshalJSON(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return err
	}
	*o = m
	return nil
}

// contextMap converts decoded JSON (numbers as json.Number) into plain values.
func contextMap(field string, m map[string]any) (map[string]any, error) {
	if m == nil {
		return nil, nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		nv, err := plain(field+"."+k, v)
		if err != nil {
			return nil, err
		}
		out[k] = nv
	}
	return out, nil
}

func plain(field string, v any) (any, error) {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i, nil
		}
		f, err := t.Float64()
		if err != nil {
			return nil, trellis.Invalid(field, "is not a number")
		}
		return f, nil
	case map[string]any:
		return contextMap(field, t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			ne, err := plain(fmt.Sprintf("%s[%d]", field, i), e)
			if err != nil {
				return nil, err
			}
			out[i] = ne
		}
		return out, nil
	}
	return v, nil
}

// checkJSON is one check as clients send it.
type checkJSON struct {
	Resource    string          `json:"resource"`
	Permission  string          `json:"permission"`
	Subject     string          `json:"subject"`
	Context     jsonObject      `json:"context"`
	Consistency consistencyJSON `json:"consistency"`
	Actor       string          `json:"actor"`
}

func (c checkJSON) parse() (engine.CheckRequest, error) {
	res, err := engine.ParseObjectRef("resource", c.Resource)
	if err != nil {
		return engine.CheckRequest{}, err
	}
	if err := requiredRelation("permission", c.Permission); err != nil {
		return engine.CheckRequest{}, err
	}
	sub, err := engine.ParseSubjectRef("subject", c.Subject)
	if err != nil {
		return engine.CheckRequest{}, err
	}
	if sub.IsWildcard() {
		return engine.CheckRequest{}, trellis.Invalid("subject", "a wildcard cannot be checked; name one subject")
	}
	ctx, err := contextMap("context", c.Context)
	if err != nil {
		return engine.CheckRequest{}, err
	}
	cons, err := c.Consistency.parse("consistency")
	if err != nil {
		return engine.CheckRequest{}, err
	}
	return engine.CheckRequest{Resource: res, Permission: c.Permission, Subject: sub, Context: ctx, Consistency: cons}, nil
}

// relationshipJSON is a relationship as clients send and receive it.
type relationshipJSON struct {
	Resource  string      `json:"resource"`
	Relation  string      `json:"relation"`
	Subject   string      `json:"subject"`
	Caveat    *caveatJSON `json:"caveat,omitempty"`
	ExpiresAt string      `json:"expiresAt,omitempty"`
}

type caveatJSON struct {
	Name    string     `json:"name"`
	Context jsonObject `json:"context,omitempty"`
}

func (r relationshipJSON) parse(field string) (engine.Relationship, error) {
	res, err := engine.ParseObjectRef(field+".resource", r.Resource)
	if err != nil {
		return engine.Relationship{}, err
	}
	if r.Relation == "" {
		return engine.Relationship{}, trellis.Invalid(field+".relation", "is required")
	}
	if err := engine.ValidateRelation(field+".relation", r.Relation); err != nil {
		return engine.Relationship{}, err
	}
	sub, err := engine.ParseSubjectRef(field+".subject", r.Subject)
	if err != nil {
		return engine.Relationship{}, err
	}
	out := engine.Relationship{Resource: res, Relation: r.Relation, Subject: sub}
	if r.ExpiresAt != "" {
		t, err := time.Parse(time.RFC3339Nano, r.ExpiresAt)
		if err != nil {
			return engine.Relationship{}, trellis.Invalid(field+".expiresAt", "must be an RFC 3339 time, got %q", r.ExpiresAt)
		}
		out.ExpiresAt = &t
	}
	if r.Caveat != nil {
		if r.Caveat.Name == "" {
			return engine.Relationship{}, trellis.Invalid(field+".caveat.name", "is required")
		}
		if err := engine.ValidateCaveatName(field+".caveat.name", r.Caveat.Name); err != nil {
			return engine.Relationship{}, err
		}
		ctx, err := contextMap(field+".caveat.context", r.Caveat.Context)
		if err != nil {
			return engine.Relationship{}, err
		}
		out.Caveat = &engine.Caveat{Name: r.Caveat.Name, Context: ctx}
	}
	return out, nil
}

func toRelationshipJSON(r engine.Relationship) relationshipJSON {
	out := relationshipJSON{Resource: r.Resource.String(), Relation: r.Relation, Subject: r.Subject.String()}
	if r.ExpiresAt != nil {
		out.ExpiresAt = r.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	if r.Caveat != nil {
		out.Caveat = &caveatJSON{Name: r.Caveat.Name, Context: r.Caveat.Context}
	}
	return out
}

// parseSubjectFilter accepts "type", "type:id", "type#relation" or "type:id#relation".
func parseSubjectFilter(field, s string) (*engine.SubjectFilter, error) {
	if s == "" {
		return nil, nil
	}
	obj, rel, hasRel := strings.Cut(s, "#")
	typ, id, hasID := strings.Cut(obj, ":")
	if err := engine.ValidateType(field, typ); err != nil {
		return nil, err
	}
	f := &engine.SubjectFilter{Type: typ}
	if hasID {
		if id != "*" {
			if _, err := engine.ParseObjectRef(field, obj); err != nil {
				return nil, err
			}
		}
		f.ID = id
	}
	if hasRel {
		if err := engine.ValidateRelation(field, rel); err != nil {
			return nil, err
		}
		f.Relation = rel
	}
	return f, nil
}

// pageSize validates an optional page size: default def, 1..max.
func pageSize(field string, n *int, def, max int) (int, error) {
	if n == nil {
		return def, nil
	}
	if *n < 1 || *n > max {
		return 0, trellis.Invalid(field, "must be between 1 and %d", max)
	}
	return *n, nil
}
