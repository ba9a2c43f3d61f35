package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/authzed/spicedb/pkg/schemadsl/compiler"
	"github.com/authzed/spicedb/pkg/schemadsl/input"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Graph is what the recorder reads: the change stream, the relationships and
// the schema (for the baseline).
type Graph interface {
	engine.Watcher
	engine.RelationshipReader
	ReadSchema(ctx context.Context) (string, error)
}

// Recorder appends the graph's changes to the store's changelog.
type Recorder struct {
	Graph  Graph
	Store  store.Store
	Now    func() time.Time // default time.Now
	Logger *slog.Logger     // default slog.Default()
}

var errCaughtUp = errors.New("history: caught up")

// Sync records every change committed before it was called, then returns.
func (r *Recorder) Sync(ctx context.Context) error {
	for {
		err := r.follow(ctx, true)
		if errors.Is(err, errCaughtUp) {
			return nil
		}
		if !errors.Is(err, trellis.ErrConflict) { // another node recorded them: resume from its cursor
			return err
		}
	}
}

// Run records changes as they are committed until ctx ends, resuming after
// a broken stream (backing off) and from another node's cursor when it
// recorded first.
func (r *Recorder) Run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := r.follow(ctx, false)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, trellis.ErrConflict) {
			continue
		}
		r.logger().Warn("history: the relationship changelog's watch stopped; resuming", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (r *Recorder) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Recorder) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// follow records from the stored cursor: a baseline first when there is
// none (or the stream cannot resume from it), then each transaction the watch
// delivers, one store transaction each; untilHead stops once the
// revision that was newest when it started is recorded.
func (r *Recorder) follow(ctx context.Context, untilHead bool) error {
	var cursor string
	if err := r.Store.Read(ctx, func(tx store.Tx) error {
		var err error
		cursor, err = tx.ChangelogCursor(ctx)
		return err
	}); err != nil {
		return err
	}
	if cursor == "" {
		var err error
		if cursor, err = r.baseline(ctx, ""); err != nil || cursor == "" {
			if err == nil && untilHead {
				return errCaughtUp // no schema yet: nothing to record
			}
			return err
		}
	}
	head := ""
	if untilHead { // the revision to reach: the graph's newest now
		var err error
		if head, err = r.Graph.CatchUp(ctx); err != nil {
			return err
		}
		if head == cursor {
			return errCaughtUp // a watch from the newest revision waits for the next change
		}
	}
	err := r.Graph.Watch(ctx, cursor, func(ev engine.WatchEvent) error {
		if len(ev.Updates) > 0 {
			change := store.RelationshipChange{At: r.now(), Updates: ev.Updates}
			if err := r.Store.InTx(ctx, func(tx store.Tx) error {
				return tx.AppendChanges(ctx, cursor, ev.Token, []store.RelationshipChange{change})
			}); err != nil {
				return err
			}
			cursor = ev.Token
		}
		// a checkpoint may come before every change is sent: stop at the
		// revision that was newest when the sync started
		if untilHead && ev.Token == head {
			return errCaughtUp
		}
		return nil
	})
	if errors.Is(err, engine.ErrWatchGap) {
		// the changes since cursor are lost to the stream: start again from
		// the graph's content (history before it may miss what was lost)
		r.logger().Error("history: the watch cannot resume from the changelog's cursor; recording a new baseline", "err", err)
		_, err = r.baseline(ctx, cursor)
	}
	return err
}

// baseline records every relationship stored now as one change and moves the
// cursor from `from` to the revision it was read at; "" when there is no
// schema yet.
func (r *Recorder) baseline(ctx context.Context, from string) (string, error) {
	token, err := r.Graph.CatchUp(ctx)
	if err != nil || token == "" {
		return "", err
	}
	text, err := r.Graph.ReadSchema(ctx)
	if err != nil {
		return "", err
	}
	cs, err := compiler.Compile(compiler.InputSchema{Source: input.Source("history"), SchemaString: text}, compiler.AllowUnprefixedObjectType())
	if err != nil {
		return "", fmt.Errorf("history: baseline: %w", err)
	}
	// read at or after token: a change made meanwhile is in the read and is
	// delivered again by the watch from token, which replays to the same state
	var updates []engine.RelationshipUpdate
	for _, d := range cs.ObjectDefinitions {
		rels, err := engine.ReadAll(ctx, r.Graph, engine.RelationshipFilter{ResourceType: d.GetName()}, 0)
		if err != nil {
			return "", err
		}
		for _, rel := range rels {
			updates = append(updates, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: rel})
		}
	}
	change := store.RelationshipChange{At: r.now(), Baseline: true, Updates: updates}
	return token, r.Store.InTx(ctx, func(tx store.Tx) error {
		return tx.AppendChanges(ctx, from, token, []store.RelationshipChange{change})
	})
}
