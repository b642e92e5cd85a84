package thumbnail

import (
	"errors"
	"fmt"
	"time"
)

// Fit says how the source is fitted into the requested box.
type Fit string

const (
	FitContain Fit = "contain" // fit inside the box, keep the aspect ratio
	FitCover   Fit = "cover"   // fill the box, keep the aspect ratio, centre-crop the rest
	FitFill    Fit = "fill"    // stretch to exactly the box
)

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

// Defaults for the zero values of Spec.
const (
	DefaultQuality   = 80
	DefaultMaxPixels = 50_000_000
)

// MaxDimension is the largest output side any output format can hold (WebP's limit
// is 16383; JPEG's and PNG's are larger). The HTTP layer has its own, smaller limit.
const MaxDimension = 16383

// Spec is what the client asked for.
type Spec struct {
	Width, Height int // 0 = follow the aspect ratio; at least one > 0
	Fit           Fit // "" means contain
	Enlarge       bool
	Format        Format // "" means jpeg
	Quality       int    // 0 means 80
	MaxPixels     int64  // 0 means 50_000_000
}

// Result is a finished thumbnail.
type Result struct {
	Data        []byte
	ContentType string
	Format      Format
	Width       int
	Height      int
	Engine      string // engine name and version, e.g. "go/go1.26.8"
	// Timings is the time spent per stage (StagePrepare, StageDecodeResize,
	// StageEncode; StageDecodeResizeEncode with libvips), for metrics.
	Timings map[string]time.Duration
}

// Validate reports every bad value at once, as one *Error with CodeInvalidSpec.
func (s Spec) Validate() error {
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
	if s.MaxPixels < 0 {
		problems = append(problems, fmt.Errorf("the pixel limit must be positive, not %d", s.MaxPixels))
	}
	if len(problems) == 0 {
		return nil
	}
	err := errors.Join(problems...)
	return &Error{Code: CodeInvalidSpec, Message: "the thumbnail request is invalid: " + joinSentences(problems), Err: err}
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
	return s
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
