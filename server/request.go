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
	"regexp"
	"strconv"
	"strings"

	"github.com/thumbnailed/thumbnailed/codes"
	"github.com/thumbnailed/thumbnailed/jobs"
	"github.com/thumbnailed/thumbnailed/mailaddr"
	"github.com/thumbnailed/thumbnailed/safehttp"
	"github.com/thumbnailed/thumbnailed/thumbnail"
)

// options are the fields an output takes, at the top level and in each of
// outputs. Pointers tell a field left out (take the default) from an
// explicit zero (invalid).
type options struct {
	Width   *int        `json:"width"`
	Height  *int        `json:"height"`
	Fit     string      `json:"fit"`
	Enlarge *bool       `json:"enlarge"`
	Gravity string      `json:"gravity"`
	Focal   *jobs.Point `json:"focal"`
	Format  string      `json:"format"`
	Quality *int        `json:"quality"`
}

// outputRequest is one entry of outputs.
type outputRequest struct {
	Name string `json:"name"`
	options
}

// createRequest is POST /v1/thumbnails, from JSON or multipart.
type createRequest struct {
	URL string `json:"url"`
	options
	Outputs     []outputRequest `json:"outputs"`
	Email       string          `json:"email"`
	CallbackURL string          `json:"callback_url"`

	upload *upload // the uploaded image, multipart only
}

// upload is an image that arrived in the request, as the sink took it.
type upload struct {
	bytes  int64
	sha256 string
	header thumbnail.Header
}

// imageSink takes the image part of a multipart body as it streams in; it
// returns a *Problem for an image the client must fix.
type imageSink func(r io.Reader) (*upload, error)

// maxJSONBytes bounds a JSON body: it holds a few short fields, never an image.
const maxJSONBytes = 64 << 10

// maxFieldBytes bounds one multipart form value (outputs is the longest).
const maxFieldBytes = 8 << 10

// maxOutputs is how many outputs one job may make.
const maxOutputs = 8

// decodeRequest reads the body by its content type. It returns a *Problem
// for anything the client must fix: 400 malformed, 413 too large, 415 not
// JSON or multipart, 422 fields of the wrong type. The image of a multipart
// body goes to sink as it arrives.
func decodeRequest(r *http.Request, maxUpload int64, sink imageSink) (*createRequest, error) {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, problem(codes.UnsupportedMediaType,
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
		req, err := decodeMultipart(multipart.NewReader(body, params["boundary"]), maxUpload, sink)
		var over *http.MaxBytesError
		if _, rerr := body.Read(nil); err != nil && errors.As(rerr, &over) {
			return nil, tooLarge(maxUpload)
		}
		return req, err
	default:
		return nil, problem(codes.UnsupportedMediaType,
			fmt.Sprintf("content type %q is not accepted: send application/json or multipart/form-data", mediaType))
	}
}

func tooLarge(limit int64) *Problem {
	return problem(codes.UploadTooLarge, fmt.Sprintf("the upload is larger than the %d-byte limit", limit))
}

func decodeJSON(body io.Reader) (*createRequest, error) {
	data, err := io.ReadAll(io.LimitReader(body, maxJSONBytes+1))
	if err != nil {
		return nil, problem(codes.MalformedBody, "the request body could not be read")
	}
	if len(data) > maxJSONBytes {
		return nil, problem(codes.BodyTooLarge,
			fmt.Sprintf("a JSON request is at most %d bytes; upload images as multipart/form-data", maxJSONBytes))
	}
	var req createRequest
	if err := strictJSON(data, &req); err != nil {
		return nil, indexOutput(data, err)
	}
	return &req, nil
}

// indexOutput names the output a field error is about: encoding/json says
// "outputs.width" of whichever output (and only "colour" of an unknown
// field in one), the client reads "outputs[1].width".
func indexOutput(data []byte, err error) error {
	p, ok := err.(*Problem)
	if !ok || len(p.Errors) != 1 {
		return err
	}
	field := strings.TrimPrefix(p.Errors[0].Field, "outputs.")
	var raw struct {
		Outputs []json.RawMessage `json:"outputs"`
	}
	if json.Unmarshal(data, &raw) != nil {
		return err
	}
	for i, o := range raw.Outputs {
		var out outputRequest
		if oerr := strictJSON(o, &out); oerr != nil {
			if op, ok := oerr.(*Problem); ok && len(op.Errors) == 1 && op.Errors[0].Field == field {
				return invalid(map[string]string{fmt.Sprintf("outputs[%d].%s", i, field): op.Errors[0].Message})
			}
		}
	}
	return err
}

