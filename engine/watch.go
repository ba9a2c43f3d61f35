package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trellis-iam/trellis"
)

// ErrWatchGap: a watch cannot resume from its cursor (the revision was
// garbage-collected, or the datastore behind SpiceDB is another one). The
// changes in between are lost: the watcher must resynchronize.
var ErrWatchGap = errors.New("engine: the watch cannot resume from its cursor")

// WatchEvent is what one transaction committed to SpiceDB, in revision order.
type WatchEvent struct {
	Updates       []RelationshipUpdate
	SchemaChanged bool   // the schema was written
	Checkpoint    bool   // nothing changed up to Token (a heartbeat)
	Token         string // ChangesThrough: a watch resumed from it continues after this event
}

// Watcher is an engine that streams the changes committed to it, whoever made
// them (SpiceDB's WatchService). The check cache uses it to keep several
// Trellis nodes, and writes made directly to SpiceDB, coherent.
type Watcher interface {
	// Watch calls fn for each change committed after cursor ("" for SpiceDB's
	// recent revision, which replays rather than skips) until ctx ends, fn
	// fails, or the stream breaks. ErrWatchGap means the cursor is unusable.
	Watch(ctx context.Context, cursor string, fn func(WatchEvent) error) error
	// CatchUp makes this engine's later minimizeLatency reads at least as fresh
	// as every change committed before the call, and returns the token of that
	// revision ("" when there is no schema yet).
	CatchUp(ctx context.Context) (string, error)
}

var _ Watcher = (*SpiceDB)(nil)

var watchOperations = map[v1.RelationshipUpdate_Operation]Operation{
	v1.RelationshipUpdate_OPERATION_CREATE: OpCreate, v1.RelationshipUpdate_OPERATION_TOUCH: OpTouch, v1.RelationshipUpdate_OPERATION_DELETE: OpDelete,
}

