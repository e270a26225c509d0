package models

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// gormLogger sends gorm's messages to slog as ordinary records: the message
// formatted, and a statement's SQL (with placeholders, never the values,
// which hold hashes), rows and duration as attributes that every handler,
// JSON included, can write.
//
// A failed statement is logged at debug only: the operation's error goes up
// to its caller, which retries it or answers it, and the edge logs it once.
// A slow statement is a warning.
type gormLogger struct {
	log  *slog.Logger
	slow time.Duration
}

func newGormLogger(log *slog.Logger) logger.Interface {
	return gormLogger{log: log.With("component", "gorm"), slow: 500 * time.Millisecond}
}

func (l gormLogger) LogMode(logger.LogLevel) logger.Interface { return l }

func (l gormLogger) Info(ctx context.Context, msg string, args ...any) {
	l.log.InfoContext(ctx, fmt.Sprintf(msg, args...))
}

func (l gormLogger) Warn(ctx context.Context, msg string, args ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(msg, args...))
}

func (l gormLogger) Error(ctx context.Context, msg string, args ...any) {
	l.log.ErrorContext(ctx, fmt.Sprintf(msg, args...))
}

func (l gormLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	elapsed := time.Since(begin)
	switch {
	case err != nil && !errors.Is(err, gorm.ErrRecordNotFound):
		if !l.log.Enabled(ctx, slog.LevelDebug) {
			return
		}
		sql, rows := fc()
		l.log.DebugContext(ctx, "statement failed", "sql", sql, "rows", rows, "duration_ms", ms(elapsed), "error", err.Error())
	case elapsed > l.slow:
		sql, rows := fc()
		l.log.WarnContext(ctx, "slow statement", "sql", sql, "rows", rows, "duration_ms", ms(elapsed))
	}
}

func (l gormLogger) ParamsFilter(ctx context.Context, sql string, params ...any) (string, []any) {
	return sql, nil // the SQL with its placeholders, never the values
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
