package thumbnail

import (
	"errors"
	"fmt"
)

// Error codes. They are part of the public contract: clients switch on them, so a
// code is never reused for another meaning.
const (
	CodeUnsupportedFormat = "unsupported_format"
	CodeTooManyPixels     = "too_many_pixels"
	CodeCorruptImage      = "corrupt_image"
	CodeTimeout           = "timeout"
	CodeInvalidSpec       = "invalid_spec"
)

// Error is every failure this package returns. Message is a sentence a person can
// act on and is safe to show to the client; Err is the underlying cause, for logs.
type Error struct {
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Message
	}
	return e.Message + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the code of the first *Error in err's chain, or "" when there is none.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

func newError(code string, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// errTimeout is what every step answers once the job's context is done; the context's
// own error is kept as the cause so callers can still tell deadline from cancel.
func errTimeout(cause error) *Error {
	return &Error{
		Code:    CodeTimeout,
		Message: "the image took longer than the job's time limit to process",
		Err:     cause,
	}
}
