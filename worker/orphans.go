package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gomodule/redigo/redis"
)

// gocraft/work fetches a job by moving it, in one script, from its queue to
// the in-progress list of the fetching pool, and only then hands it to a
// handler. When Redis dies between the move and the reply, the move stands
// (it was written to the AOF) and the pool never learns of the job: it sits
// in the in-progress list of a pool that is alive and well, which the
// library's reaper never looks at (it only reaps dead pools). Our record
// still says queued. orphans finds such entries and puts them back on
// their queue.
//
// An entry is an orphan when it is seen in an in-progress list twice, at
// least staleAfter apart, while its work has not started (idle reports
// that). A job that is really running has started within milliseconds of
// its fetch, so it is never taken for one; a job re-queued by mistake would
// only run to find its work done or held, and skip.
type orphans struct {
	pool       *redis.Pool
	ns         string
	jobTypes   []string
	staleAfter time.Duration
	// idle reports whether the work a job names has not started: its
	// thumbnail is still queued, its delivery attempt not yet claimed.
	idle func(ctx context.Context, jobType string, args map[string]any) (bool, error)

	seen map[string]time.Time // in-progress list + "\n" + entry -> first seen
}

// requeueOrphan moves one entry from an in-progress list back to its queue
// and releases the lock count the fetch took, as the library's own reaper
// does; it does nothing if the entry has left the list meanwhile.
// KEYS: in-progress list, queue, lock, lock info. ARGV: entry, pool id.
var requeueOrphan = redis.NewScript(4, `
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  if tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then redis.call('DECR', KEYS[3]) end
  if tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0') > 0 then redis.call('HINCRBY', KEYS[4], ARGV[2], -1) end
  return 1
end
return 0
`)

// sweep looks at every in-progress list once and re-queues the orphans. It
// returns how many it re-queued.
func (o *orphans) sweep(ctx context.Context, now time.Time) (int, error) {
	conn, err := o.pool.GetContext(ctx)
	if err != nil {
		return 0, fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	pools, err := redis.Strings(redis.DoContext(conn, ctx, "SMEMBERS", o.ns+":worker_pools"))
	if err != nil {
		return 0, fmt.Errorf("list worker pools: %w", err)
	}
	seen := map[string]time.Time{}
	requeued := 0
	for _, poolID := range pools {
		for _, jobType := range o.jobTypes {
			queue := o.ns + ":jobs:" + jobType
			inProgress := queue + ":" + poolID + ":inprogress"
			entries, err := redis.Strings(redis.DoContext(conn, ctx, "LRANGE", inProgress, 0, -1))
			if err != nil {
				return requeued, fmt.Errorf("read %s: %w", inProgress, err)
			}
			for _, entry := range entries {
				var j struct {
					Args map[string]any `json:"args"`
				}
				if json.Unmarshal([]byte(entry), &j) != nil {
					continue
				}
				idle, err := o.idle(ctx, jobType, j.Args)
				if err != nil || !idle {
					continue
				}
				key := inProgress + "\n" + entry
				first, ok := o.seen[key]
				if !ok {
					first = now
				}
				if now.Sub(first) < o.staleAfter {
					seen[key] = first
					continue
				}
				n, err := redis.Int(requeueOrphan.DoContext(ctx, conn, inProgress, queue, queue+":lock", queue+":lock_info", entry, poolID))
				if err != nil {
					return requeued, fmt.Errorf("re-queue from %s: %w", inProgress, err)
				}
				requeued += n
			}
		}
	}
	o.seen = seen // forget what has left the lists
	return requeued, nil
}
