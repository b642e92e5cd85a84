package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/internal/redisconn"
)

// emailCountTTL keeps an hour's count a little past the end of its hour.
const emailCountTTL = 2 * time.Hour

// emailCountKey is {ns}:email-count:{sha256 of the lowercased address}:{unix hour}.
// The address itself never reaches Redis.
func (s *Store) emailCountKey(recipient string, now time.Time) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(recipient))))
	return s.ns + ":email-count:" + hex.EncodeToString(sum[:]) + ":" + strconv.FormatInt(now.Unix()/3600, 10)
}

// allowEmailScript counts distinct jobs per recipient and hour in a set, so
// a retried or re-run delivery of the same job is not counted twice, and a
// refused one is not counted at all (the set never grows past the limit).
// KEYS[1] the hour's key; ARGV[1] job id, ARGV[2] limit, ARGV[3] TTL seconds.
// Returns {allowed (1|0), count}.
var allowEmailScript = redis.NewScript(1, `
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  return {1, redis.call('SCARD', KEYS[1])}
end
local n = redis.call('SCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then
  return {0, n}
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, n + 1}
`)

// AllowEmail counts job's email to recipient against a limit of emails per
// recipient per clock hour (the hour of now). It reports whether the email
// may be sent and how many emails the hour has counted for the recipient,
// this one included when allowed. Asking again for the same job in the same
// hour is allowed without counting twice.
func (s *Store) AllowEmail(ctx context.Context, recipient, jobID string, limit int, now time.Time) (allowed bool, count int, err error) {
	conn, err := s.conn(ctx)
	if err != nil {
		return false, 0, err
	}
	defer redisconn.Release(conn)
	reply, err := redis.Int64s(allowEmailScript.DoContext(ctx, conn,
		s.emailCountKey(recipient, now), jobID, limit, int64(emailCountTTL/time.Second)))
	if err != nil {
		return false, 0, unavailable("email count", err)
	}
	if len(reply) != 2 {
		return false, 0, fmt.Errorf("email count: unexpected reply %v", reply)
	}
	return reply[0] == 1, int(reply[1]), nil
}
