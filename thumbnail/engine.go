package thumbnail

import "context"

// Engine makes thumbnails. The pure-Go engine is the default build; a libvips engine
// (build tag vips) meets the same interface and replaces it as Default.
type Engine interface {
	Name() string    // "go" or "vips"
	Version() string // the Go runtime's version for "go", libvips's for "vips"
	Make(ctx context.Context, src []byte, spec Spec) (Result, error)
	Accepts(f Format) bool // input formats
	Encodes(f Format) bool // output formats
}

// Make makes a thumbnail of src with the default engine. Every error is an *Error
// with one of the Code constants.
func Make(ctx context.Context, src []byte, spec Spec) (Result, error) {
	return Default.Make(ctx, src, spec)
}
