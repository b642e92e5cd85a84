package retry_test

import (
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/thumbnailed/thumbnailed/retry"
)

func TestParseReadsTheDefaultCallbackSchedule(t *testing.T) {
	is := is.New(t)
	s, err := retry.Parse("5s,5m,30m,2h,5h,10h,10h")
	is.NoErr(err)
	is.Equal(s, retry.Schedule{5 * time.Second, 5 * time.Minute, 30 * time.Minute,
		2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour})
	is.Equal(s.String(), "5s,5m,30m,2h,5h,10h,10h")
	is.Equal(s.Attempts(), 8)
}

func TestParseAllowsSpacesAndSubSecondWaits(t *testing.T) {
	is := is.New(t)
	s, err := retry.Parse(" 10ms , 1m30s,2h ")
	is.NoErr(err)
	is.Equal(s, retry.Schedule{10 * time.Millisecond, 90 * time.Second, 2 * time.Hour})
	is.Equal(s.String(), "10ms,90s,2h")
	again, err := retry.Parse(s.String())
	is.NoErr(err)
	is.Equal(again, s)
}

func TestParseNamesTheBadItem(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"5s,,5m", "item 2 is empty"},
		{"5s,5m,", "item 3 is empty"},
		{"5s,soon", `item 2 "soon" is not a duration`},
		{"5", `item 1 "5" is not a duration`},
		{"5s,0s", `item 2 "0s" must be greater than zero`},
		{"-1m", `item 1 "-1m" must be greater than zero`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			is := is.New(t)
			_, err := retry.Parse(tc.in)
			is.True(err != nil)
			is.True(strings.Contains(err.Error(), tc.want)) // the message names the problem
		})
	}
}

func TestDelayWalksTheScheduleThenStops(t *testing.T) {
	is := is.New(t)
	s := retry.MustParse("1m,5m,30m")

	d, ok := s.Delay(1) // the first attempt failed
	is.True(ok)
	is.Equal(d, time.Minute)
	d, ok = s.Delay(2)
	is.True(ok)
	is.Equal(d, 5*time.Minute)
	d, ok = s.Delay(3)
	is.True(ok)
	is.Equal(d, 30*time.Minute)

	_, ok = s.Delay(4) // four attempts made: the schedule is exhausted
	is.True(!ok)
	_, ok = s.Delay(0)
	is.True(!ok)
	_, ok = retry.Schedule(nil).Delay(1)
	is.True(!ok)
}
