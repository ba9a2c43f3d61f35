package main

import (
	"context"
	"fmt"
	"github.com/trellis-iam/trellis/benchmarks/proc"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// stats is what one window of a phase measured.
type stats struct {
	seconds   float64
	latencies []time.Duration // sorted
	requests  int64           // completed, errors included
	errors    int64
	wrong     int64 // check answers that differ from the data's truth
	writes    int64
	stale     int64 // reads after a write, with its token, that missed the write
	hits      float64
	misses    float64
	hitsKnown bool
	serverCPU time.Duration
	pgCPU     time.Duration
}

// rate is the completed requests a second: checks, and with writes each
// write and its fresh read.
func (s stats) rate() float64 { return float64(s.requests-s.errors) / s.seconds }

func (s stats) p(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	return s.latencies[int(float64(len(s.latencies)-1)*q/100)]
}

func (s stats) hitRatio() string {
	if !s.hitsKnown || s.hits+s.misses == 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f %%", 100*s.hits/(s.hits+s.misses))
}

// load is what the workers share in a phase.
type load struct {
	t        *target
	data     dataset
	pairs    []pair
	seq      []int32
	next     atomic.Int64
	workers  int
	writePct float64
	verify   bool // compare every check answer with the truth (not for the ceiling)
	srvPID   int
	pgPID    int
	writeSeq atomic.Int64 // numbers the writers' users: each write names a fresh one
}

var reported atomic.Int64

func report(err error) {
	if reported.Add(1) <= 5 {
		fmt.Fprintln(os.Stderr, "realistic: error:", err)
	}
}

// phase runs the closed loop for d and returns one stats per window of
// window length (the last one shorter when d is not a multiple).
func (l *load) phase(ctx context.Context, d, window time.Duration) []stats {
	n := int((d + window - 1) / window)
	type local struct {
		lat                             []time.Duration
		req, errs, wrong, writes, stale int64
	}
	per := make([][]local, l.workers)
	for w := range per {
		per[w] = make([]local, n)
	}
	out := make([]stats, n)
	start := time.Now()
	end := start.Add(d)
	// sample the counters at each window boundary
	sample := func(i int) {
		out[i].serverCPU = proc.CPUTime(l.srvPID)
		out[i].pgCPU = proc.TreeCPU(l.pgPID)
		out[i].hits, out[i].misses, out[i].hitsKnown = l.t.cacheCounters()
	}
	before := stats{}
	before.serverCPU, before.pgCPU = proc.CPUTime(l.srvPID), proc.TreeCPU(l.pgPID)
	before.hits, before.misses, before.hitsKnown = l.t.cacheCounters()
	var sampler sync.WaitGroup
	sampler.Add(1)
	stopSampler := make(chan struct{})
	go func() {
		defer sampler.Done()
		for i := 0; i < n-1; i++ {
			select {
			case <-time.After(time.Until(start.Add(time.Duration(i+1) * window))):
				sample(i)
			case <-stopSampler:
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range l.workers {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 99))
			var pending *viewerWrite
			// a request counts in the window it completes in
			at := func() *local { return &per[w][min(int(time.Since(start)/window), n-1)] }
			for now := time.Now(); now.Before(end) && ctx.Err() == nil; now = time.Now() {
				if l.writePct > 0 && r.Float64()*100 < l.writePct {
					next, stale, err := l.writeAndRead(r, w, pending)
					pending = next
					acc := at()
					acc.req += 2
					acc.writes++
					if err != nil {
						acc.errs++
						report(err)
					} else if stale {
						acc.stale++
					}
					continue // latencies are the stream's checks only
				}
				p := l.pairs[l.seq[int(l.next.Add(1))%len(l.seq)]]
				path, body := l.t.check(p.user, p.doc, "", false)
				resp, err := l.t.do("POST", path, body)
				acc := at()
				acc.req++
				if err != nil {
					acc.errs++
					report(err)
					continue
				}
				acc.lat = append(acc.lat, time.Since(now))
				if l.verify && isAllowed(resp) != l.data.allowed(int(p.user), int(p.doc)) {
					acc.wrong++
				}
			}
		}(w)
	}
	wg.Wait()
	close(stopSampler)
	sampler.Wait()
	sample(n - 1)
	total := time.Since(start)
	for i := range out {
		for w := range per {
			x := per[w][i]
			out[i].latencies = append(out[i].latencies, x.lat...)
			out[i].requests += x.req
			out[i].errors += x.errs
			out[i].wrong += x.wrong
			out[i].writes += x.writes
			out[i].stale += x.stale
		}
		slices.Sort(out[i].latencies)
		out[i].seconds = window.Seconds()
		if i == n-1 {
			out[i].seconds = total.Seconds() - float64(n-1)*window.Seconds()
		}
	}
	// counters are cumulative: turn them into each window's deltas
	prev := before
	for i := range out {
		cur := out[i]
		out[i].serverCPU -= prev.serverCPU
		out[i].pgCPU -= prev.pgCPU
		out[i].hits -= prev.hits
		out[i].misses -= prev.misses
		out[i].hitsKnown = cur.hitsKnown && prev.hitsKnown
		prev = cur
	}
	return out
}

// viewerWrite is a worker's relationship between its touch and its delete.
type viewerWrite struct {
	doc     int32
	subject string
}

// writeAndRead adds a viewer of a random document, a user named for this
// write alone (pending nil), or removes the one added before (pending set);
// then it checks that user with the write's token (OpenFGA: higher
// consistency): the answer must show the write, else the read was stale. It
// returns what the next call removes.
func (l *load) writeAndRead(r *rand.Rand, w int, pending *viewerWrite) (next *viewerWrite, stale bool, err error) {
	touch := pending == nil
	if touch {
		pending = &viewerWrite{doc: int32(r.IntN(l.data.docs)), subject: fmt.Sprintf("user:w%d_%d", w, l.writeSeq.Add(1))}
		next = pending
	}
	path, body := l.t.write(touch, pending.doc, pending.subject)
	resp, err := l.t.do("POST", path, body)
	if err != nil {
		return nil, false, err
	}
	path, body = l.t.checkSubject(pending.subject, pending.doc, writtenAt(resp))
	if resp, err = l.t.do("POST", path, body); err != nil {
		return nil, false, err
	}
	return next, isAllowed(resp) != touch, nil
}
