package safehttp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
)

// How callers classify an error from Fetch or Do (every error below is
// reachable with errors.As / errors.Is through *url.Error):
//
//	*ForbiddenError                    -> source_forbidden (callback_forbidden); permanent
//	*TooLargeError                     -> source_too_large; permanent
//	*StatusError 404, 410              -> source_not_found; permanent
//	*StatusError 429, 5xx              -> transient: retry (honour RetryAfter), then source_unreachable
//	*StatusError other 4xx             -> permanent; source_unreachable
//	IsTimeout(err)                     -> timeout (check it before the network cases)
//	ErrTooManyRedirects                -> permanent; source_unreachable
//	*net.DNSError with IsNotFound      -> the name does not exist: source_unreachable, no point retrying
//	*net.DNSError otherwise, any other
//	network error                      -> transient: retry, then source_unreachable
//
// The messages of ForbiddenError, TooLargeError and StatusError are sentences
// a person can act on; take them from the typed error (errors.As), not from
// the wrapping *url.Error, whose text starts with `Get "<url>": `.

// ForbiddenError says that a URL or the address it leads to is off-limits
// under the outbound address rule. When it comes back, no connection to the
// forbidden address was made.
type ForbiddenError struct {
	Host   string // the host as written in the URL, when known
	IP     net.IP // the forbidden address, when the refusal is about one
	Reason string // what it is, e.g. "a private network address"

	message string // overrides the generated message (URL-shape refusals)
}

func (e *ForbiddenError) Error() string {
	if e.message != "" {
		return e.message
	}
	if e.IP != nil {
		if e.Host != "" && e.Host != e.IP.String() {
			return fmt.Sprintf("the address %s (of %q) is %s, which this service does not connect to", e.IP, e.Host, e.Reason)
		}
		return fmt.Sprintf("the address %s is %s, which this service does not connect to", e.IP, e.Reason)
	}
	return fmt.Sprintf("the host %q is %s, which this service does not connect to", e.Host, e.Reason)
}

// TooLargeError says that a source body is larger than the client's limit.
type TooLargeError struct {
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("the source is larger than the %d-byte limit", e.Limit)
}

// StatusError is a non-2xx answer to Fetch.
type StatusError struct {
	StatusCode int
	RetryAfter string // the Retry-After header as sent (seconds or an HTTP date), or ""
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("the source answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	if e.RetryAfter != "" {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	return msg
}

// ErrTooManyRedirects is returned (wrapped) when Fetch meets more redirects
// than Options.MaxRedirects allows.
var ErrTooManyRedirects = errors.New("the source redirected too many times")

// IsTimeout reports whether err comes from a deadline: Options.Timeout, the
// caller's context deadline, or a network timeout (including a DNS timeout).
// A cancelled context is not a timeout.
func IsTimeout(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
