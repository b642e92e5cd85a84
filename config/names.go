package config

import (
	"fmt"
	"sort"
	"strings"
)

// Names is every variable the service reads (a test checks Load reads
// exactly these).
var Names = []string{
	"THUMBNAILED_ADDR", "THUMBNAILED_ALLOW_ANONYMOUS_EMAIL", "THUMBNAILED_ALLOW_PRIVATE_NETWORKS",
	"THUMBNAILED_API_KEYS", "THUMBNAILED_API_KEYS_FILE", "THUMBNAILED_CALLBACK_INLINE_MAX_BYTES",
	"THUMBNAILED_CALLBACK_RETRY_SCHEDULE", "THUMBNAILED_CALLBACK_TIMEOUT", "THUMBNAILED_DEBUG_ADDR", "THUMBNAILED_EMAIL_PER_RECIPIENT_PER_HOUR",
	"THUMBNAILED_EMAIL_RETRY_SCHEDULE", "THUMBNAILED_FETCH_TIMEOUT", "THUMBNAILED_IDLE_TIMEOUT",
	"THUMBNAILED_JOB_TIMEOUT", "THUMBNAILED_LINK_SECRET", "THUMBNAILED_LOG_LEVEL", "THUMBNAILED_MAIL_FROM",
	"THUMBNAILED_MAX_CONNECTIONS", "THUMBNAILED_MAX_DIMENSION", "THUMBNAILED_MAX_INFLIGHT_UPLOAD_BYTES",
	"THUMBNAILED_MAX_OUTPUT_PIXELS", "THUMBNAILED_MAX_PIXELS", "THUMBNAILED_MAX_UPLOAD_BYTES",
	"THUMBNAILED_NAMESPACE", "THUMBNAILED_OUTBOX_DIR", "THUMBNAILED_PUBLIC_URL", "THUMBNAILED_RATE_BURST",
	"THUMBNAILED_RATE_LIMIT", "THUMBNAILED_REDIS_URL", "THUMBNAILED_RESULT_TTL", "THUMBNAILED_SHUTDOWN_TIMEOUT",
	"THUMBNAILED_SMTP_URL", "THUMBNAILED_STALE_AFTER", "THUMBNAILED_STORAGE_URL", "THUMBNAILED_TRUSTED_PROXIES",
	"THUMBNAILED_WAKE_ON_ENQUEUE", "THUMBNAILED_WEBHOOK_SECRET", "THUMBNAILED_WEBUI_ADDR",
	"THUMBNAILED_WEBUI_HOSTS", "THUMBNAILED_WEBUI_PASSWORD", "THUMBNAILED_WORKER_CONCURRENCY",
}

// Unknown returns a warning for every THUMBNAILED_* variable of environ
// ("NAME=value" pairs) that the service does not read, naming the closest
// known one: a misspelt setting is otherwise silently ignored.
func Unknown(environ []string) []string {
	known := map[string]bool{}
	for _, n := range Names {
		known[n] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "THUMBNAILED_") || known[name] || strings.HasPrefix(name, "THUMBNAILED_TEST_") {
			continue
		}
		out = append(out, fmt.Sprintf("%s is not a setting of this service and is ignored; did you mean %s?", name, closest(name)))
	}
	sort.Strings(out)
	return out
}

// closest is the known name at the least edit distance from name.
func closest(name string) string {
	best, bestD := "", 1<<30
	for _, n := range Names {
		if d := distance(name, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
