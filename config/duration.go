package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// msPattern is the grammar of vercel/ms, the duration strings of @nestjs/jwt's
// expiresIn: a number, optional spaces, an optional unit in short or long form.
var msPattern = regexp.MustCompile(`(?i)^(-?(?:\d+)?\.?\d+) *(milliseconds?|msecs?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w|years?|yrs?|y)?$`)

var msUnits = map[string]time.Duration{
	"ms": time.Millisecond, "msec": time.Millisecond, "msecs": time.Millisecond,
	"millisecond": time.Millisecond, "milliseconds": time.Millisecond,
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	"w": 7 * 24 * time.Hour, "week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour,
	// vercel/ms counts a year as 365.25 days.
	"y": 8766 * time.Hour, "yr": 8766 * time.Hour, "yrs": 8766 * time.Hour, "year": 8766 * time.Hour, "years": 8766 * time.Hour,
}

// ParseDuration reads a duration as NestJS users write one: vercel/ms strings
// ("15m", "12h", "7d", "1.5 hours", "250ms"), a bare number of seconds ("900",
// as jsonwebtoken reads a numeric expiresIn), or Go's form ("1h30m").
func ParseDuration(s string) (time.Duration, error) {
	v := strings.TrimSpace(s)
	if m := msPattern.FindStringSubmatch(v); m != nil {
		n, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return 0, fmt.Errorf("duration %q: %w", s, err)
		}
		unit := time.Second // a bare number, as jsonwebtoken reads a numeric expiresIn
		if m[2] != "" {
			unit = msUnits[strings.ToLower(m[2])]
		}
		d := n * float64(unit)
		if math.Abs(d) >= math.MaxInt64 {
			return 0, fmt.Errorf("duration %q is out of range", s)
		}
		return time.Duration(math.Round(d)), nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d, nil
	}
	return 0, fmt.Errorf("duration %q: want a number of seconds (900), a vercel/ms string (15m, 12h, 7d) or a Go duration (1h30m)", s)
}