// strictJSON decodes one JSON value into v, refusing unknown fields, and
// turns what is wrong into a problem naming the field.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(err, "")
	}
	if dec.More() {
		return problem(codes.MalformedBody, "the body holds more than one JSON value")
	}
	return nil
}

func jsonProblem(err error, prefix string) *Problem {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return invalid(map[string]string{fieldPath(prefix, clientField(typeErr.Field)): "must be " + jsonTypeName(typeErr.Type.String())})
	case errors.As(err, &syntaxErr):
		return problem(codes.MalformedBody, fmt.Sprintf("the body is not valid JSON (at byte %d)", syntaxErr.Offset))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return invalid(map[string]string{fieldPath(prefix, field): "is not a known field"})
	case errors.Is(err, io.EOF):
		return problem(codes.MalformedBody, "the body is empty: send a JSON object")
	default:
		return problem(codes.MalformedBody, "the body is not a valid JSON object")
	}
}

// fieldPath names a nested field as a client wrote it: json's
// "outputs.name" becomes "outputs[…].name" only when we know the index, so
// the path is kept as json gives it, under prefix.
func fieldPath(prefix, field string) string {
	if prefix == "" {
		return field
	}
	return prefix + "." + field
}

// clientField is a field path as the client wrote it: json names a field
// of an embedded struct with the struct's Go name ("options.width"), which
// the client never wrote.
func clientField(field string) string {
	parts := strings.Split(field, ".")
	kept := parts[:0]
	for _, p := range parts {
		if p != "options" {
			kept = append(kept, p)
		}
	}
	return strings.Join(kept, ".")
}

func jsonTypeName(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "int":
		return "a whole number"
	case "bool":
		return "true or false"
	case "float64":
		return "a number"
	case "[]server.outputRequest":
		return "a list of outputs"
	case "jobs.Point":
		return `an object {"x": 0.5, "y": 0.5}`
	default:
		return "a string"
	}
}

// decodeMultipart streams the parts: the image goes to sink, read up to the
// limit and no further, so an oversized upload costs at most limit+1 bytes.
func decodeMultipart(mr *multipart.Reader, maxUpload int64, sink imageSink) (*createRequest, error) {
	var req createRequest
	texts := map[string]*string{"url": &req.URL, "fit": &req.Fit, "gravity": &req.Gravity,
		"format": &req.Format, "email": &req.Email, "callback_url": &req.CallbackURL}
	numbers := map[string]**int{"width": &req.Width, "height": &req.Height, "quality": &req.Quality}
	bad := map[string]string{}
	seen := map[string]bool{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, problem(codes.MalformedBody, "the multipart body is malformed: "+err.Error())
		}
		name := part.FormName()
		if seen[name] {
			bad[name] = "is given more than once"
			continue
		}
		seen[name] = true
		if name == "image" {
			limited := &limitedReader{r: part, left: maxUpload + 1}
			up, err := sink(limited)
			if limited.left <= 0 {
				return nil, tooLarge(maxUpload)
			}
			if err != nil {
				return nil, err
			}
			req.upload = up
			continue
		}
		raw, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
		if err != nil {
			return nil, problem(codes.MalformedBody, "the multipart body could not be read: "+err.Error())
		}
		if len(raw) > maxFieldBytes {
			bad[name] = fmt.Sprintf("is longer than %d bytes", maxFieldBytes)
			continue
		}
		value := strings.TrimSpace(string(raw))
		if field, ok := texts[name]; ok {
			*field = value
			continue
		}
		if field, ok := numbers[name]; ok {
			*field = formInt(value, name, bad)
			continue
		}
		switch name {
		case "enlarge":
			b, err := strconv.ParseBool(value)
			if err != nil {
				bad[name] = "must be true or false"
			}
			req.Enlarge = &b
		case "focal":
			var p jobs.Point
			if err := strictJSON(raw, &p); err != nil {
				bad[name] = `must be a JSON object {"x": 0.5, "y": 0.5}`
			}
			req.Focal = &p
		case "outputs":
			if err := strictJSON(raw, &req.Outputs); err != nil {
				if p, ok := err.(*Problem); ok && len(p.Errors) > 0 {
					bad["outputs."+p.Errors[0].Field] = p.Errors[0].Message
				} else {
					bad[name] = "must be a JSON list of outputs"
				}
			}
		default:
			bad[name] = "is not a known field"
		}
	}
	if len(bad) > 0 {
		return nil, invalid(bad)
	}
	return &req, nil
}

