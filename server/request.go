package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"

	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/thumbnail"
	"github.com/thumbnailed/thumbnailed/view"
)

// createRequest is POST /v1/thumbnails, from JSON or multipart. Pointers
// tell a field left out (follow the default) from an explicit zero (invalid).
type createRequest struct {
	URL         string `json:"url"`
	Width       *int   `json:"width"`
	Height      *int   `json:"height"`
	Fit         string `json:"fit"`
	Enlarge     *bool  `json:"enlarge"`
	Format      string `json:"format"`
	Quality     *int   `json:"quality"`
	Email       string `json:"email"`
	CallbackURL string `json:"callback_url"`

	image []byte // the uploaded file, multipart only
}

// maxJSONBytes bounds a JSON body: it holds a few short fields, never an image.
const maxJSONBytes = 64 << 10

// maxFieldBytes bounds one multipart form value.
const maxFieldBytes = 8 << 10

// decodeRequest reads the body by its content type. It returns a *Problem
// for anything the client must fix: 400 malformed, 413 too large, 415 not
// JSON or multipart, 422 fields of the wrong type.
func decodeRequest(r *http.Request, maxUpload int64) (*createRequest, error) {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, problem(http.StatusUnsupportedMediaType, "unsupported_media_type",
			"send application/json with a url, or multipart/form-data with the image in the part named image")
	}
	switch mediaType {
	case "application/json":
		return decodeJSON(r.Body)
	case "multipart/form-data":
		// The image and a few short fields. A chunked body declares no
		// length, so the limit is also enforced while reading: without it
		// a stream of small parts would be read (and each unknown name
		// kept for the 422) for as long as the client keeps sending.
		limit := maxUpload + 1<<20
		if r.ContentLength > limit {
			return nil, tooLarge(maxUpload)
		}
		body := http.MaxBytesReader(nil, r.Body, limit)
		req, err := decodeMultipart(multipart.NewReader(body, params["boundary"]), maxUpload)
		var over *http.MaxBytesError
		if _, rerr := body.Read(nil); err != nil && errors.As(rerr, &over) {
			return nil, tooLarge(maxUpload)
		}
		return req, err
	default:
		return nil, problem(http.StatusUnsupportedMediaType, "unsupported_media_type",
			fmt.Sprintf("content type %q is not accepted: send application/json or multipart/form-data", mediaType))
	}
}

func tooLarge(limit int64) *Problem {
	return problem(http.StatusRequestEntityTooLarge, "upload_too_large",
		fmt.Sprintf("the upload is larger than the %d-byte limit", limit))
}

func decodeJSON(body io.Reader) (*createRequest, error) {
	data, err := io.ReadAll(io.LimitReader(body, maxJSONBytes+1))
	if err != nil {
		return nil, problem(http.StatusBadRequest, "malformed_body", "the request body could not be read")
	}
	if len(data) > maxJSONBytes {
		return nil, problem(http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("a JSON request is at most %d bytes; upload images as multipart/form-data", maxJSONBytes))
	}
	var req createRequest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, jsonProblem(err)
	}
	if dec.More() {
		return nil, problem(http.StatusBadRequest, "malformed_body", "the body holds more than one JSON value")
	}
	return &req, nil
}

func jsonProblem(err error) *Problem {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return invalid(map[string]string{typeErr.Field: "must be " + jsonTypeName(typeErr.Type.String())})
	case errors.As(err, &syntaxErr):
		return problem(http.StatusBadRequest, "malformed_body", fmt.Sprintf("the body is not valid JSON (at byte %d)", syntaxErr.Offset))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return invalid(map[string]string{field: "is not a known field"})
	case errors.Is(err, io.EOF):
		return problem(http.StatusBadRequest, "malformed_body", "the body is empty: send a JSON object")
	default:
		return problem(http.StatusBadRequest, "malformed_body", "the body is not a valid JSON object")
	}
}

func jsonTypeName(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "int":
		return "a whole number"
	case "bool":
		return "true or false"
	default:
		return "a string"
	}
}

