package jobs

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/gomodule/redigo/redis"

	"github.com/thumbnailed/thumbnailed/internal/redisconn"
)

// ErrBadCursor: the cursor is not one List gave.
var ErrBadCursor = errors.New("bad cursor")

// maxListScan bounds how many entries of a client's index one page reads,
// so a status filter that matches little cannot make a page expensive; the
// page is then shorter, with a cursor to go on.
const maxListScan = 1000

// List returns a client's jobs, newest first: up to limit of them with the
// given status ("" = any), after cursor ("" = from the newest), and the
// cursor of the next page ("" on the last one). Jobs that expired or were
// erased are left out (and out of the index).
func (s *Store) List(ctx context.Context, client string, status Status, limit int, cursor string) ([]*Job, string, error) {
	limit = max(limit, 1) // a page of none would have no last job to go on from
	maxScore, afterID := "+inf", ""
	if cursor != "" {
		score, id, err := decodeCursor(cursor)
		if err != nil {
			return nil, "", err
		}
		maxScore, afterID = strconv.FormatInt(score, 10), id
	}
	conn, err := s.conn(ctx)
	if err != nil {
		return nil, "", err
	}
	defer redisconn.Release(conn)
	key := s.clientKey(client)
	var out []*Job
	var gone []any
	defer func() {
		if len(gone) > 0 {
			_, _ = redis.DoContext(conn, ctx, "ZREM", append([]any{key}, gone...)...)
		}
	}()
	const batch = 50
	scannedTo := ""
	for offset := 0; offset < maxListScan; offset += batch {
		values, err := redis.Strings(redis.DoContext(conn, ctx, "ZREVRANGEBYSCORE", key, maxScore, "-inf", "WITHSCORES", "LIMIT", offset, batch))
		if err != nil {
			return nil, "", unavailable("list jobs", err)
		}
		var ids, scores []string
		var args []any
		for i := 0; i+1 < len(values); i += 2 {
			id, score := values[i], values[i+1]
			if afterID != "" && score == maxScore && id >= afterID {
				continue // at or before the cursor, among jobs of the same millisecond
			}
			ids, scores, args = append(ids, id), append(scores, score), append(args, s.recordKey(id))
		}
		if len(args) > 0 {
			bodies, err := redis.ByteSlices(redis.DoContext(conn, ctx, "MGET", args...))
			if err != nil {
				return nil, "", unavailable("list jobs", err)
			}
			for i, body := range bodies {
				scannedTo = encodeCursor(scores[i], ids[i])
				if body == nil {
					gone = append(gone, ids[i])
					continue
				}
				var job Job
				if err := json.Unmarshal(body, &job); err != nil {
					return nil, "", fmt.Errorf("decode job %s: %w", ids[i], err)
				}
				if status != "" && job.Status != status {
					continue
				}
				if len(out) == limit { // one more than the page: there is a next one
					last := out[len(out)-1]
					return out, encodeCursor(strconv.FormatInt(last.CreatedAt.UnixMilli(), 10), last.ID), nil
				}
				out = append(out, &job)
			}
		}
		if len(values)/2 < batch {
			return out, "", nil // the index has no more
		}
	}
	return out, scannedTo, nil // scanned enough for one page: go on from here
}

func encodeCursor(score, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(score + ":" + id))
}

func decodeCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", ErrBadCursor
	}
	score, id, ok := strings.Cut(string(b), ":")
	n, err := strconv.ParseInt(score, 10, 64)
	if !ok || err != nil || id == "" {
		return 0, "", ErrBadCursor
	}
	return n, id, nil
}
