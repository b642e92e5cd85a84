package thumbnail

import "context"

// Engine makes thumbnails. The pure-Go engine is the default build; a libvips engine
// (build tag vips) meets the same interface and replaces it as Default.
type Engine interface {
	Name() string    // "go" or "vips"
	Version() string // the Go runtime's version for "go", libvips's for "vips"
	// MakeSet makes every output of one job from one decode of src; maxPixels
	// guards the source (0 means DefaultMaxPixels).
	MakeSet(ctx context.Context, src []byte, outputs []Output, maxPixels int64) (Set, error)
	// Make makes one thumbnail: a job of one output, named "default".
	Make(ctx context.Context, src []byte, spec Spec) (Result, error)
	Accepts(f Format) bool // input formats
	Encodes(f Format) bool // output formats
}

// encodes says which output formats both engines write.
func encodes(f Format) bool {
	switch f {
	case FormatJPEG, FormatPNG, FormatWebP:
		return true
	}
	return false
}

// Make makes a thumbnail of src with the default engine. Every error is an *Error
// with one of the Code constants.
func Make(ctx context.Context, src []byte, spec Spec) (Result, error) {
	return Default.Make(ctx, src, spec)
}

// MakeSet makes every output of one job (1 to MaxOutputs of them) from one decode of
// src, with the default engine; maxPixels guards the source (0 means
// DefaultMaxPixels). The outputs come back in the order asked, with a placeholder
// made from the smallest one. Every error is an *Error with one of the Code
// constants; a bad request is one CodeInvalidSpec error naming every problem.
func MakeSet(ctx context.Context, src []byte, outputs []Output, maxPixels int64) (Set, error) {
	return Default.MakeSet(ctx, src, outputs, maxPixels)
}
