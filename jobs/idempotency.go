package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
)

// IdempotencyWindow is how long an Idempotency-Key is remembered.
const IdempotencyWindow = 24 * time.Hour

// Claim remembers that (scope, key) made job id from a request whose body
// has the given fingerprint. If the key was used before within the window it
// returns the first job's id and fingerprint and claimed=false.
func (s *Store) Claim(ctx context.Context, scope, key, fingerprint, id string) (firstID, firstFingerprint string, claimed bool, err error) {
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return "", "", false, fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	k := s.ns + ":idempotency:" + scope + ":" + key
	reply, err := redis.String(redis.DoContext(conn, ctx, "SET", k, id+" "+fingerprint, "NX", "GET", "PX", IdempotencyWindow.Milliseconds()))
	if errors.Is(err, redis.ErrNil) {
		return id, fingerprint, true, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("idempotency key: %w", err)
	}
	firstID, firstFingerprint, _ = strings.Cut(reply, " ")
	return firstID, firstFingerprint, false, nil
}

// Release forgets a claimed key whose job could not be created, so the
// client's retry with the same key is not answered with a job that never was.
func (s *Store) Release(ctx context.Context, scope, key string) error {
	conn, err := s.pool.GetContext(ctx)
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer conn.Close()
	_, err = redis.DoContext(conn, ctx, "DEL", s.ns+":idempotency:"+scope+":"+key)
	return err
}
