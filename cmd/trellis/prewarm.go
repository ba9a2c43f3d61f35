package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/trellis-iam/trellis/engine"
)

// startPrewarm asks the questions saved in cfg.CacheWarmFile by the previous
// process again, in the background, and saves this cache's hot questions
// there every cfg.CacheWarmInterval. stop ends both and saves once more (a
// graceful shutdown's file is the freshest; after kill -9 the last periodic
// save is used). warming is non-nil while /readyz must wait for the pre-warm
// (cfg.CacheWarmReady: until it ends or that long has passed). Without a file
// it does nothing.
func startPrewarm(ctx context.Context, cfg Config, cached *engine.Cached, log *slog.Logger) (stop func(), warming func() error) {
	if cfg.CacheWarmFile == "" || cached == nil || cfg.CacheWarmKeys == 0 {
		return func() {}, func() error { return nil }
	}
	ctx, cancel := context.WithCancel(ctx)
	done, warmed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		prewarmFrom(ctx, cfg, cached, log)
		close(warmed)
		t := time.NewTicker(cfg.CacheWarmInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				saveHotRequests(cfg, cached, log)
			}
		}
	}()
	until := time.Now().Add(cfg.CacheWarmReady)
	warming = func() error {
		select {
		case <-warmed:
			return nil
		default:
		}
		if time.Now().After(until) {
			return nil // waited long enough: users warm the rest
		}
		return errors.New("pre-warming the check cache") // no file name: /readyz is unauthenticated
	}
	return func() {
		cancel()
		<-done
		saveHotRequests(cfg, cached, log)
	}, warming
}

// beforePrewarm, when set by a test, runs before the pre-warm asks anything.
var beforePrewarm atomic.Pointer[func()]

func prewarmFrom(ctx context.Context, cfg Config, cached *engine.Cached, log *slog.Logger) {
	if hook := beforePrewarm.Load(); hook != nil {
		(*hook)()
	}
	f, err := os.Open(cfg.CacheWarmFile)
	if errors.Is(err, fs.ErrNotExist) {
		return // the first start: nothing saved yet
	}
	if err != nil {
		log.Warn("cache pre-warm: cannot open the file", "file", cfg.CacheWarmFile, "err", err)
		return
	}
	reqs, err := engine.ReadHotRequests(f, cfg.CacheWarmKeys)
	f.Close()
	if err != nil {
		log.Warn("cache pre-warm: the file is damaged; starting cold", "file", cfg.CacheWarmFile, "err", err)
		return
	}
	start := time.Now()
	n, err := cached.Prewarm(ctx, reqs, cfg.CacheWarmInFlight)
	if err != nil && ctx.Err() == nil {
		log.Warn("cache pre-warm stopped", "warmed", n, "of", len(reqs), "err", err)
		return
	}
	log.Info("cache pre-warmed", "answers", n, "questions", len(reqs), "took", time.Since(start).Round(time.Millisecond))
}

// saveHotRequests replaces the file atomically (a crash mid-save leaves the
// previous one), readable by this user only: the questions name who asked
// about what.
func saveHotRequests(cfg Config, cached *engine.Cached, log *slog.Logger) {
	reqs := cached.HotRequests(cfg.CacheWarmKeys)
	tmp, err := os.CreateTemp(filepath.Dir(cfg.CacheWarmFile), ".trellis-warm-*")
	if err != nil {
		log.Warn("cache pre-warm: cannot save the questions", "file", cfg.CacheWarmFile, "err", err)
		return
	}
	err = engine.WriteHotRequests(tmp, reqs)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), cfg.CacheWarmFile)
	}
	if err != nil {
		os.Remove(tmp.Name())
		log.Warn("cache pre-warm: cannot save the questions", "file", cfg.CacheWarmFile, "err", err)
	}
}