// Watch streams SpiceDB's relationship and schema changes, and checkpoints.
// On PostgreSQL it needs track_commit_timestamp = on.
func (s *SpiceDB) Watch(ctx context.Context, cursor string, fn func(WatchEvent) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &v1.WatchRequest{OptionalUpdateKinds: []v1.WatchKind{
		v1.WatchKind_WATCH_KIND_INCLUDE_RELATIONSHIP_UPDATES,
		v1.WatchKind_WATCH_KIND_INCLUDE_SCHEMA_UPDATES,
		v1.WatchKind_WATCH_KIND_INCLUDE_CHECKPOINTS,
	}}
	if cursor != "" {
		req.OptionalStartCursor = &v1.ZedToken{Token: cursor}
	}
	stream, err := s.watch.Watch(ctx, req)
	if err != nil {
		return watchError(err, cursor)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("engine: %w: the watch stream ended", trellis.ErrUnavailable)
		}
		if err != nil {
			return watchError(err, cursor)
		}
		ev := WatchEvent{SchemaChanged: resp.SchemaUpdated, Checkpoint: resp.IsCheckpoint, Token: resp.ChangesThrough.GetToken()}
		for _, u := range resp.Updates {
			op, ok := watchOperations[u.Operation]
			if !ok || u.Relationship == nil {
				continue
			}
			ev.Updates = append(ev.Updates, RelationshipUpdate{Operation: op, Relationship: fromV1Relationship(u.Relationship)})
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// watchError tells an unusable cursor (ErrWatchGap) from a broken stream.
func watchError(err error, cursor string) error {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange, codes.NotFound:
		if cursor != "" {
			return fmt.Errorf("%w: %v", ErrWatchGap, status.Convert(err).Message())
		}
	case codes.Unimplemented:
		return fmt.Errorf("engine: %w: SpiceDB does not serve Watch (on PostgreSQL it needs track_commit_timestamp = on): %s",
			trellis.ErrUnavailable, status.Convert(err).Message())
	}
	return translate(err, nil)
}

// CatchUp reads the schema, which SpiceDB reads at its head revision, and
// records that revision as the floor of later reads.
func (s *SpiceDB) CatchUp(ctx context.Context) (string, error) {
	since := s.begin()
	resp, err := s.schema.ReadSchema(ctx, &v1.ReadSchemaRequest{})
	if err != nil {
		s.noteUnknown()
		if status.Code(err) == codes.NotFound {
			return "", nil
		}
		return "", translate(err, nil)
	}
	token := resp.ReadAt.GetToken()
	s.noteWrite(token, since)
	return token, nil
}

// Watch loop timing.
const (
	watchMinBackoff = 50 * time.Millisecond
	watchMaxBackoff = 5 * time.Second
	watchCatchUpMax = 5 * time.Second
)

// cacheWatch is the Cached's consumer of the engine's change stream.
type cacheWatch struct {
	w      Watcher
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	live                               atomic.Bool // a stream is open: cached answers may be served
	events, updates, restarts, resyncs atomic.Uint64
}

// prepareWatch takes the cursor before the tenancy index is learned, so that no
// change committed after the learned revision can be missed.
func (c *Cached) prepareWatch(ctx context.Context) (string, error) {
	w, ok := c.Engine.(Watcher)
	if !ok {
		return "", fmt.Errorf("engine: the check cache cannot watch %T: it does not stream changes", c.Engine)
	}
	cursor, err := w.CatchUp(ctx)
	if err != nil {
		return "", fmt.Errorf("engine: start the watch: %w", err)
	}
	c.watch = &cacheWatch{w: w, done: make(chan struct{})}
	return cursor, nil
}

// runWatch starts consuming changes after cursor.
func (c *Cached) runWatch(cursor string) {
	ctx, cancel := context.WithCancel(context.Background())
	c.watch.cancel = cancel
	go func() {
		defer close(c.watch.done)
		c.watchLoop(ctx, cursor)
	}()
}

// stopWatch ends the loop and waits for it.
func (c *Cached) stopWatch() {
	if c.watch == nil {
		return
	}
	c.watch.once.Do(func() {
		c.watch.live.Store(false)
		if c.watch.cancel != nil {
			c.watch.cancel()
			<-c.watch.done
		}
	})
}

// watchLive reports whether cached answers may be served: always without a
// watch, and only while the stream is open with one (changes made elsewhere
// while it is broken are applied when it resumes; meanwhile checks go to SpiceDB).
func (c *Cached) watchLive() bool {
	return c.watch == nil || c.watch.live.Load()
}

// watchLoop applies every change, reconnects with backoff (resuming after the
// last change applied) and resynchronizes when it cannot resume.
func (c *Cached) watchLoop(ctx context.Context, cursor string) {
	cw := c.watch
	backoff := watchMinBackoff
	gap := false
	for {
		if gap {
			next, err := c.resync(ctx)
			if err == nil {
				cursor, gap = next, false
				cw.resyncs.Add(1)
				c.metrics.watchResyncs.Inc()
			}
		}
		if !gap {
			cw.live.Store(true)
			c.metrics.watchLive.Set(1)
			err := cw.w.Watch(ctx, cursor, func(ev WatchEvent) error {
				c.applyWatch(ctx, ev)
				if ev.Token != "" {
					cursor = ev.Token
				}
				backoff = watchMinBackoff
				return nil
			})
			cw.live.Store(false)
			c.metrics.watchLive.Set(0)
			if ctx.Err() != nil {
				return
			}
			cw.restarts.Add(1)
			c.metrics.watchRestarts.Inc()
			if errors.Is(err, ErrWatchGap) {
				gap = true
				continue // resynchronize at once
			}
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, watchMaxBackoff)
	}
}

// applyWatch applies one change as if it had been written through this cache:
// first later reads are made at least as fresh as it, then the tenants it
// touches are bumped (a check keyed under the new epochs cannot be computed
// at an older revision, even with SpiceDB's quantized minimizeLatency).
func (c *Cached) applyWatch(ctx context.Context, ev WatchEvent) {
	if ev.Checkpoint && len(ev.Updates) == 0 && !ev.SchemaChanged {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, watchCatchUpMax)
	_, _ = c.watch.w.CatchUp(cctx) // on failure reads go to the head until a revision is recorded
	cancel()
	if len(ev.Updates) > 0 {
		c.invalidate(ev.Updates)
	}
	if ev.SchemaChanged {
		c.invalidateSchema()
		c.relearn(ctx)
	}
	// counted once applied, the update count last: whoever sees it sees the event counted
	c.watch.events.Add(1)
	c.metrics.watchEvents.Inc()
	if len(ev.Updates) > 0 {
		c.watch.updates.Add(uint64(len(ev.Updates)))
	}
}

// resync recovers from changes the watch lost: a new cursor at the head, then
// the tenancy index learned again from scratch under a new global epoch, so no
// answer cached before the gap is served again.
func (c *Cached) resync(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, watchCatchUpMax)
	cursor, err := c.watch.w.CatchUp(cctx)
	cancel()
	if err != nil {
		return "", err
	}
	c.ten.reset()
	c.countBumps(0, true)
	if err := c.learn(ctx); err != nil {
		c.ten.degrade()
	}
	return cursor, nil
}
