package redisconn

import (
	"testing"

	"github.com/gomodule/redigo/redis"
	"github.com/matryer/is"
)

func TestPassingTellsAnOutageFromARefusedCommand(t *testing.T) {
	is := is.New(t)
	for _, reply := range []string{
		"OOM command not allowed when used memory > 'maxmemory'.",
		"LOADING Redis is loading the dataset in memory",
		"READONLY You can't write against a read only replica.",
		"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
		"BUSY Redis is busy running a script.",
		"TRYAGAIN Multiple keys request during rehashing of slot",
		"CLUSTERDOWN The cluster is down",
		"MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
	} {
		is.True(Passing(redis.Error(reply))) // Redis cannot serve us now
	}
	for _, reply := range []string{
		"ERR wrong number of arguments for 'set' command",
		"WRONGTYPE Operation against a key holding the wrong kind of value",
		"NOSCRIPT No matching script. Please use EVAL.",
		"OOMPH not a code", // a code is the whole first word
	} {
		is.True(!Passing(redis.Error(reply))) // the command itself is refused
	}
}
