package thumbnail

import (
	"errors"
	"fmt"

	"strconv"
	"time"
)

// Fit says how the source is fitted into the requested box.
type Fit string

const (
	FitContain Fit = "contain" // fit inside the box, keep the aspect ratio
	FitCover   Fit = "cover"   // fill the box, keep the aspect ratio, crop the rest (see Gravity)
	FitFill    Fit = "fill"    // stretch to exactly the box
)

// Gravity says which part of the image FitCover keeps.
type Gravity string

const (
	GravityCenter    Gravity = "center"    // the middle
	GravityAttention Gravity = "attention" // the most salient region: edges, saturated colour, skin tones
	GravityEntropy   Gravity = "entropy"   // the busiest region: the most varied tones
	GravityFocal     Gravity = "focal"     // centred as near the Focal point as the box allows
)

// Point is a position in the upright source (after its EXIF orientation), as
// fractions of its width and height: {0, 0} is the top-left corner, {1, 1} the
// bottom-right one.
type Point struct{ X, Y float64 }

// Format is an image format, as sniffed from the bytes or asked for as output.
type Format string

const (
	FormatJPEG Format = "jpeg"
	FormatPNG  Format = "png"
	FormatWebP Format = "webp"
	FormatGIF  Format = "gif" // input only

	// Formats this package recognises so it can name them, but that only an engine
	// with the right decoder (libvips) accepts.
	FormatTIFF Format = "tiff"
	FormatAVIF Format = "avif"
	FormatHEIC Format = "heic"
)

// Defaults for the zero values of Spec and Output.
const (
	DefaultQuality   = 80
	DefaultMaxPixels = 50_000_000
)

// MaxDimension is the largest output side any output format can hold (WebP's limit
// is 16383; JPEG's and PNG's are larger). The HTTP layer has its own, smaller limit.
const MaxDimension = 16383

// MaxOutputs is how many outputs one job (MakeSet) may ask for.
const MaxOutputs = 8

// Spec is what the client asked for when a job makes one thumbnail (Make).
type Spec struct {
	Width, Height int // 0 = follow the aspect ratio; at least one > 0
	Fit           Fit // "" means contain
	Enlarge       bool
	Format        Format  // "" means jpeg
	Quality       int     // 0 means 80
	MaxPixels     int64   // 0 means 50_000_000
	Gravity       Gravity // "" means center, or focal when Focal is set; only matters for cover
	Focal         *Point  // the point GravityFocal keeps in view
}

// Output is one thumbnail of a job that makes several from one source (MakeSet).
type Output struct {
	Name          string // unique within the job; "" means "o1", "o2", … by position
	Width, Height int    // 0 = follow the aspect ratio; at least one > 0
	Fit           Fit    // "" means contain
	Enlarge       bool
	Gravity       Gravity // "" means center, or focal when Focal is set; only matters for cover
	Focal         *Point  // with GravityFocal
	Format        Format  // "" means jpeg
	Quality       int     // 0 means 80
}

// Result is a finished thumbnail.
type Result struct {
	Name        string // the Output's name; "default" for Make
	Data        []byte
	ContentType string
	Format      Format
	Width       int
	Height      int
	Engine      string        // engine name and version, e.g. "go/go1.26.8"
	EncodeTime  time.Duration // the time spent encoding this output, for metrics
	// Timings is the time spent per stage (the Stage constants), for metrics. Make
	// fills it with its job's timings; in a Set it is nil: see Set.Timings.
	Timings map[string]time.Duration
}

// Set is every output of one job, made from one decode of the source.
type Set struct {
	Outputs     []Result // one per Output, in the order asked
	Placeholder Placeholder
	Engine      string                   // engine name and version, e.g. "vips/8.14.1"
	Timings     map[string]time.Duration // per stage (the Stage constants), for metrics
}

// Placeholder stands in for the picture while the client loads a thumbnail. It is
// computed from the pixels of the job's smallest output, flattened onto white.
type Placeholder struct {
	BlurHash      string // a BlurHash (blurha.sh) of 4x3 components
	DominantColor string // the most frequent colour, "#rrggbb"
}

// Validate reports every bad value at once, as one *Error with CodeInvalidSpec.
func (s Spec) Validate() error {
	problems := s.problems()
	if s.MaxPixels < 0 {
		problems = append(problems, fmt.Errorf("the pixel limit must be positive, not %d", s.MaxPixels))
	}
	return invalidSpec(problems)
}

