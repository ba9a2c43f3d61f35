package store

import (
	"context"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Trace wraps s so that every transaction and read view is an OpenTelemetry
// span ("store.InTx", "store.Read").
func Trace(s Store, t trace.Tracer) Store { return traced{Store: s, tracer: t} }

type traced struct {
	Store
	tracer trace.Tracer
}

func (s traced) InTx(ctx context.Context, fn func(tx Tx) error) error {
	ctx, span := s.tracer.Start(ctx, "store.InTx")
	defer span.End()
	err := s.Store.InTx(ctx, fn)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

func (s traced) Read(ctx context.Context, fn func(tx Tx) error) error {
	ctx, span := s.tracer.Start(ctx, "store.Read")
	defer span.End()
	err := s.Store.Read(ctx, fn)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}