// limitedReader reads at most left bytes; left goes to 0 once the limit has
// been passed (one byte over it was asked for).
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left <= 0 {
		return n, errTooLarge
	}
	return n, err
}

var errTooLarge = errors.New("the upload is over its limit")

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
	maxOutputPixels      int64
	allowPrivateNetworks bool
	engine               thumbnail.Engine
}

var validOutputName = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// Valid returns every problem with the request, by field path.
func (r *createRequest) Valid(l limits) map[string]string {
	bad := map[string]string{}
	switch {
	case r.URL == "" && r.upload == nil:
		bad["url"] = "give an image url, or upload the image as multipart/form-data in the part named image"
	case r.URL != "" && r.upload != nil:
		bad["url"] = "give either a url or an uploaded image, not both"
	case r.URL != "":
		if err := safehttp.CheckURL(r.URL, l.allowPrivateNetworks); err != nil {
			bad["url"] = err.Error()
		}
	}
	r.options.check("", l, bad)
	if len(r.Outputs) > maxOutputs {
		bad["outputs"] = fmt.Sprintf("may list at most %d outputs", maxOutputs)
	}
	if r.Outputs != nil && len(r.Outputs) == 0 {
		bad["outputs"] = "must list at least one output, or be left out"
	}
	names := map[string]bool{}
	for i, o := range r.outputs() {
		path := fmt.Sprintf("outputs[%d]", i)
		if r.Outputs == nil {
			path = ""
		}
		if r.Outputs != nil {
			// Its own fields: what it takes from the top level was checked there.
			r.Outputs[i].options.check(path+".", l, bad)
			if o.Name != "" && !validOutputName.MatchString(o.Name) {
				bad[path+".name"] = "must be 1 to 32 of a-z, 0-9, _ and -"
			}
			if names[o.Name] {
				bad[path+".name"] = fmt.Sprintf("%q names another output too; names must be unique", o.Name)
			}
			names[o.Name] = true
		}
		if o.Width == nil && o.Height == nil {
			if path == "" {
				bad["width"] = "give width, height, or both"
			} else {
				bad[path+".width"] = "give width, height, or both (here or at the top level)"
			}
		}
	}
	if px := r.outputPixels(); px > l.maxOutputPixels {
		bad["outputs"] = fmt.Sprintf("the outputs together have %d pixels; the limit is %d", px, l.maxOutputPixels)
	}
	if r.Email != "" {
		if _, err := mailaddr.Parse(r.Email); err != nil {
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

// check adds the problems of one set of options; prefix is "" at the top
// level, "outputs[i]." in an output.
func (o options) check(prefix string, l limits, bad map[string]string) {
	for name, v := range map[string]*int{"width": o.Width, "height": o.Height} {
		if v != nil && (*v < 1 || *v > l.maxDimension) {
			bad[prefix+name] = fmt.Sprintf("must be from 1 to %d (leave it out to follow the aspect ratio)", l.maxDimension)
		}
	}
	switch thumbnail.Fit(o.Fit) {
	case "", thumbnail.FitContain, thumbnail.FitCover, thumbnail.FitFill:
	default:
		bad[prefix+"fit"] = "must be contain, cover or fill"
	}
	switch o.Gravity {
	case "", "center", "attention", "entropy":
		if o.Focal != nil && o.Gravity != "" {
			bad[prefix+"focal"] = "goes with gravity focal (or no gravity), not " + o.Gravity
		}
	case "focal":
		if o.Focal == nil {
			bad[prefix+"focal"] = `gravity focal needs a focal point {"x": 0.5, "y": 0.5}`
		}
	default:
		bad[prefix+"gravity"] = "must be center, attention, entropy or focal"
	}
	if o.Focal != nil {
		for name, v := range map[string]float64{"x": o.Focal.X, "y": o.Focal.Y} {
			if !(v >= 0 && v <= 1) {
				bad[prefix+"focal."+name] = "must be from 0 to 1 (a fraction of the upright image)"
			}
		}
	}
	switch f := thumbnail.Format(o.Format); f {
	case "", thumbnail.FormatJPEG, thumbnail.FormatPNG, thumbnail.FormatWebP:
		if f != "" && !l.engine.Encodes(f) {
			bad[prefix+"format"] = fmt.Sprintf("%s output needs the libvips engine; this server runs the %s engine", f, l.engine.Name())
		}
	default:
		bad[prefix+"format"] = "must be jpeg, png or webp"
	}
	if o.Quality != nil && (*o.Quality < 1 || *o.Quality > 100) {
		bad[prefix+"quality"] = "must be from 1 to 100"
	}
}

// outputs are the outputs as asked, each with the top-level options under
// its own: the client's list, or one made of the top-level fields.
func (r *createRequest) outputs() []outputRequest {
	if r.Outputs == nil {
		return []outputRequest{{Name: jobs.DefaultOutput, options: r.options}}
	}
	out := make([]outputRequest, len(r.Outputs))
	for i, o := range r.Outputs {
		out[i] = o
		if out[i].Name == "" {
			out[i].Name = fmt.Sprintf("o%d", i+1)
		}
		if o.Width == nil && o.Height == nil {
			out[i].Width, out[i].Height = r.Width, r.Height
		}
		if o.Fit == "" {
			out[i].Fit = r.Fit
		}
		if o.Enlarge == nil {
			out[i].Enlarge = r.Enlarge
		}
		if o.Gravity == "" && o.Focal == nil {
			out[i].Gravity, out[i].Focal = r.Gravity, r.Focal
		}
		if o.Format == "" {
			out[i].Format = r.Format
		}
		if o.Quality == nil {
			out[i].Quality = r.Quality
		}
	}
	return out
}

// outputPixels is the pixels of every output together, a side left out
// counting as equal to the given side.
func (r *createRequest) outputPixels() int64 {
	var px int64
	for _, o := range r.outputs() {
		w, h := o.Width, o.Height
		switch {
		case w != nil && h != nil:
			px += int64(*w) * int64(*h)
		case w != nil:
			px += int64(*w) * int64(*w)
		case h != nil:
			px += int64(*h) * int64(*h)
		}
	}
	return px
}

// jobRequest is the validated request with every default filled in.
func (r *createRequest) jobRequest() jobs.Request {
	top := r.options.resolve()
	req := jobs.Request{
		Source: jobs.SourceURL, URL: r.URL,
		Width: top.Width, Height: top.Height, Fit: top.Fit, Enlarge: top.Enlarge,
		Gravity: top.Gravity, Focal: top.Focal, Format: top.Format, Quality: top.Quality,
		Email: r.Email, CallbackURL: r.CallbackURL,
	}
	if r.upload != nil {
		req.Source = jobs.SourceUpload
	}
	for _, o := range r.outputs() {
		out := o.options.resolve()
		out.Name = o.Name
		req.Outputs = append(req.Outputs, out)
	}
	return req
}

// resolve fills the defaults: contain, center, jpeg, quality 80; a focal
// point without a gravity means gravity focal.
func (o options) resolve() jobs.Output {
	out := jobs.Output{Fit: string(thumbnail.FitContain), Gravity: "center", Format: string(thumbnail.FormatJPEG), Quality: thumbnail.DefaultQuality, Focal: o.Focal}
	if o.Width != nil {
		out.Width = *o.Width
	}
	if o.Height != nil {
		out.Height = *o.Height
	}
	if o.Fit != "" {
		out.Fit = o.Fit
	}
	if o.Enlarge != nil {
		out.Enlarge = *o.Enlarge
	}
	switch {
	case o.Gravity != "":
		out.Gravity = o.Gravity
	case o.Focal != nil:
		out.Gravity = "focal"
	}
	if o.Format != "" {
		out.Format = o.Format
	}
	if o.Quality != nil {
		out.Quality = *o.Quality
	}
	return out
}

// fingerprint identifies a request's content for Idempotency-Key checks.
func fingerprint(req jobs.Request, up *upload) string {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(req)
	if up != nil {
		h.Write([]byte(up.sha256))
	}
	return hex.EncodeToString(h.Sum(nil))
}
