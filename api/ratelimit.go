package api

import (
	"fmt"
	"math"
	"strconv"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"

	"github.com/trellis-iam/trellis/directory"
)

// RateLimits are the server's token buckets (ADR 0014). A zero Rate is no
// limit. A provider API key's own rateLimit replaces Key for that key.
// Checks (check, bulk, lookups, explain) through a key are exempt unless the
// key has its own rateLimit or Checks is set.
type RateLimits struct {
	Key    Bucket // every API key (provider and service-account keys)
	Org    Bucket // every caller acting inside one organization (its tokens and keys)
	Checks bool
}

// Bucket is one token bucket: Rate tokens a second, Burst at most.
type Bucket struct {
	Rate  float64
	Burst int
}

func (b Bucket) on() bool { return b.Rate > 0 && b.Burst > 0 }

// rateLimitedError is a request refused by a token bucket: 429 with Retry-After.
type rateLimitedError struct {
	scope      string // key | organization
	retryAfter int    // seconds
}

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("rate limited: this %s's request budget is spent; retry after %d s", e.scope, e.retryAfter)
}

// limiters holds the buckets, the least recently used forgotten past 100,000.
type limiters struct {
	cfg     RateLimits
	buckets *lru.Cache[string, *rate.Limiter]
	now     func() time.Time
}

func newLimiters(cfg RateLimits, now func() time.Time) *limiters {
	b, _ := lru.New[string, *rate.Limiter](100_000)
	return &limiters{cfg: cfg, buckets: b, now: now}
}

// take spends one token of the named bucket, or returns how long until one is there.
func (l *limiters) take(name string, b Bucket) (time.Duration, bool) {
	name += "|" + strconv.FormatFloat(b.Rate, 'g', -1, 64) + "|" + strconv.Itoa(b.Burst)
	lim, ok := l.buckets.Get(name)
	if !ok {
		lim = rate.NewLimiter(rate.Limit(b.Rate), b.Burst)
		l.buckets.Add(name, lim)
	}
	now := l.now()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Hour, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// limit applies the caller's buckets to one request.
func (s *Server) limit(c echo.Context, p directory.Principal, key *directory.KeyGrant) error {
	l := s.limits
	keyBucket, keyID := l.cfg.Key, p.KeyID
	ownRate := key != nil && key.RateLimit != nil
	if ownRate {
		keyBucket = Bucket{Rate: key.RateLimit.PerSecond, Burst: key.RateLimit.Burst}
	}
	org := p.Org
	if key != nil {
		org = key.Org
	}
	if keyID != "" && scopeOf(c.Request().Method, routeOf(c)) == directory.ScopeCheck && !ownRate && !l.cfg.Checks {
		return nil // an app's checks are not throttled unless its key says so
	}
	if keyID != "" && keyBucket.on() {
		if d, ok := l.take("key:"+keyID, keyBucket); !ok {
			return s.limited("key", d)
		}
	}
	if org != "" && l.cfg.Org.on() {
		if d, ok := l.take("org:"+org, l.cfg.Org); !ok {
			return s.limited("organization", d)
		}
	}
	return nil
}

func (s *Server) limited(scope string, d time.Duration) error {
	s.metrics.limited.WithLabelValues(scope).Inc()
	return &rateLimitedError{scope: scope, retryAfter: int(math.Max(1, math.Ceil(d.Seconds())))}
}
