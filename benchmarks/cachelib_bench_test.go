package benchmarks

import (
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/maypok86/otter/v2"
)

// The cache-library choice of ADR 0004: golang-lru (simplelru, sharded, one mutex
// per shard, as engine.Cached uses it) against otter v2 (W-TinyLFU, lock-free reads),
// Zipf-distributed keys, 90% reads / 10% writes, all cores.
const (
	libKeys     = 200_000
	libCapacity = 20_000
)

func zipfKeys(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(r, 1.1, 1, libKeys-1)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "document:d" + strconv.FormatUint(z.Uint64(), 10) + "#view@user:u1|t1|3"
	}
	return keys
}

type shardedLRU struct {
	seed   maphash.Seed
	shards []struct {
		mu  sync.Mutex
		lru *simplelru.LRU[string, int]
	}
}

func newShardedLRU(shards int) *shardedLRU {
	s := &shardedLRU{seed: maphash.MakeSeed()}
	s.shards = make([]struct {
		mu  sync.Mutex
		lru *simplelru.LRU[string, int]
	}, shards)
	for i := range s.shards {
		s.shards[i].lru, _ = simplelru.NewLRU[string, int](libCapacity/shards, nil)
	}
	return s
}

func (s *shardedLRU) get(k string) bool {
	sh := &s.shards[maphash.String(s.seed, k)%uint64(len(s.shards))]
	sh.mu.Lock()
	_, ok := sh.lru.Get(k)
	sh.mu.Unlock()
	return ok
}

func (s *shardedLRU) set(k string) {
	sh := &s.shards[maphash.String(s.seed, k)%uint64(len(s.shards))]
	sh.mu.Lock()
	sh.lru.Add(k, 1)
	sh.mu.Unlock()
}

func benchLib(b *testing.B, get func(string) bool, set func(string)) {
	keys := zipfKeys(1 << 20)
	for _, k := range keys[:1<<16] { // warm
		if !get(k) {
			set(k)
		}
	}
	var hits, total atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.IntN(len(keys))
		var h, n int64
		for pb.Next() {
			k := keys[i&(len(keys)-1)]
			i++
			n++
			if get(k) {
				h++
			} else {
				set(k) // a miss computes and stores
			}
		}
		hits.Add(h)
		total.Add(n)
	})
	b.ReportMetric(float64(hits.Load())/float64(max(1, total.Load()))*100, "hit%")
}

func BenchmarkCacheLibrary(b *testing.B) {
	b.Run("golang-lru-sharded32", func(b *testing.B) {
		c := newShardedLRU(32)
		benchLib(b, c.get, c.set)
	})
	b.Run("otter-v2", func(b *testing.B) {
		c := otter.Must(&otter.Options[string, int]{MaximumSize: libCapacity})
		benchLib(b, func(k string) bool { _, ok := c.GetIfPresent(k); return ok }, func(k string) { c.Set(k, 1) })
		c.InvalidateAll()
	})
}