// problems lists what is wrong with one thumbnail's own fields (not MaxPixels, which
// guards the job's source).
func (s Spec) problems() []error {
	var problems []error
	if s.Width < 0 || s.Width > MaxDimension {
		problems = append(problems, fmt.Errorf("width must be between 1 and %d (or 0 to follow the aspect ratio), not %d", MaxDimension, s.Width))
	}
	if s.Height < 0 || s.Height > MaxDimension {
		problems = append(problems, fmt.Errorf("height must be between 1 and %d (or 0 to follow the aspect ratio), not %d", MaxDimension, s.Height))
	}
	if s.Width == 0 && s.Height == 0 {
		problems = append(problems, errors.New("at least one of width and height must be given"))
	}
	switch s.Fit {
	case "", FitContain, FitCover, FitFill:
	default:
		problems = append(problems, fmt.Errorf("fit must be contain, cover or fill, not %q", s.Fit))
	}
	switch s.Format {
	case "", FormatJPEG, FormatPNG, FormatWebP:
	default:
		problems = append(problems, fmt.Errorf("format must be jpeg, png or webp, not %q", s.Format))
	}
	if s.Quality < 0 || s.Quality > 100 {
		problems = append(problems, fmt.Errorf("quality must be between 1 and 100, not %d", s.Quality))
	}
	switch s.Gravity {
	case "", GravityCenter, GravityAttention, GravityEntropy:
		if s.Focal != nil && s.Gravity != "" {
			problems = append(problems, fmt.Errorf("a focal point goes with gravity focal, not %s", s.Gravity))
		}
	case GravityFocal:
		if s.Focal == nil {
			problems = append(problems, errors.New("gravity focal needs a focal point"))
		}
	default:
		problems = append(problems, fmt.Errorf("gravity must be center, attention, entropy or focal, not %q", s.Gravity))
	}
	if p := s.Focal; p != nil && !(p.X >= 0 && p.X <= 1 && p.Y >= 0 && p.Y <= 1) { // NaN fails too
		problems = append(problems, fmt.Errorf("the focal point must lie within the image (x and y between 0 and 1), not (%g, %g)", p.X, p.Y))
	}
	return problems
}

// withDefaults fills the zero values the Spec documents. Call it after Validate.
func (s Spec) withDefaults() Spec {
	if s.Fit == "" {
		s.Fit = FitContain
	}
	if s.Format == "" {
		s.Format = FormatJPEG
	}
	if s.Quality == 0 {
		s.Quality = DefaultQuality
	}
	if s.MaxPixels == 0 {
		s.MaxPixels = DefaultMaxPixels
	}
	if s.Gravity == "" {
		s.Gravity = GravityCenter
		if s.Focal != nil {
			s.Gravity = GravityFocal
		}
	}
	return s
}

// output is the one output Make asks MakeSet for.
func (s Spec) output() Output {
	return Output{
		Name: "default", Width: s.Width, Height: s.Height, Fit: s.Fit, Enlarge: s.Enlarge,
		Gravity: s.Gravity, Focal: s.Focal, Format: s.Format, Quality: s.Quality,
	}
}

// spec is an output's thumbnail with the job's source limit: the form planGeometry
// and the checks read.
func (o Output) spec(maxPixels int64) Spec {
	return Spec{
		Width: o.Width, Height: o.Height, Fit: o.Fit, Enlarge: o.Enlarge, Format: o.Format,
		Quality: o.Quality, MaxPixels: maxPixels, Gravity: o.Gravity, Focal: o.Focal,
	}
}

// validateOutputs checks a whole job at once: how many outputs, their names, each
// output as Spec.Validate does, and the source limit. It answers one *Error with
// CodeInvalidSpec that names every problem, each under its output.
func validateOutputs(outputs []Output, maxPixels int64) error {
	var problems []error
	switch {
	case len(outputs) == 0:
		problems = append(problems, errors.New("at least one output must be asked for"))
	case len(outputs) > MaxOutputs:
		problems = append(problems, fmt.Errorf("a job may ask for at most %d outputs, not %d", MaxOutputs, len(outputs)))
	}
	seen := map[string]bool{}
	for i, o := range outputs {
		name := outputName(o, i)
		if seen[name] {
			problems = append(problems, fmt.Errorf("the output name %q is used more than once", name))
		}
		seen[name] = true
		for _, p := range o.spec(maxPixels).problems() {
			problems = append(problems, fmt.Errorf("output %s: %w", strconv.Quote(name), p))
		}
	}
	if maxPixels < 0 {
		problems = append(problems, fmt.Errorf("the pixel limit must be positive, not %d", maxPixels))
	}
	return invalidSpec(problems)
}

// outputName is an output's name, or "o1", "o2", … by position when it has none.
func outputName(o Output, i int) string {
	if o.Name == "" {
		return "o" + strconv.Itoa(i+1)
	}
	return o.Name
}

func invalidSpec(problems []error) error {
	if len(problems) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalidSpec, Message: "the thumbnail request is invalid: " + joinSentences(problems), Err: errors.Join(problems...)}
}

func joinSentences(errs []error) string {
	msg := ""
	for i, err := range errs {
		if i > 0 {
			msg += "; "
		}
		msg += err.Error()
	}
	return msg
}
