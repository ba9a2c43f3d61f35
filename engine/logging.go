package engine

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// Embedded SpiceDB logs with zerolog through its default context logger, a
// process-wide variable it reads from many goroutines. It is pointed at the
// bridge below once, at package initialisation, before any SpiceDB runs; LogTo
// later changes only values read atomically: the slog logger and zerolog's
// global level (disabled until LogTo, so an unbridged process formats nothing).
var (
	bridgeTarget atomic.Pointer[slog.Logger]
	bridgeLogger = zerolog.New(slogWriter{}).Level(zerolog.TraceLevel)
)

func init() {
	zerolog.DefaultContextLogger = &bridgeLogger
	zerolog.SetGlobalLevel(zerolog.Disabled)
}

// LogTo sends embedded SpiceDB's logs to logger: SpiceDB's warnings and errors
// at their level, its info and debug lines at debug only (its info lines
// include a dump of the whole server configuration, secrets masked). The
// setting is process-wide (SpiceDB reads a process-wide logger); the last call wins.
func LogTo(logger *slog.Logger) {
	bridgeTarget.Store(logger)
	level := zerolog.WarnLevel
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		level = zerolog.DebugLevel
	}
	zerolog.SetGlobalLevel(level)
}

// slogWriter receives zerolog's JSON lines, one per Write, and logs each as a
// slog record with the line's fields as attributes.
type slogWriter struct{}

func (slogWriter) Write(line []byte) (int, error) {
	log := bridgeTarget.Load()
	if log == nil {
		return len(line), nil
	}
	var fields map[string]any
	if err := json.Unmarshal(line, &fields); err != nil {
		log.Warn("spicedb: unreadable log line", "line", string(line))
		return len(line), nil
	}
	level := slog.LevelDebug
	switch fields[zerolog.LevelFieldName] {
	case "warn":
		level = slog.LevelWarn
	case "error", "fatal", "panic":
		level = slog.LevelError
	}
	msg, _ := fields[zerolog.MessageFieldName].(string)
	delete(fields, zerolog.LevelFieldName)
	delete(fields, zerolog.MessageFieldName)
	attrs := make([]slog.Attr, 0, len(fields)+1)
	attrs = append(attrs, slog.String("component", "spicedb"))
	for k, v := range fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	log.LogAttrs(context.Background(), level, "spicedb: "+msg, attrs...)
	return len(line), nil
}
