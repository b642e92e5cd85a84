// Package retry holds the one retry schedule that email and callback
// deliveries share: a list of waits, one per retry, read from configuration
// such as "5s,5m,30m,2h,5h,10h,10h".
package retry

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Schedule is the wait before each retry: Schedule[0] is the wait after the
// first failed attempt, Schedule[1] after the second, and so on. A delivery
// makes at most 1+len(Schedule) attempts.
type Schedule []time.Duration

// Parse reads a comma-separated list of Go durations ("5s, 5m, 30m").
// Every item must be positive and there must be at least one; an error names
// the bad item and its position.
func Parse(s string) (Schedule, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("retry schedule is empty: give at least one duration, such as 5s,5m,30m")
	}
	items := strings.Split(s, ",")
	schedule := make(Schedule, 0, len(items))
	for i, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("retry schedule item %d is empty", i+1)
		}
		d, err := time.ParseDuration(item)
		if err != nil {
			return nil, fmt.Errorf("retry schedule item %d %q is not a duration such as 30s, 5m or 2h", i+1, item)
		}
		if d <= 0 {
			return nil, fmt.Errorf("retry schedule item %d %q must be greater than zero", i+1, item)
		}
		schedule = append(schedule, d)
	}
	return schedule, nil
}

// MustParse is Parse for constants known to be valid; it panics otherwise.
func MustParse(s string) Schedule {
	schedule, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return schedule
}

// Delay is the wait before attempt number attempt+1, after attempt attempts
// (1-based) have failed. It reports false when the schedule is exhausted and
// no attempt should follow.
func (s Schedule) Delay(attempt int) (time.Duration, bool) {
	if attempt < 1 || attempt > len(s) {
		return 0, false
	}
	return s[attempt-1], true
}

// Attempts is how many attempts the schedule allows in all: the first one
// plus one per retry.
func (s Schedule) Attempts() int { return 1 + len(s) }

// String formats the schedule the way Parse reads it.
func (s Schedule) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = formatDuration(d)
	}
	return strings.Join(parts, ",")
}

// formatDuration writes whole hours, minutes and seconds the short way
// ("2h", "5m") instead of time.Duration's "2h0m0s".
func formatDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	default:
		return d.String()
	}
}
