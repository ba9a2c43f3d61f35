package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/trellis-iam/trellis"
)

// Pre-warming: a process that starts with an empty cache sends every first
// check to SpiceDB, and after a deploy those misses are what users meet. The
// cache can name the questions it holds current answers to (HotRequests), a
// caller can persist them (questions only, never answers), and the next process
// asks them again in the background before they are asked by users (Prewarm).
// The answers are computed fresh by the engine; nothing of the old process's
// answers survives.

// PrewarmBatch is how many questions Prewarm sends to the engine at once.
const PrewarmBatch = 100

// HotRequests returns up to n questions whose answers this cache holds and
// would serve now (computed under the schema version and tenancy stamps in
// force), hottest first as the cache's eviction policy ranks them, so that a
// file cut at n keeps the questions asked most. Consistency is left at its
// zero value (minimizeLatency).
func (c *Cached) HotRequests(n int) []CheckRequest {
	if n <= 0 {
		return nil
	}
	// Hottest holds the eviction policy's lock: only collect keys under it
	keys := make([]string, 0, min(n, c.entries.EstimatedSize()))
	for e := range c.entries.Hottest() {
		if len(keys) >= n {
			break
		}
		keys = append(keys, e.Key)
	}
	out := make([]CheckRequest, 0, len(keys))
	for _, key := range keys {
		req, ok := requestOfKey(key)
		if !ok {
			continue
		}
		// only keys that are still current: an old epoch's entry is dead weight
		if now, err := c.key(req); err != nil || now != key {
			continue
		}
		out = append(out, req)
	}
	return out
}

// requestOfKey reads the question back from a cache key (see Cached.key):
// six stamp fields, then resource#permission@subject and, after "|", the
// caveat context as JSON. Object ids may hold '|' but never '#', '@', ':' or
// '{', so the parse is unambiguous; HotRequests still checks it by rebuilding
// the key.
func requestOfKey(key string) (CheckRequest, bool) {
	rest := key
	for range 6 {
		_, after, ok := strings.Cut(rest, "|")
		if !ok {
			return CheckRequest{}, false
		}
		rest = after
	}
	resource, rest, ok := strings.Cut(rest, "#")
	if !ok {
		return CheckRequest{}, false
	}
	perm, subject, ok := strings.Cut(rest, "@")
	if !ok {
		return CheckRequest{}, false
	}
	var ctxJSON string
	if i := strings.Index(subject, "|{"); i >= 0 {
		subject, ctxJSON = subject[:i], subject[i+1:]
	}
	req := CheckRequest{Permission: perm}
	var err error
	if req.Resource, err = ParseObjectRef("resource", resource); err != nil {
		return CheckRequest{}, false
	}
	if req.Subject, err = ParseSubjectRef("subject", subject); err != nil {
		return CheckRequest{}, false
	}
	if ctxJSON != "" {
		if err := json.Unmarshal([]byte(ctxJSON), &req.Context); err != nil {
			return CheckRequest{}, false
		}
	}
	return req, true
}

// Prewarm asks the engine the questions in reqs that the cache cannot answer
// yet, PrewarmBatch at a time with at most inFlight batches in flight (so it
// never takes more than inFlight engine calls away from live traffic; fewer
// than 1 is 1), in the order given (hottest first from HotRequests), and
// caches the answers. It does not count as hits or misses (those are users'
// checks). A batch the engine refuses as invalid (a type or permission the
// schema no longer has) is skipped; it stops at ctx's end or at the first
// other engine error (the engine is unavailable). It returns how many answers
// it cached.
func (c *Cached) Prewarm(ctx context.Context, reqs []CheckRequest, inFlight int) (int, error) {
	var (
		mu     sync.Mutex // guards reqs, the next batch's start
		warmed atomic.Int64
	)
	// next cuts the next batch of questions not answered yet
	next := func() ([]CheckRequest, []string) {
		mu.Lock()
		defer mu.Unlock()
		var batch []CheckRequest
		var keys []string
		for len(reqs) > 0 && len(batch) < PrewarmBatch {
			r := reqs[0]
			reqs = reqs[1:]
			r.Consistency = Consistency{}
			key, err := c.key(r)
			if err != nil {
				continue
			}
			if _, ok := c.lookup(key, 0); ok {
				continue
			}
			batch, keys = append(batch, r), append(keys, key)
		}
		return batch, keys
	}
	g, gctx := errgroup.WithContext(ctx)
	for range max(1, inFlight) {
		g.Go(func() error {
			for {
				if err := gctx.Err(); err != nil {
					return err
				}
				batch, keys := next()
				if len(batch) == 0 {
					return nil
				}
				e := cacheEntry{seq: c.seq.Load(), deadline: c.expiry.next()}
				c.countEngineCall()
				res, err := c.Engine.CheckBulk(gctx, batch)
				var invalid *trellis.ValidationError
				switch {
				case errors.As(err, &invalid):
					continue
				case err != nil:
					return err
				}
				for j, r := range res {
					e.res = r
					c.store(keys[j], e)
				}
				warmed.Add(int64(len(res)))
				c.metrics.prewarmed.Add(float64(len(res)))
			}
		})
	}
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return int(warmed.Load()), err
}

// hotRequestJSON is one persisted question: the shape of POST /v1/check's body.
type hotRequestJSON struct {
	Resource   string         `json:"resource"`
	Permission string         `json:"permission"`
	Subject    string         `json:"subject"`
	Context    map[string]any `json:"context,omitempty"`
}

// WriteHotRequests writes reqs as NDJSON, one question per line.
func WriteHotRequests(w io.Writer, reqs []CheckRequest) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, r := range reqs {
		if err := enc.Encode(hotRequestJSON{Resource: r.Resource.String(), Permission: r.Permission, Subject: r.Subject.String(), Context: r.Context}); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// ReadHotRequests reads at most max questions written by WriteHotRequests. A
// line that is not a valid question is an error naming its line: the file is
// Trellis's own, so damage is reported rather than guessed around.
func ReadHotRequests(r io.Reader, max int) ([]CheckRequest, error) {
	var out []CheckRequest
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan() && len(out) < max; line++ {
		var h hotRequestJSON
		if err := json.Unmarshal(sc.Bytes(), &h); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		res, err := ParseObjectRef("resource", h.Resource)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		sub, err := ParseSubjectRef("subject", h.Subject)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if h.Permission == "" || !validRelationName(h.Permission) {
			return nil, fmt.Errorf("line %d: %w", line, errors.New("permission is not a permission name"))
		}
		out = append(out, CheckRequest{Resource: res, Permission: h.Permission, Subject: sub, Context: h.Context})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
