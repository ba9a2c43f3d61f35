package engine

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/rs/zerolog"
)

// LogTo sends embedded SpiceDB's logs, which it writes with zerolog through the
// context's (default) logger, to logger: SpiceDB's warnings and errors at their
// level, its info and debug lines at debug (its info lines include a dump of
// the whole server configuration at start). It sets a process-wide default, as
// SpiceDB reads one; call it once, before StartEmbedded.
func LogTo(logger *slog.Logger) {
	level := zerolog.WarnLevel
	if logger.Enabled(context.Background(), slog.LevelDebug) {
		level = zerolog.DebugLevel
	}
	zl := zerolog.New(slogWriter{logger}).Level(level)
	zerolog.DefaultContextLogger = &zl
}

// slogWriter receives zerolog's JSON lines, one per Write, and logs each as a
// slog record with the line's fields as attributes.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(line []byte) (int, error) {
	var fields map[string]any
	if err := json.Unmarshal(line, &fields); err != nil {
		w.log.Warn("spicedb: unreadable log line", "line", string(line))
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
	w.log.LogAttrs(context.Background(), level, "spicedb: "+msg, attrs...)
	return len(line), nil
}