// decodeMultipart streams the parts: the image is read up to the limit and
// no further, so an oversized upload costs at most limit+1 bytes.
func decodeMultipart(mr *multipart.Reader, maxUpload int64) (*createRequest, error) {
	var req createRequest
	bad := map[string]string{}
	seen := map[string]bool{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, problem(http.StatusBadRequest, "malformed_body", "the multipart body is malformed: "+err.Error())
		}
		name := part.FormName()
		if seen[name] {
			bad[name] = "is given more than once"
			continue
		}
		seen[name] = true
		if name == "image" {
			data, err := io.ReadAll(io.LimitReader(part, maxUpload+1))
			if err != nil {
				return nil, problem(http.StatusBadRequest, "malformed_body", "the upload could not be read: "+err.Error())
			}
			if int64(len(data)) > maxUpload {
				return nil, tooLarge(maxUpload)
			}
			req.image = data
			continue
		}
		raw, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
		if err != nil {
			return nil, problem(http.StatusBadRequest, "malformed_body", "the multipart body could not be read: "+err.Error())
		}
		if len(raw) > maxFieldBytes {
			bad[name] = fmt.Sprintf("is longer than %d bytes", maxFieldBytes)
			continue
		}
		value := strings.TrimSpace(string(raw))
		switch name {
		case "url":
			req.URL = value
		case "fit":
			req.Fit = value
		case "format":
			req.Format = value
		case "email":
			req.Email = value
		case "callback_url":
			req.CallbackURL = value
		case "width":
			req.Width = formInt(value, name, bad)
		case "height":
			req.Height = formInt(value, name, bad)
		case "quality":
			req.Quality = formInt(value, name, bad)
		case "enlarge":
			b, err := strconv.ParseBool(value)
			if err != nil {
				bad[name] = "must be true or false"
			}
			req.Enlarge = &b
		default:
			bad[name] = "is not a known field"
		}
	}
	if len(bad) > 0 {
		return nil, invalid(bad)
	}
	return &req, nil
}

func formInt(value, name string, bad map[string]string) *int {
	n, err := strconv.Atoi(value)
	if err != nil {
		bad[name] = "must be a whole number"
		return nil
	}
	return &n
}

// limits is what validation checks a request against.
type limits struct {
	maxDimension         int
	allowPrivateNetworks bool
	engine               thumbnail.Engine
}

// Valid returns every problem with the request, by field name.
func (r *createRequest) Valid(l limits) map[string]string {
	bad := map[string]string{}
	switch {
	case r.URL == "" && r.image == nil:
		bad["url"] = "give an image url, or upload the image as multipart/form-data in the part named image"
	case r.URL != "" && r.image != nil:
		bad["url"] = "give either a url or an uploaded image, not both"
	case r.URL != "":
		if err := safehttp.CheckURL(r.URL, l.allowPrivateNetworks); err != nil {
			bad["url"] = err.Error()
		}
	}
	if r.Width == nil && r.Height == nil {
		bad["width"] = "give width, height, or both"
	}
	for name, v := range map[string]*int{"width": r.Width, "height": r.Height} {
		if v != nil && (*v < 1 || *v > l.maxDimension) {
			bad[name] = fmt.Sprintf("must be from 1 to %d (leave it out to follow the aspect ratio)", l.maxDimension)
		}
	}
	switch thumbnail.Fit(r.Fit) {
	case "", thumbnail.FitContain, thumbnail.FitCover, thumbnail.FitFill:
	default:
		bad["fit"] = "must be contain, cover or fill"
	}
	switch f := thumbnail.Format(r.Format); f {
	case "", thumbnail.FormatJPEG, thumbnail.FormatPNG, thumbnail.FormatWebP:
		if f != "" && !l.engine.Encodes(f) {
			bad["format"] = fmt.Sprintf("%s output needs the libvips engine; this server runs the %s engine", f, l.engine.Name())
		}
	default:
		bad["format"] = "must be jpeg, png or webp"
	}
	if r.Quality != nil && (*r.Quality < 1 || *r.Quality > 100) {
		bad["quality"] = "must be from 1 to 100"
	}
	if r.Email != "" {
		if err := view.ValidEmail(r.Email); err != nil {
			bad["email"] = err.Error()
		}
	}
	if r.CallbackURL != "" {
		if err := safehttp.CheckURL(r.CallbackURL, l.allowPrivateNetworks); err != nil {
			bad["callback_url"] = err.Error()
		}
	}
	return bad
}

// jobRequest is the validated request with its defaults filled in.
func (r *createRequest) jobRequest() jobs.Request {
	req := jobs.Request{
		Source:      jobs.SourceURL,
		URL:         r.URL,
		Fit:         string(thumbnail.FitContain),
		Format:      string(thumbnail.FormatJPEG),
		Quality:     80,
		Email:       r.Email,
		CallbackURL: r.CallbackURL,
	}
	if r.image != nil {
		req.Source = jobs.SourceUpload
	}
	if r.Width != nil {
		req.Width = *r.Width
	}
	if r.Height != nil {
		req.Height = *r.Height
	}
	if r.Fit != "" {
		req.Fit = r.Fit
	}
	if r.Format != "" {
		req.Format = r.Format
	}
	if r.Quality != nil {
		req.Quality = *r.Quality
	}
	if r.Enlarge != nil {
		req.Enlarge = *r.Enlarge
	}
	return req
}

// fingerprint identifies a request's content for Idempotency-Key checks.
func fingerprint(req jobs.Request, image []byte) string {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(req)
	h.Write(image)
	return hex.EncodeToString(h.Sum(nil))
}
