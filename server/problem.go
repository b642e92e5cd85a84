package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"

	"github.com/labstack/echo/v4"

	"github.com/thumbnailed/thumbnailed/blob"
	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/jobs"
)

// FieldError names one bad field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Problem is an RFC 9457 problem document. Code is a stable machine-readable
// reason a client can switch on.
type Problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Code   string       `json:"code,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`

	retryAfter string
}

func (p *Problem) Error() string { return fmt.Sprintf("%d %s: %s", p.Status, p.Code, p.Detail) }

// problemTypeBase prefixes a code to make the problem's type URI.
const problemTypeBase = "https://thumbnailed.dev/problems/"

// problem is the problem of an API error code: its status comes from the
// one list of codes.
func problem(code, detail string) *Problem {
	status := codes.Status(code)
	if status == 0 {
		code, status = codes.Internal, http.StatusInternalServerError
	}
	return &Problem{Type: problemTypeBase + code, Title: http.StatusText(status), Status: status, Code: code, Detail: detail}
}

// invalid is the 422 that lists every bad field at once.
func invalid(fields map[string]string) *Problem {
	p := problem(codes.ValidationFailed, "the request has invalid fields; see errors")
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p.Errors = append(p.Errors, FieldError{Field: name, Message: fields[name]})
	}
	if len(names) == 1 {
		p.Detail = names[0] + ": " + fields[names[0]]
	}
	return p
}

func writeProblem(c echo.Context, p *Problem) error {
	if p.retryAfter != "" {
		c.Response().Header().Set("Retry-After", p.retryAfter)
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	c.Response().WriteHeader(p.Status)
	return json.NewEncoder(c.Response()).Encode(p)
}

// errorHandler turns every error a handler or Echo returns into problem+json.
// Redis or blob store trouble is a 503 with Retry-After, never a 500.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var p *Problem
		var he *echo.HTTPError
		switch {
		case errors.As(err, &p):
		case errors.Is(err, jobs.ErrUnavailable), errors.Is(err, blob.ErrUnavailable):
			requestLog(c, logger).Warn("storage unavailable", "error", err)
			p = problem(codes.StorageUnavailable, "the service cannot reach its storage right now; retry after the time in Retry-After")
			p.retryAfter = "5"
		case errors.As(err, &he):
			p = problem(httpCode(he.Code), fmt.Sprint(he.Message))
		default:
			requestLog(c, logger).Error("request failed", "error", err)
			p = problem(codes.Internal, "something went wrong on our side; try again")
		}
		if c.Request().Method == http.MethodHead {
			if p.retryAfter != "" {
				c.Response().Header().Set("Retry-After", p.retryAfter)
			}
			_ = c.NoContent(p.Status)
			return
		}
		if err := writeProblem(c, p); err != nil {
			requestLog(c, logger).Warn("could not write error response", "error", err)
		}
	}
}

// echoCodes are the codes of the errors Echo itself answers, by status;
// any other is internal.
var echoCodes = map[int]string{
	http.StatusNotFound:              codes.NotFound,
	http.StatusMethodNotAllowed:      codes.MethodNotAllowed,
	http.StatusRequestEntityTooLarge: codes.UploadTooLarge,
	http.StatusUnsupportedMediaType:  codes.UnsupportedMediaType,
	http.StatusTooManyRequests:       codes.RateLimited,
	http.StatusUnauthorized:          codes.Unauthorized,
	http.StatusBadRequest:            codes.MalformedBody,
}

// httpCode is the code of an error Echo itself answers.
func httpCode(status int) string {
	if code, ok := echoCodes[status]; ok {
		return code
	}
	return codes.Internal
}
