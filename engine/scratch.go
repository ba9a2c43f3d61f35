package engine

import (
	"context"
	"fmt"

	"github.com/authzed/spicedb/pkg/development"
	core "github.com/authzed/spicedb/pkg/proto/core/v1"
	devinterface "github.com/authzed/spicedb/pkg/proto/developer/v1"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// NewScratch starts a throwaway in-memory SpiceDB holding schemaText and rels,
// for "what if" questions (schema diffs, moves, blast radius) that must not
// touch the real graph. stop releases it.
func NewScratch(ctx context.Context, schemaText string, rels []Relationship) (scratch *SpiceDB, stop func(), err error) {
	tuples := make([]*core.RelationTuple, 0, len(rels))
	for _, r := range rels {
		tuples = append(tuples, coreTuple(r))
	}
	dev, devErrs, err := development.NewDevContext(ctx, &devinterface.RequestContext{Schema: schemaText, Relationships: tuples})
	if err != nil {
		return nil, nil, fmt.Errorf("engine: scratch: %w", err)
	}
	if devErrs != nil && len(devErrs.InputErrors) > 0 {
		dev.Dispose()
		return nil, nil, fmt.Errorf("engine: scratch: %s", devErrs.InputErrors[0].Message)
	}
	conn, stopConn, err := dev.RunV1InMemoryService()
	if err != nil {
		dev.Dispose()
		return nil, nil, fmt.Errorf("engine: scratch: %w", err)
	}
	return NewSpiceDB(conn), func() { stopConn(); dev.Dispose() }, nil
}

func coreTuple(r Relationship) *core.RelationTuple {
	subRel := r.Subject.Relation
	if subRel == "" {
		subRel = "..."
	}
	t := &core.RelationTuple{
		ResourceAndRelation: &core.ObjectAndRelation{Namespace: r.Resource.Type, ObjectId: r.Resource.ID, Relation: r.Relation},
		Subject:             &core.ObjectAndRelation{Namespace: r.Subject.Object.Type, ObjectId: r.Subject.Object.ID, Relation: subRel},
	}
	if r.Caveat != nil {
		st, _ := structpb.NewStruct(r.Caveat.Context)
		t.Caveat = &core.ContextualizedCaveat{CaveatName: r.Caveat.Name, Context: st}
	}
	if r.ExpiresAt != nil {
		t.OptionalExpirationTime = timestamppb.New(*r.ExpiresAt)
	}
	return t
}
