// Package codes is the one list of codes a client can see: in an API error
// (problem+json), in a failed job's error, and in a failed delivery. Clients
// switch on them, so a code is never reused for another meaning, and the
// OpenAPI document enumerates exactly this list (a test checks).
package codes

import (
	"net/http"

	"github.com/thumbnailed/thumbnailed/thumbnail"
)

// Where a code appears.
type Kind string

const (
	API      Kind = "api"      // the code of an API error, with its HTTP status
	Job      Kind = "job"      // a failed job's error.code
	Delivery Kind = "delivery" // a failed delivery's error_code
)

// Code is one client-visible code.
type Code struct {
	Name    string
	Kind    Kind
	Status  int // the HTTP status of an API error; 0 for job and delivery codes
	Meaning string
}

// API errors.
const (
	ValidationFailed     = "validation_failed"
	MalformedBody        = "malformed_body"
	BodyTooLarge         = "body_too_large"
	UploadTooLarge       = "upload_too_large"
	UnsupportedMediaType = "unsupported_media_type"
	IdempotencyKeyReused = "idempotency_key_reused"
	Unauthorized         = "unauthorized"
	RateLimited          = "rate_limited"
	TooManyStreams       = "too_many_streams"
	NotFound             = "not_found"
	MethodNotAllowed     = "method_not_allowed"
	NotReady             = "not_ready"
	DeliveryPending      = "delivery_pending"
	LinkInvalid          = "link_invalid"
	LinkExpired          = "link_expired"
	StorageUnavailable   = "storage_unavailable"
	UploadsBusy          = "uploads_busy"
	Internal             = "internal_error"
)

// Job errors (the pipeline's own come from package thumbnail).
const (
	SourceNotFound    = "source_not_found"
	SourceUnreachable = "source_unreachable"
	SourceForbidden   = "source_forbidden"
	SourceTooLarge    = "source_too_large"
	UnsupportedFormat = thumbnail.CodeUnsupportedFormat
	TooManyPixels     = thumbnail.CodeTooManyPixels
	CorruptImage      = thumbnail.CodeCorruptImage
	Timeout           = thumbnail.CodeTimeout
	WorkerCrashed     = "worker_crashed"
)

// Delivery errors.
const (
	RetriesExhausted     = "retries_exhausted"
	CallbackGone         = "callback_gone"
	CallbackForbidden    = "callback_forbidden"
	RecipientInvalid     = "recipient_invalid"
	RecipientRejected    = "recipient_rejected"
	RecipientRateLimited = "recipient_rate_limited"
)

// List is every code, with its meaning. A code may appear in more than one
// place (unsupported_format is a 415 at submit and a job error when a URL's
// image turns out unsupported); it is listed once per place.
var List = []Code{
	{ValidationFailed, API, http.StatusUnprocessableEntity, "one or more fields are invalid; errors lists each field and why"},
	{MalformedBody, API, http.StatusBadRequest, "the body is not valid JSON or multipart"},
	{BodyTooLarge, API, http.StatusRequestEntityTooLarge, "a JSON body is larger than its limit; upload images as multipart/form-data"},
	{UploadTooLarge, API, http.StatusRequestEntityTooLarge, "the upload is larger than THUMBNAILED_MAX_UPLOAD_BYTES"},
	{UnsupportedMediaType, API, http.StatusUnsupportedMediaType, "the request's Content-Type is neither application/json nor multipart/form-data"},
	{UnsupportedFormat, API, http.StatusUnsupportedMediaType, "the uploaded bytes are not an image this build decodes"},
	{TooManyPixels, API, http.StatusUnprocessableEntity, "the uploaded image has more pixels than THUMBNAILED_MAX_PIXELS"},
	{CorruptImage, API, http.StatusUnprocessableEntity, "the uploaded image's header cannot be read"},
	{IdempotencyKeyReused, API, http.StatusUnprocessableEntity, "the Idempotency-Key was used before with a different request"},
	{Unauthorized, API, http.StatusUnauthorized, "no API key, or not a valid one"},
	{RateLimited, API, http.StatusTooManyRequests, "too many requests from this client; retry after Retry-After"},
	{TooManyStreams, API, http.StatusTooManyRequests, "this client already has the most open event streams"},
	{NotFound, API, http.StatusNotFound, "no such job (unknown, expired, erased, or another key's), output or route"},
	{MethodNotAllowed, API, http.StatusMethodNotAllowed, "the path exists but not with this method; Allow lists the ones it has"},
	{NotReady, API, http.StatusConflict, "the image is not made yet; retry after Retry-After"},
	{DeliveryPending, API, http.StatusConflict, "the delivery is still being attempted; redeliver once it has ended"},
	{LinkInvalid, API, http.StatusForbidden, "the signed link's signature does not match"},
	{LinkExpired, API, http.StatusForbidden, "the signed link has expired (with its job)"},
	{StorageUnavailable, API, http.StatusServiceUnavailable, "Redis or the blob store cannot take or give the data now; retry after Retry-After"},
	{UploadsBusy, API, http.StatusServiceUnavailable, "this API process holds THUMBNAILED_MAX_INFLIGHT_UPLOAD_BYTES of uploads; retry after Retry-After"},
	{Internal, API, http.StatusInternalServerError, "a fault of ours; the request may be retried"},

	{SourceNotFound, Job, 0, "the source URL answered 404 or 410, or the uploaded image is no longer stored"},
	{SourceUnreachable, Job, 0, "the source could not be fetched (connection, DNS, 5xx after retries, redirects)"},
	{SourceForbidden, Job, 0, "the source's address or scheme is not allowed"},
	{SourceTooLarge, Job, 0, "the source is larger than THUMBNAILED_MAX_UPLOAD_BYTES"},
	{UnsupportedFormat, Job, 0, "the source is not an image this build decodes"},
	{TooManyPixels, Job, 0, "the source has more pixels than THUMBNAILED_MAX_PIXELS"},
	{CorruptImage, Job, 0, "the source is damaged or truncated"},
	{Timeout, Job, 0, "the job did not finish within THUMBNAILED_JOB_TIMEOUT"},
	{WorkerCrashed, Job, 0, "the workers running this image kept dying; it may be too demanding to process"},
	{Internal, Job, 0, "a fault of ours while making the image"},

	{RetriesExhausted, Delivery, 0, "every attempt of the retry schedule failed"},
	{CallbackGone, Delivery, 0, "the callback receiver answered 410 Gone"},
	{CallbackForbidden, Delivery, 0, "the callback URL or its address is not allowed"},
	{RecipientInvalid, Delivery, 0, "the email address cannot be mailed"},
	{RecipientRejected, Delivery, 0, "the mail server refused the message (SMTP 5xx)"},
	{RecipientRateLimited, Delivery, 0, "the address has had THUMBNAILED_EMAIL_PER_RECIPIENT_PER_HOUR emails this hour"},
	{Internal, Delivery, 0, "a fault of ours while building the message"},
}

// Status is the HTTP status of an API error code, or 0 when name is not one.
func Status(name string) int {
	for _, c := range List {
		if c.Kind == API && c.Name == name {
			return c.Status
		}
	}
	return 0
}

// Names lists the codes of a kind, in the order of List.
func Names(kind Kind) []string {
	var out []string
	for _, c := range List {
		if c.Kind == kind {
			out = append(out, c.Name)
		}
	}
	return out
}
