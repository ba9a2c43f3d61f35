package engine

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestSpiceDBLogsReachSlog: with LogTo, embedded SpiceDB's own log lines arrive
// as slog records (level mapped, fields as attributes); at info, its info lines
// are left out and its warnings kept.
func TestSpiceDBLogsReachSlog(t *testing.T) {
	t.Cleanup(func() { bridgeTarget.Store(nil); zerolog.SetGlobalLevel(zerolog.Disabled) })

	var debug bytes.Buffer
	LogTo(slog.New(slog.NewTextHandler(&debug, &slog.HandlerOptions{Level: slog.LevelDebug})))
	e, err := StartEmbedded(context.Background(), EmbeddedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	out := debug.String()
	if !strings.Contains(out, `msg="spicedb: running server"`) || !strings.Contains(out, "component=spicedb") {
		t.Fatalf("SpiceDB's start-up lines did not reach slog at debug:\n%.2000s", out)
	}

	var info bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&info, &slog.HandlerOptions{Level: slog.LevelInfo}))
	LogTo(logger)
	zerolog.Ctx(context.Background()).Info().Msg("chatty")
	zerolog.Ctx(context.Background()).Warn().Str("datastore", "memory").Msg("trouble")
	zerolog.Ctx(context.Background()).Error().Msg("broken")
	out = info.String()
	for _, want := range []string{`level=WARN msg="spicedb: trouble"`, "datastore=memory", `level=ERROR msg="spicedb: broken"`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "chatty") {
		t.Errorf("an info line reached an info-level logger:\n%s", out)
	}
}
